"""Limits that bite and usage that is reported, on this host's cgroups
(hybrid here; CI runs the same tests on a pure v2 VM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import pinnace
from pinnace import _core
from conftest import PINNACE, pn, sh

MODE = _core.cgroup_mode()

ALLOC = "import time,sys; b = b'x' * ({mib} << 20); print('ready', flush=True); time.sleep({sleep})"


def _cgroup_file(cid: str, controller: str, name: str) -> str:
    if MODE == "v2":
        return f"/sys/fs/cgroup/pinnace/{cid}/{name}"
    return f"/sys/fs/cgroup/{controller}/pinnace/{cid}/{name}"


def _container_id(name: str) -> str:
    # the record appears as the process starts; poll for it
    deadline = time.monotonic() + 5
    while True:
        rows = json.loads(pn("ps", "--format", "json", check=True).out)
        ids = [r["Id"] for r in rows if r["Names"] == name]
        if ids or time.monotonic() > deadline:
            return ids[0]
        time.sleep(0.02)


class Background:
    """A named container run by the CLI in the background."""

    def __init__(self, name: str, *args: str):
        self.name = name
        self.p = subprocess.Popen([PINNACE, "run", "--rm", "--name", name, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def __enter__(self):
        line = self.p.stdout.readline()
        assert line == b"ready\n", (line, self.p.stderr.read() if self.p.poll() is not None else "")
        self.id = _container_id(self.name)
        return self

    def __exit__(self, *exc):
        pn("rm", "-f", self.name)
        try:
            self.p.wait(timeout=15)
        finally:
            self.p.kill()
            self.p.wait()


def test_memory_hog_is_oom_killed_at_its_limit_and_reported():
    r = pinnace.run("host", ["python3", "-c", ALLOC.format(mib=200, sleep=0)], memory="64m")
    assert r.exit_code == 137 and r.signal == signal.SIGKILL
    assert r.oom_killed
    assert r.stats["oom_kills"] >= 1
    # the host is fine, and a container under its limit is too
    ok = pinnace.run("host", ["python3", "-c", ALLOC.format(mib=16, sleep=0)], memory="64m")
    assert ok.exit_code == 0 and not ok.oom_killed


def test_oom_kill_is_recorded_for_a_kept_container():
    r = pn("run", "--name", "oomed", "--memory", "64m", "host", "python3", "-c", ALLOC.format(mib=200, sleep=0))
    try:
        assert r.returncode == 137
        rows = json.loads(pn("ps", "-a", "--format", "json", check=True).out)
        row = next(x for x in rows if x["Names"] == "oomed")
        assert row["OOMKilled"] is True and row["ExitCode"] == 137
    finally:
        pn("rm", "oomed")


FORK_BOMB = """
import os, time
made = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        print("refused", e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += 1
print("made", made, flush=True)
"""


def test_fork_bomb_stops_at_the_pids_limit():
    r = pinnace.run("host", ["python3", "-c", FORK_BOMB], pids_limit=12, timeout=60)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "refused 11"  # EAGAIN
    # python itself plus its children: never more than the limit
    assert lines[1] == "made 11"
    assert r.stats["pids_limit"] == 12


def test_cpu_quota_throttles_a_busy_loop():
    loop = ["timeout", "1", "sh", "-c", "while :; do :; done"]
    r = pinnace.run("host", loop, cpus=0.5)
    assert r.exit_code == 124
    s = r.stats
    assert s["cpu_throttled_periods"] > 0 and s["cpu_throttled_ns"] > 0
    # half a CPU for about a second: well under a full CPU-second
    assert s["cpu_usage_ns"] < 0.8e9
    free = pinnace.run("host", loop)
    assert free.stats["cpu_throttled_periods"] == 0


def test_stats_of_a_container_that_allocated_100_mib():
    with Background("hog100", "--memory", "512m", "host", "python3", "-c", ALLOC.format(mib=100, sleep=60)) as c:
        r = pn("stats", "--no-stream", "--format", "json", "hog100", check=True)
        row = json.loads(r.out.strip().splitlines()[0])
        assert row["Name"] == "hog100" and row["ID"] == c.id[:12]
        assert row["Raw"]["memory_usage"] >= 100 << 20
        assert row["MemUsage"].endswith("/ 512MiB")
        assert int(row["PIDs"]) >= 1
        table = pn("stats", "--no-stream", "hog100", check=True).out.splitlines()
        assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
        assert "hog100" in table[1]
        s = pinnace.stats("hog100")
        assert s["memory_usage"] >= 100 << 20 and s["memory_limit"] == 512 << 20
        assert s["memory_percent"] > 19


def test_cpu_percent_of_a_busy_container():
    with Background("busy1", "--cpus", "0.5", "host", "sh", "-c", "echo ready; while :; do :; done"):
        s = pinnace.stats("busy1", interval=1.0)
        assert 25 <= s["cpu_percent"] <= 70, s["cpu_percent"]


def test_double_forked_daemon_dies_when_the_container_is_removed():
    daemon = 'setsid sh -c "sleep 1000" </dev/null >/dev/null 2>&1 &'
    with Background("daemonized", "host", "sh", "-c", f"({daemon}); echo ready; sleep 1000") as c:
        procs = [p for p in os.listdir("/proc") if p.isdigit() and _in_cgroup(p, c.id)]
        assert len(procs) >= 3  # sh, sleep, the daemon's sleep
        pn("rm", "-f", "daemonized", check=True)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{p}") and _in_cgroup(p, c.id) for p in procs):
            assert time.monotonic() < deadline, "processes survived rm -f"
            time.sleep(0.05)


def _in_cgroup(pid: str, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False


def test_cpuset_shares_reservation_and_io_limits_are_written_as_docker_means():
    dev = "/dev/vda" if os.path.exists("/dev/vda") else None
    args = ["--cpuset-cpus", "0", "--cpu-shares", "512", "--memory", "256m", "--memory-reservation", "64m"]
    if dev:
        args += ["--device-read-bps", f"{dev}:1mb", "--device-write-bps", f"{dev}:2mb"]
    with Background("tuned", *args, "host", "sh", "-c", "echo ready; sleep 60") as c:
        if MODE == "v2":
            assert open(_cgroup_file(c.id, "cpu", "cpu.weight")).read().strip() == "20"
            assert open(_cgroup_file(c.id, "memory", "memory.low")).read().strip() == str(64 << 20)
            if dev:
                io = open(_cgroup_file(c.id, "io", "io.max")).read()
                assert "rbps=1048576" in io and "wbps=2097152" in io
        else:
            assert open(_cgroup_file(c.id, "cpu", "cpu.shares")).read().strip() == "512"
            assert open(_cgroup_file(c.id, "memory", "memory.soft_limit_in_bytes")).read().strip() == str(64 << 20)
            if dev:
                st = os.stat(dev)
                rd = open(_cgroup_file(c.id, "blkio", "blkio.throttle.read_bps_device")).read()
                assert f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)} 1048576" in rd
    # cpuset: the container may only run on CPU 0 (seen from inside)
    r = sh("grep Cpus_allowed_list /proc/self/status", "--cpuset-cpus", "0")
    assert r.out.split()[-1] == "0"


def test_blkio_weight_is_applied_or_discarded_with_a_warning():
    r = sh("true", "--blkio-weight", "300")
    assert r.returncode == 0
    assert r.err == "" or r.err.startswith("WARNING: your kernel does not support block I/O weight")


@pytest.mark.parametrize("args, needle", [
    (["--memory", "lots"], "invalid value 'lots' for --memory"),
    (["--memory", "1k"], "minimum memory limit"),
    (["--cpus", "-1"], "the range of CPUs"),
    (["--cpus", "many"], "the range of CPUs"),
    (["--pids-limit", "x"], "--pids-limit"),
    (["--blkio-weight", "5"], "--blkio-weight"),
    (["--memory-swap", "1g"], "always set --memory"),
    (["--memory", "1g", "--memory-swap", "512m"], "at least --memory"),
    (["--cpuset-cpus", "a-b"], "--cpuset-cpus"),
    (["--device-read-bps", "/no/such/dev:1mb"], "no such file"),
    (["--device-read-bps", "/dev/null:1mb"], "not a block device"),
])
def test_bad_limits_give_one_line(args, needle):
    r = pn("run", "--rm", *args, "host", "true")
    assert r.returncode == 125
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.err


def test_v2_mechanics_on_a_real_cgroup2_mount():
    """cgroup.procs, cgroup.freeze, cgroup.events and cgroup.kill, for real:
    on this host's unified mount (hybrid) or the root (pure v2)."""
    root = "/sys/fs/cgroup/unified" if MODE == "hybrid" else "/sys/fs/cgroup"
    if MODE == "v1":
        pytest.skip("no cgroup2 mount on a pure v1 host")
    cg = _core.CgroupV2(root, f"pinnace-selftest-{os.getpid()}")
    cg.create()
    p = subprocess.Popen(["sh", "-c", "read go; sleep 100 & sleep 100; wait"], stdin=subprocess.PIPE)
    try:
        cg.add(p.pid)
        p.stdin.write(b"go\n")
        p.stdin.flush()
        # a child forked after the move lands in the cgroup too
        deadline = time.monotonic() + 5
        while len(cg.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.pid in cg.pids() and len(cg.pids()) >= 2
        assert cg.events() == (True, False)
        cg.freeze(True)
        assert cg.events() == (True, True)
        cg.freeze(False)
        assert cg.events() == (True, False)
        cg.kill()
        assert p.wait(timeout=10) == -signal.SIGKILL
        assert cg.events()[0] is False
    finally:
        p.kill()
        p.wait()
        cg.destroy()
    assert not os.path.exists(f"{root}/pinnace-selftest-{os.getpid()}")


def test_container_sees_its_own_limits_in_sys_fs_cgroup():
    if MODE == "v2":
        r = sh("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup; "
               "touch /sys/fs/cgroup/x", "--memory", "64m", "--pids-limit", "33")
        lines = r.out.split()
        assert lines[:3] == [str(64 << 20), "33", "0::/"]  # its own cgroup namespace, by default
    else:
        r = sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
               "touch /sys/fs/cgroup/x", "--memory", "64m", "--pids-limit", "33")
        assert r.out.split()[:2] == [str(64 << 20), "33"]
    assert "Read-only file system" in r.err


def test_a_host_without_writable_cgroups_runs_containers_without_one(tmp_path):
    """Inside another container /sys/fs/cgroup is often read-only: without
    limits, run anyway (with a warning); with limits, refuse in one line."""
    script = tmp_path / "ro.sh"
    script.write_text(
        "set -e\n"
        "for m in $(awk '$3 ~ /^cgroup/ {print $2}' /proc/self/mounts); do mount -o remount,bind,ro $m; done\n"
        f"{PINNACE} run --rm host echo hi\n"
        f"{PINNACE} run --rm --memory 64m host echo limited || echo refused $?\n")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines() == ["hi", "refused 125"], (r.stdout, r.stderr)
    assert "running without a cgroup of its own" in r.stderr
    assert "Read-only file system" in r.stderr
