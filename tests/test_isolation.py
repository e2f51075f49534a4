"""Each isolation property, seen from inside a container."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import pn, sh

DOCKER_DEFAULT_CAPS = 0xA80425FB


def test_command_is_pid_1_and_host_processes_are_invisible():
    r = sh('echo $$; ls /proc | grep -E "^[0-9]+$"')
    assert r.returncode == 0, r.err
    first, *pids = r.out.split()
    assert first == "1"
    # only the shell and ls itself
    assert set(pids) <= {"1", "2", "3"}, pids
    assert str(os.getpid()) not in pids or os.getpid() <= 3


def test_hostname_is_the_containers_own():
    r = sh("hostname; cat /etc/hostname")
    name, etc = r.out.split()
    assert name == etc
    assert name != socket.gethostname()
    assert len(name) == 12
    assert sh("hostname", "--hostname", "box1").out.strip() == "box1"
    assert socket.gethostname() != "box1"


def test_network_none_has_only_loopback_and_it_is_up():
    r = sh("cat /proc/net/dev; cat /sys/class/net/lo/flags", "--network", "none")
    ifaces = [line.split(":")[0].strip() for line in r.out.splitlines() if ":" in line]
    assert ifaces == ["lo"], r.out
    assert int(r.out.split()[-1], 16) & 1  # IFF_UP


def test_network_host_sees_host_interfaces():
    with open("/proc/net/dev") as f:
        host_ifaces = {line.split(":")[0].strip() for line in f if ":" in line}
    r = sh("cat /proc/net/dev", "--network", "host")
    ifaces = {line.split(":")[0].strip() for line in r.out.splitlines() if ":" in line}
    assert ifaces == host_ifaces


def test_host_mounts_are_invisible():
    d = tempfile.mkdtemp(prefix="pinnace-hostmount-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hostonly", d], check=True)
    try:
        r = sh("cat /proc/self/mountinfo")
        assert r.returncode == 0
        assert "hostonly" not in r.out
        assert d not in r.out
        # the container's root is its own overlay
        assert r.out.splitlines()[0].split()[4] == "/"
        assert " - overlay " in r.out.splitlines()[0]
    finally:
        subprocess.run(["umount", d], check=True)
        os.rmdir(d)


def test_sysv_ipc_of_the_host_is_invisible():
    if not shutil.which("ipcmk"):
        pytest.fail("ipcmk (util-linux) is required")
    mk = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, check=True)
    qid = mk.stdout.strip().split()[-1]
    try:
        host = subprocess.run(["ipcs", "-q"], capture_output=True, text=True).stdout
        assert qid in host
        r = sh("cat /proc/sysvipc/msg")
        assert r.returncode == 0
        assert len(r.out.strip().splitlines()) == 1, r.out  # header only
    finally:
        subprocess.run(["ipcrm", "-q", qid], check=True)


def test_writes_never_reach_the_image_layer_or_the_host(store):
    marker = f"pinnace-marker-{os.getpid()}"
    r = sh(f"echo x > /etc/{marker} && echo y > /tmp/{marker} && cat /etc/{marker}")
    assert r.out.strip() == "x"
    assert not os.path.exists(f"/etc/{marker}")
    assert not os.path.exists(f"/tmp/{marker}")
    layer_root = os.path.join(store["root"], "images")
    for dirpath, _, files in os.walk(layer_root):
        assert marker not in files, dirpath
    # the host's system directories are read-only in the host image
    r = sh(f"touch /usr/{marker}")
    assert r.returncode != 0
    assert "Read-only file system" in r.err
    assert not os.path.exists(f"/usr/{marker}")


def test_two_containers_of_one_image_never_see_each_others_writes():
    a = pn("run", "--name", "writer-a", "host", "sh", "-c", "echo a > /shared.txt")
    assert a.returncode == 0, a.err
    try:
        b = sh("cat /shared.txt")
        assert b.returncode == 1
        assert "No such file" in b.err
    finally:
        pn("rm", "writer-a", check=True)


def test_capabilities_are_dockers_default_set():
    r = sh("grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status")
    caps = dict(line.split(":") for line in r.out.splitlines())
    assert int(caps["CapEff"], 16) == DOCKER_DEFAULT_CAPS
    assert int(caps["CapPrm"], 16) == DOCKER_DEFAULT_CAPS
    assert int(caps["CapBnd"], 16) == DOCKER_DEFAULT_CAPS
    assert int(caps["CapInh"], 16) == 0
    assert int(caps["CapAmb"], 16) == 0


def test_non_root_user_has_no_effective_capabilities_and_no_new_privs():
    r = sh("id -u; id -g; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status", "-u", "1000:1000")
    lines = r.out.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    assert "CapEff:\t0000000000000000" in r.out
    assert "NoNewPrivs:\t1" in r.out


def test_cap_add_and_drop():
    r = sh("grep CapEff /proc/self/status", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN")
    assert int(r.out.split()[1], 16) == 1 << 12


def test_masked_and_readonly_paths():
    r = sh("wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
           "cat /proc/kcore 2>/dev/null | wc -c")
    assert r.returncode == 0, r.err
    assert r.out.split() == ["0", "0", "0", "0"]
    r = sh("echo 1 > /proc/sys/kernel/ns_last_pid")
    assert r.returncode != 0
    assert "Read-only file system" in r.err
    r = sh("touch /sys/x")
    assert r.returncode != 0


def test_dev_has_dockers_nodes_and_a_private_devpts():
    r = sh("ls /dev; echo hi > /dev/null; head -c 4 /dev/zero | wc -c; ls /dev/pts; "
           "grep -E ' /dev/(pts|shm|mqueue) ' /proc/self/mountinfo | wc -l")
    names = r.out.split()
    for n in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd"):
        assert n in names, r.out
    assert r.out.split()[-1] == "3"
    assert "sda" not in names and "vda" not in names


def test_core_user_namespace_with_an_overlay_root(busybox_rootfs, tmp_path):
    """The core's user-namespace option: ids mapped, the overlay root made by
    the parent and attached inside, /dev nodes bound since mknod is refused.
    The rootfs is owned by the mapped range, as with docker's userns-remap."""
    import json

    from pinnace import _core

    import pathlib

    base = 200000
    subprocess.run(["chown", "-R", f"{base}:{base}", str(busybox_rootfs)], check=True)
    # the container's root must be able to walk to its mount point
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="pinnace-userns-", dir="/var/tmp"))
    os.chmod(tmp_path, 0o755)
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    # the overlay's root takes the upper dir's owner: the container's root
    os.chown(tmp_path / "upper", base, base)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh", "-c", "cat /proc/self/uid_map; id -u; echo x > /f && cat /f; "
                             "echo > /dev/null && echo devnull-ok; grep CapEff /proc/self/status"],
                    "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
                    "capabilities": {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}},
        "root": {"path": str(tmp_path / "merged")},
        "mounts": [
            {"destination": "/", "type": "overlay", "source": "overlay",
             "options": [f"lowerdir={busybox_rootfs},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("mount", "user", "pid", "ipc", "uts")],
                  "uidMappings": [{"containerID": 0, "hostID": base, "size": 65536}],
                  "gidMappings": [{"containerID": 0, "hostID": base, "size": 65536}]},
    }
    try:
        _, (code, _, out, err, *_) = _core.run(json.dumps(spec))
        upper_files = {p.name: p.stat().st_uid for p in (tmp_path / "upper").iterdir()}
    finally:
        shutil.rmtree(tmp_path)
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split() == ["0", str(base), "65536"]
    assert lines[1:4] == ["0", "x", "devnull-ok"]
    assert int(lines[4].split()[1], 16) == 0b100001  # CHOWN, KILL
    # the write went to the upper layer, owned on the host by the mapped root
    assert upper_files.get("f") == base, (upper_files, out)
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_private_cgroup_namespace():
    r = sh("cat /proc/self/cgroup", "--cgroupns", "private")
    assert r.returncode == 0, r.err
    # inside its own cgroup namespace, the process's cgroup paths are the root
    assert all(line.endswith(":/") for line in r.out.splitlines()), r.out
