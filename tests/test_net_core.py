"""The core's networking, through ``pinnace._core`` as root: joining
namespaces by path (OCI ``linux.namespaces[].path``), and the netlink
functions that make network namespaces, bridges and veth pairs.

Nothing here touches the host's network namespace: every test that makes
links runs with the test's thread inside a network namespace of its own
(the ``netns`` fixture), where the bridge and the host ends of the veths
live and die with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from test_shim import wait_for

from pinnace import _core
from pinnace.errors import Conflict, SetupError, SpecError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture
def netns():
    """The test's thread in a fresh network namespace (lo up), back home after.
    Subprocesses started meanwhile are born in it too."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = _core.net_namespace()
    setns(fd)
    try:
        yield fd
    finally:
        setns(home)
        os.close(home)
        os.close(fd)


def in_ns(fd: int, *cmd: str, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the network namespace behind our descriptor ``fd``."""
    return subprocess.run(["nsenter", f"--net=/proc/{os.getpid()}/fd/{fd}", *cmd], capture_output=True, text=True,
                          timeout=30, **kw)


def if_flags(fd: int, name: str) -> int:
    """The flags of interface ``name`` in that namespace (SIOCGIFFLAGS)."""
    code = (f"import fcntl,socket,struct; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
            f"print(struct.unpack('H', fcntl.ioctl(s, 0x8913, struct.pack('256s', b'{name}'))[16:18])[0])")
    return int(in_ns(fd, sys.executable, "-c", code, check=True).stdout)


def links_in(fd: int) -> list[str]:
    """Interface names in that namespace, as /proc/net/dev lists them."""
    r = in_ns(fd, "cat", "/proc/thread-self/net/dev", check=True)
    return [line.split(":")[0].strip() for line in r.stdout.splitlines() if ":" in line]


def routes_in(fd: int) -> list[str]:
    """IPv4 routes in that namespace: "destination/gateway" in hex, as /proc/net/route has them."""
    r = in_ns(fd, "cat", "/proc/thread-self/net/route", check=True)
    return [f"{f[1]}/{f[2]}" for f in (line.split() for line in r.stdout.splitlines()[1:])]


# ---- joining namespaces by path ---------------------------------------------------------------

@pytest.fixture
def rootfs(busybox_rootfs):
    for applet in ("readlink", "grep"):
        os.symlink("busybox", busybox_rootfs / "bin" / applet)
    return busybox_rootfs


def spec_for(rootfs, script: str, namespaces: list[dict], **extra) -> dict:
    return {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh", "-c", script], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
        "root": {"path": str(rootfs), "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}] + namespaces},
        **extra,
    }


def run(spec: dict) -> tuple[int, str, str]:
    _, (code, _, out, err, *_) = _core.run(json.dumps(spec))
    return code, out.decode(), err.decode()


@pytest.fixture
def helper():
    """A sleeping process in new network, uts, ipc and cgroup namespaces, with a
    bridge "probe0" in its network namespace and the hostname "helper"."""
    p = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "--cgroup", "sh", "-c",
                          "hostname helper && exec sleep 120"])
    try:
        assert wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep"))
        code = "from pinnace import _core; _core.net_bridge('probe0', ['10.99.0.1/24'])"
        subprocess.run(["nsenter", f"--net=/proc/{p.pid}/ns/net", sys.executable, "-c", code], check=True, timeout=30)
        yield p.pid
    finally:
        p.kill()
        p.wait()


def test_run_joins_a_network_namespace_by_path_before_mounting_sysfs(rootfs, helper):
    script = "readlink /proc/self/ns/net; cat /proc/net/dev; ls /sys/class/net"
    code, out, err = run(spec_for(rootfs, script, [{"type": "network", "path": f"/proc/{helper}/ns/net"}]))
    assert code == 0, err
    ns, *rest = out.split("\n", 1)
    assert ns == os.readlink(f"/proc/{helper}/ns/net")
    dev = [line.split(":")[0].strip() for line in rest[0].splitlines() if ":" in line]
    assert sorted(dev) == ["lo", "probe0"]
    # sysfs was mounted inside the joined namespace, so it lists the same devices
    assert sorted(rest[0].split()[-2:]) == ["lo", "probe0"], out


def test_a_proc_fd_path_joins_the_namespace_the_descriptor_holds(rootfs):
    fd = _core.net_namespace()
    try:
        path = f"/proc/{os.getpid()}/fd/{fd}"
        code, out, err = run(spec_for(rootfs, "readlink /proc/self/ns/net; cat /sys/class/net/lo/flags",
                                      [{"type": "network", "path": path}]))
        assert code == 0, err
        ns, flags = out.split()
        assert ns == os.readlink(f"/proc/self/fd/{fd}")
        assert int(flags, 16) & 1  # lo is up: net_namespace did it
    finally:
        os.close(fd)


def test_uts_ipc_and_cgroup_namespaces_are_joined_by_path(rootfs, helper):
    script = "hostname; for n in uts ipc cgroup net; do readlink /proc/self/ns/$n; done"
    namespaces = [{"type": t, "path": f"/proc/{helper}/ns/{n}"} for t, n in (("uts", "uts"), ("ipc", "ipc"), ("cgroup", "cgroup"))]
    code, out, err = run(spec_for(rootfs, script, namespaces + [{"type": "network"}]))
    assert code == 0, err
    name, uts, ipc, cgroup, net = out.split()
    assert name == "helper"
    assert [uts, ipc, cgroup] == [os.readlink(f"/proc/{helper}/ns/{n}") for n in ("uts", "ipc", "cgroup")]
    # the others are still made new
    assert net not in (os.readlink(f"/proc/{helper}/ns/net"), os.readlink("/proc/self/ns/net"))
    # as runc: a hostname in the spec is set in the uts namespace joined
    code, out, err = run(spec_for(rootfs, "hostname", namespaces[:1], hostname="joined"))
    assert (code, out.strip()) == (0, "joined"), err
    r = subprocess.run(["nsenter", f"--uts=/proc/{helper}/ns/uts", "hostname"], capture_output=True, text=True)
    assert r.stdout.strip() == "joined"


def test_create_then_start_joins_too(rootfs, helper):
    spec = spec_for(rootfs, "cat /proc/net/dev", [{"type": "network", "path": f"/proc/{helper}/ns/net"}])
    p = _core.create(json.dumps(spec))
    try:
        # parked before exec, and already in the joined namespace
        assert os.readlink(f"/proc/{p.pid}/ns/net") == os.readlink(f"/proc/{helper}/ns/net")
        p.start()
        code, _, out, err, *_ = p.wait()
    finally:
        p.kill(signal.SIGKILL)
    assert code == 0, err
    assert "probe0:" in out.decode()


def test_paths_that_cannot_be_joined_are_clear_errors(rootfs, helper):
    def fails(namespaces):
        with pytest.raises((SpecError, SetupError)) as e:
            run(spec_for(rootfs, "true", namespaces))
        return e.value

    e = fails([{"type": "network", "path": "/nonexistent/netns"}])
    assert isinstance(e, SetupError)
    assert str(e).startswith("open network namespace /nonexistent/netns: ENOENT"), e
    e = fails([{"type": "network", "path": f"/proc/{helper}/ns/uts"}])
    assert isinstance(e, SpecError)
    assert str(e) == f"invalid runtime spec: network namespace path /proc/{helper}/ns/uts is a uts namespace, not a network namespace"
    e = fails([{"type": "ipc", "path": "/etc/hostname"}])
    assert str(e) == "invalid runtime spec: ipc namespace path /etc/hostname is not a namespace"
    e = fails([{"type": "user", "path": f"/proc/{helper}/ns/user"}])
    assert isinstance(e, SpecError) and "joining an existing user namespace" in str(e)


def test_the_shim_joins_a_namespace_path_the_caller_holds(rootfs, helper, tmp_path):
    """A detached container: pinnace-shim builds its own plan from the spec and
    opens /proc/CALLER/fd/N while the caller waits for its ready line."""
    fd = os.open(f"/proc/{helper}/ns/net", os.O_RDONLY)
    lock = tmp_path / "ctr"
    lock.mkdir()
    spec = spec_for(rootfs, "cat /proc/net/dev", [{"type": "network", "path": f"/proc/{os.getpid()}/fd/{fd}"}])
    shim = _core.shim_path(tempfile.mkdtemp(prefix="pinnace-shim-", dir=tmp_path))
    r, w = os.pipe()
    config = {"spec": spec, "log_path": str(lock / "ctr.log"), "exit_path": str(lock / "exit.json"),
              "lock_dir": str(lock), "ready_fd": w}
    (lock / "shim.json").write_text(json.dumps(config))
    try:
        subprocess.run([shim, str(lock / "shim.json")], pass_fds=(w,), check=True, timeout=30,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        w = -1
        ready = json.loads(os.read(r, 4096).split(b"\n")[0])
    finally:
        os.close(r)
        os.close(fd)
        if w >= 0:
            os.close(w)
    assert "pid" in ready, ready
    assert wait_for(lambda: (lock / "exit.json").exists())
    assert json.loads((lock / "exit.json").read_text())["ExitCode"] == 0
    assert " probe0:" in (lock / "ctr.log").read_text()


# ---- netlink: namespaces, bridges, veth pairs ---------------------------------------------------

def test_net_namespace_is_a_new_namespace_with_lo_up_and_leaves_us_where_we_were():
    before = os.readlink("/proc/thread-self/ns/net")
    fd = _core.net_namespace()
    try:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        assert os.readlink(f"/proc/self/fd/{fd}") != before
        assert os.readlink("/proc/thread-self/ns/net") == before
        assert os.get_inheritable(fd) is False
        assert links_in(fd) == ["lo"]
        assert if_flags(fd, "lo") & 1  # IFF_UP
    finally:
        os.close(fd)


def test_bridge_is_made_once_and_then_reused(netns):
    assert _core.net_link_exists("pn0") is False
    assert _core.net_bridge("pn0", ["10.88.0.1/16", "fd00:88::1/64"], 1400) is True
    assert _core.net_bridge("pn0", ["10.88.0.1/16"], 1400) is False
    assert _core.net_link_exists("pn0")
    assert if_flags(netns, "pn0") & 1
    if os.path.exists("/proc/net/if_inet6"):
        r = in_ns(netns, "cat", "/proc/thread-self/net/if_inet6", check=True)
        assert "fd000088000000000000000000000001" in r.stdout and "pn0" in r.stdout


def test_two_processes_racing_to_make_the_bridge_both_succeed(netns):
    code = "import sys; from pinnace import _core; print(_core.net_bridge('race0', ['10.77.0.1/16']))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs) == ["False", "False", "False", "True"]


def test_something_else_by_the_bridges_name_is_refused(netns):
    assert _core.net_bridge("pnb", []) is True
    fd = _core.net_namespace()
    try:
        _core.net_attach(fd, "pnb", "pnveth0", "eth0")
        with pytest.raises(Conflict, match="link pnveth0 exists and is not a bridge"):
            _core.net_bridge("pnveth0", [])
    finally:
        os.close(fd)


def test_two_attached_namespaces_talk_through_the_bridge(netns):
    _core.net_bridge("pn0", ["10.88.0.1/16"], 1500)
    a, b = _core.net_namespace(), _core.net_namespace()
    try:
        mac_a = _core.net_attach(a, "pn0", "pnveth-a", "eth0", ["10.88.0.2/16"], "10.88.0.1", 1500)
        mac_b = _core.net_attach(b, "pn0", "pnveth-b", "eth0", ["10.88.0.3/16"], "10.88.0.1", 1500)
        assert mac_a != mac_b and len(mac_a.split(":")) == 6
        for fd, mac in ((a, mac_a), (b, mac_b)):
            assert links_in(fd) == ["lo", "eth0"]
            out = in_ns(fd, sys.executable, "-c", "import fcntl,socket,struct;"
                        "s=socket.socket();"
                        "print(fcntl.ioctl(s,0x8927,struct.pack('256s',b'eth0'))[18:24].hex(':'))").stdout.strip()
            assert out == mac
            # default route (00000000) via 10.88.0.1 (little-endian hex)
            assert "00000000/0100580A" in routes_in(fd)
        server = subprocess.Popen(
            ["nsenter", f"--net=/proc/{os.getpid()}/fd/{b}", sys.executable, "-c",
             "import socket; s=socket.create_server(('10.88.0.3', 7070)); print('ready', flush=True);"
             "c,_=s.accept(); c.sendall(c.recv(100).upper()); c.close()"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "ready"
            r = in_ns(a, sys.executable, "-c",
                      "import socket; c=socket.create_connection(('10.88.0.3', 7070), timeout=10);"
                      "c.sendall(b'hello'); print(c.recv(100).decode())")
            assert r.stdout.strip() == "HELLO", r.stderr
        finally:
            server.kill()
            server.wait()
        # both host ends are on the bridge
        for host_if in ("pnveth-a", "pnveth-b"):
            assert _core.net_link_exists(host_if)
    finally:
        os.close(a)
        os.close(b)


def test_detach_removes_the_interface_and_its_host_end(netns):
    _core.net_bridge("pn0", ["10.88.0.1/16"])
    fd = _core.net_namespace()
    try:
        _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"], "10.88.0.1")
        assert _core.net_detach(fd, "eth0") is True
        assert links_in(fd) == ["lo"]
        assert not _core.net_link_exists("pnveth0")
        assert _core.net_detach(fd, "eth0") is False
        # attachable again, under the same names
        _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"], "10.88.0.1")
    finally:
        os.close(fd)


def test_closing_every_descriptor_of_a_namespace_removes_its_veths_host_end(netns):
    _core.net_bridge("pn0", ["10.88.0.1/16"])
    fd = _core.net_namespace()
    _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"])
    assert _core.net_link_exists("pnveth0")
    os.close(fd)
    # the namespace is torn down by the kernel shortly after
    assert wait_for(lambda: not _core.net_link_exists("pnveth0"))


def test_a_second_attach_keeps_the_existing_default_route(netns):
    _core.net_bridge("pn0", ["10.88.0.1/16"])
    _core.net_bridge("pn1", ["10.89.0.1/16"])
    fd = _core.net_namespace()
    try:
        _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"], "10.88.0.1")
        _core.net_attach(fd, "pn1", "pnveth1", "eth1", ["10.89.0.2/16"], "10.89.0.1")
        defaults = [r for r in routes_in(fd) if r.startswith("00000000/")]
        assert defaults == ["00000000/0100580A"]
    finally:
        os.close(fd)


def test_failures_name_the_step_and_leave_nothing_behind(netns):
    _core.net_bridge("pn0", ["10.88.0.1/16"])
    fd = _core.net_namespace()
    try:
        with pytest.raises(SetupError, match=r"^attach eth0 to bridge nobr0: bridge nobr0: ENODEV"):
            _core.net_attach(fd, "nobr0", "pnveth0", "eth0", ["10.88.0.2/16"])
        assert not _core.net_link_exists("pnveth0")
        # a gateway off every subnet of the interface fails after the pair was made
        with pytest.raises(SetupError, match=r"^attach eth0 to bridge pn0: add default route via 192\.0\.2\.1: ENETUNREACH"):
            _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"], "192.0.2.1")
        assert not _core.net_link_exists("pnveth0")
        assert links_in(fd) == ["lo"]
        # names taken, here or there
        _core.net_attach(fd, "pn0", "pnveth0", "eth0", ["10.88.0.2/16"])
        with pytest.raises(Conflict, match="create veth pnveth0: link pnveth0 exists already"):
            _core.net_attach(fd, "pn0", "pnveth0", "eth1")
        with pytest.raises(Conflict, match="eth0 exists already in the target network namespace"):
            _core.net_attach(fd, "pn0", "pnveth1", "eth0")
        assert not _core.net_link_exists("pnveth1")
        assert links_in(fd) == ["lo", "eth0"]
    finally:
        os.close(fd)


def test_bad_input_is_refused_before_anything_is_made(netns):
    fd = _core.net_namespace()
    try:
        with pytest.raises(SpecError, match="longer than 15 bytes"):
            _core.net_attach(fd, "pn0", "pnveth0123456789", "eth0")
        with pytest.raises(SpecError, match="invalid address"):
            _core.net_bridge("pn0", ["10.88.0.1/33"])
        with pytest.raises(SpecError, match="invalid gateway"):
            _core.net_attach(fd, "pn0", "pnveth0", "eth0", [], "nowhere")
        with pytest.raises(SpecError, match="invalid MTU"):
            _core.net_bridge("pn0", [], 10)
        uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
        try:
            with pytest.raises(SpecError, match="is a uts namespace, not a network namespace"):
                _core.net_attach(uts, "pn0", "pnveth0", "eth0")
        finally:
            os.close(uts)
        with pytest.raises(ValueError):
            _core.net_detach(-1, "eth0")
        assert not _core.net_link_exists("pn0")
    finally:
        os.close(fd)


def test_link_delete_and_exists(netns):
    assert _core.net_link_exists("lo")
    assert _core.net_link_delete("pnnone") is False
    _core.net_bridge("pn0", [])
    assert _core.net_link_delete("pn0") is True
    assert not _core.net_link_exists("pn0")
