"""exec: a new process in a running container's namespaces, cgroups and root.

Containers are started in the background with the real ``pinnace run``; the
exec goes through ``pinnace.containers.exec.exec_in`` and asserts from inside.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import PINNACE

from pinnace import _core
from pinnace.containers import Store
from pinnace.containers.exec import exec_in
from pinnace.errors import Conflict, ContainerNotFound, ExecError

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


class Running:
    """A container started in the background; stopped by killing its pid."""

    def __init__(self, store, name: str, *args: str):
        self.name = name
        self.store = Store(store["root"], store["runroot"])
        self.cli = subprocess.Popen([PINNACE, "run", "--rm", "--name", name, *args],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ps = subprocess.run([PINNACE, "ps"], capture_output=True, text=True).stdout
            if name in ps:
                st = self.store.state(self.store.resolve(name))
                self.pid = st["State"]["Pid"]
                if self.pid and self.ready():
                    return
            assert self.cli.poll() is None, self.cli.stderr.read()
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"container {name} did not start")

    def ready(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                return f.read().strip() == "sleep"
        except OSError:
            return False

    def exec(self, *cmd: str, **kw):
        return exec_in(self.store, self.name, list(cmd), **kw)

    def out(self, *cmd: str, **kw) -> str:
        r = self.exec(*cmd, **kw)
        assert r.exit_code == 0, r.stderr
        return r.stdout.decode()

    def stop(self) -> None:
        """SIGKILL the container's first process; its ``pinnace run`` then
        cleans up and exits (killing that instead would leave an orphan)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone
            pass
        except AttributeError:  # never started
            self.cli.kill()
        self.cli.wait(20)


# the container's command writes a marker, then sleeps as PID 1
SLEEPER = ["sh", "-c", "echo written > /tmp/marker; exec sleep 60"]


@pytest.fixture(autouse=True, scope="module")
def nothing_left(store):
    yield
    from conftest import container_dirs

    assert container_dirs(store) == []


@pytest.fixture(scope="module")
def box(store):
    c = Running(store, "exec-box", "--hostname", "execbox", "-e", "FROM_RUN=1", "-w", "/tmp",
                "--ulimit", "nofile=512:1024", "--cap-drop", "NET_RAW", "host", *SLEEPER)
    yield c
    c.stop()


