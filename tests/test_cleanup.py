"""Nothing left behind, however a run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import PINNACE, container_dirs, pn, runtime_records
from test_run_cli import _container_pid


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


def test_caller_killed_with_sigkill_leaves_an_orphan_that_prune_removes(store):
    p = subprocess.Popen([PINNACE, "run", "--rm", "--name", "orphan1", "host", "sleep", "60"])
    child = _container_pid(p.pid, "sleep")
    p.kill()
    p.wait()
    # the container's process dies with its caller
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{child}")
    # its mounts lived in its own mount namespace and died with it
    assert _mounts_under(store["root"]) == []
    # the record stays, shown as exited, until prune
    ps = pn("ps", "-a", check=True).out
    assert "orphan1" in ps and "Exited (137)" in ps
    assert "orphan1" not in pn("ps", check=True).out
    assert len(container_dirs(store)) == 1
    r = pn("system", "prune", "-f", check=True)
    assert "Total reclaimed: 1 containers" in r.out
    assert container_dirs(store) == []
    assert runtime_records(store) == []
    # and the name is free again
    pn("run", "--rm", "--name", "orphan1", "host", "true", check=True)


def test_rm_force_kills_a_running_container(store):
    p = subprocess.Popen([PINNACE, "run", "--name", "longrun", "host", "sleep", "60"])
    try:
        _container_pid(p.pid, "sleep")
        r = pn("rm", "longrun")
        assert r.returncode == 1 and "is running" in r.err
        assert "longrun" in pn("ps", check=True).out
        pn("rm", "-f", "longrun", check=True)
        assert p.wait(timeout=10) == 137
        assert container_dirs(store) == []
    finally:
        p.kill()
        p.wait()


def test_killed_and_failing_runs_leave_no_directory(store):
    pn("run", "--rm", "host", "sh", "-c", "kill -9 $$")  # pid 1 ignores it; exits normally
    pn("run", "--rm", "host", "no-such-binary")
    pn("run", "--rm", "-w", "/etc/passwd", "host", "true")
    p = subprocess.Popen([PINNACE, "run", "--rm", "host", "sleep", "60"])
    os.kill(_container_pid(p.pid, "sleep"), signal.SIGKILL)
    assert p.wait(timeout=10) == 137
    assert container_dirs(store) == []
    assert _mounts_under(store["root"]) == []