def test_exec_sees_the_containers_pid_namespace(box):
    out = box.out("sh", "-c", "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    own, pid1, count = out.split()
    # a small pid of the container's, PID 1 its sleep, and only its processes
    assert int(own) < 10 and pid1 == "sleep" and int(count) < 10, out


def test_exec_joins_every_namespace_of_the_container(box):
    inside = box.out("sh", "-c", " ".join(f"readlink /proc/self/ns/{n};" for n in NAMESPACES)).split()
    host = [os.readlink(f"/proc/{box.pid}/ns/{n}") for n in NAMESPACES]
    assert inside == host


def test_exec_sees_hostname_rootfs_env_and_cwd(box):
    out = box.out("sh", "-c", "hostname; cat /tmp/marker; pwd; echo $FROM_RUN $EXTRA $HOSTNAME",
                  env=["EXTRA=yes"]).splitlines()
    assert out == ["execbox", "written", "/tmp", "1 yes execbox"]
    assert box.out("pwd", workdir="/etc") == "/etc\n"
    # a file written by exec is the container's, not the host's
    box.out("sh", "-c", "echo from-exec > /exec-file")
    assert box.out("cat", "/exec-file") == "from-exec\n"
    assert not os.path.exists("/exec-file")


def test_exec_is_in_the_containers_cgroup(box):
    assert box.out("cat", "/proc/self/cgroup") == box.out("cat", "/proc/1/cgroup")
    # and as the host sees it: a detached exec, compared while it runs
    r = box.exec("sleep", "30", stdout=_core.DEVNULL, stderr=_core.DEVNULL, detach=True)
    try:
        assert r.exit_code is None and r.pid > 0
        with open(f"/proc/{r.pid}/cgroup") as a, open(f"/proc/{box.pid}/cgroup") as b:
            mine, theirs = a.read(), b.read()
        assert "pinnace" in theirs and mine == theirs
        assert os.readlink(f"/proc/{r.pid}/ns/pid") == os.readlink(f"/proc/{box.pid}/ns/pid")
    finally:
        os.kill(r.pid, signal.SIGKILL)


def test_exit_codes_and_docker_messages(box):
    assert box.exec("true").exit_code == 0
    assert box.exec("sh", "-c", "exit 3").exit_code == 3
    with pytest.raises(ExecError) as e:
        box.exec("no-such-command")
    assert (str(e.value), e.value.exit_code) == ('exec: "no-such-command": executable file not found in $PATH', 127)
    with pytest.raises(ExecError) as e:
        box.exec("/etc")
    assert e.value.exit_code == 126
    with pytest.raises(ExecError) as e:
        box.exec("true", workdir="/no/such/dir")
    assert e.value.exit_code == 127
    assert str(e.value) == 'chdir to cwd ("/no/such/dir") set in config.json failed: no such file or directory'


def test_output_is_captured_and_input_fed(box):
    r = box.exec("sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.exit_code, r.stdout, r.stderr) == (5, b"out\n", b"err\n")
    r = box.exec("cat", stdin=_core.PIPE, input=b"fed\n")
    assert r.stdout == b"fed\n"


def test_timeout_kills_it(box):
    t = time.monotonic()
    r = box.exec("sleep", "30", timeout=0.5)
    assert r.timed_out and r.signal == signal.SIGKILL and r.exit_code == 137
    assert time.monotonic() - t < 10
    # the container goes on
    assert box.ready()


def test_user_and_groups(box):
    assert box.out("id", "-u", user="1000").strip() == "1000"
    assert box.out("sh", "-c", "id -u; id -g", user="1000:1001").split() == ["1000", "1001"]
    # a name from the container's /etc/passwd
    assert box.out("id", "-u", user="nobody").strip() == "65534"


def test_capabilities_limits_and_no_new_privs_are_the_containers(box):
    status = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"
    mine = box.out("sh", "-c", status).split()
    with open(f"/proc/{box.pid}/status") as f:
        theirs = [w for line in f if line.split(":")[0] in ("CapEff", "CapBnd", "NoNewPrivs") for w in line.split()]
    assert mine == theirs
    # docker's default set, less the dropped NET_RAW (13)
    cap_eff = int(mine[mine.index("CapEff:") + 1], 16)
    assert cap_eff == 0xA80425FB & ~(1 << 13)
    full = box.out("sh", "-c", "grep CapEff /proc/self/status", privileged=True).split()[1]
    assert int(full, 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert box.out("sh", "-c", "ulimit -n; ulimit -Hn").split() == ["512", "1024"]


def test_a_container_that_is_not_running_is_refused(store):
    with pytest.raises(ContainerNotFound):
        exec_in(Store(store["root"], store["runroot"]), "no-such-container", ["true"])
    r = subprocess.run([PINNACE, "run", "--name", "exec-exited", "host", "true"], capture_output=True)
    assert r.returncode == 0
    try:
        with pytest.raises(Conflict, match="is not running"):
            exec_in(Store(store["root"], store["runroot"]), "exec-exited", ["true"])
    finally:
        assert subprocess.run([PINNACE, "rm", "exec-exited"], capture_output=True).returncode == 0


def test_exec_ends_with_its_container(store):
    c = Running(store, "exec-short", "host", *SLEEPER)
    t = time.monotonic()
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {c.pid}"])
    try:
        r = c.exec("sleep", "30")
    finally:
        killer.wait()
        c.stop()
    # the pid namespace died with its PID 1, and the exec with it
    assert r.signal == signal.SIGKILL and time.monotonic() - t < 10


def test_rootfs_and_users_are_the_containers_own(store, busybox_rootfs):
    c = Running(store, "exec-busybox", "--rootfs", str(busybox_rootfs), *SLEEPER)
    try:
        # the container's /etc/passwd, not the host's; no host /usr
        assert c.out("id", "-u", user="box").strip() == "1234"
        assert "box:x:1234" in c.out("cat", "/etc/passwd")
        r = c.exec("ls", "/usr")
        assert r.exit_code != 0
        top = c.out("ls", "/").split()
        assert "bin" in top and "usr" not in top, top
    finally:
        c.stop()


def test_core_exec_into_a_user_namespace(busybox_rootfs):
    """A container with its own user namespace (made through the core): the
    exec'd process is mapped as the container's first one is."""
    base = 300000
    subprocess.run(["chown", "-R", f"{base}:{base}", str(busybox_rootfs)], check=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pinnace-userns-exec-", dir="/var/tmp"))
    os.chmod(tmp, 0o755)
    for d in ("upper", "work", "merged"):
        (tmp / d).mkdir()
    os.chown(tmp / "upper", base, base)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
        "root": {"path": str(tmp / "merged")},
        "hostname": "userns",
        "mounts": [
            {"destination": "/", "type": "overlay", "source": "overlay",
             "options": [f"lowerdir={busybox_rootfs},upperdir={tmp / 'upper'},workdir={tmp / 'work'}"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("mount", "user", "pid", "ipc", "uts")],
                  "uidMappings": [{"containerID": 0, "hostID": base, "size": 65536}],
                  "gidMappings": [{"containerID": 0, "hostID": base, "size": 65536}]},
    }
    p = _core.create(json.dumps(spec))
    try:
        p.start()
        process = {"args": ["sh", "-c", "cat /proc/self/uid_map; id -u; hostname; echo $$"], "cwd": "/",
                   "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}
        pid, code, sig, out, err, timed_out = _core.exec_in(p.pid, json.dumps(process))
        assert code == 0, err
        lines = out.decode().splitlines()
        assert lines[0].split() == ["0", str(base), "65536"]
        assert lines[1:3] == ["0", "userns"] and int(lines[3]) < 10
        assert os.readlink(f"/proc/{p.pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        p.kill(signal.SIGKILL)
        p.wait()
        shutil.rmtree(tmp)
