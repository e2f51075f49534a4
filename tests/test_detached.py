"""Detached containers through the CLI: run -d, logs, start/restart, many at once."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time

from conftest import PINNACE, container_dirs, pn, runtime_records


def _running(name: str) -> bool:
    return pn("inspect", "-f", "{{.State.Running}}", name).out.strip() == "true"


def _until(pred, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_run_d_prints_the_id_returns_at_once_and_keeps_logs_apart():
    r = pn("run", "-d", "--name", "det1", "host", "sh", "-c", "echo to-out; echo to-err >&2; sleep 60", check=True)
    cid = r.out.strip()
    try:
        assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
        assert _running("det1")
        _until(lambda: "to-err" in pn("logs", "det1").err, what="the log")
        logs = pn("logs", "det1")
        assert logs.out == "to-out\n" and logs.err == "to-err\n"
        stamped = pn("logs", "-t", "det1").out
        assert stamped.startswith("20") and stamped.rstrip().endswith(" to-out")
    finally:
        pn("rm", "-f", "det1")
    assert pn("inspect", "det1").returncode == 125


def test_logs_follow_a_container_writing_over_time():
    pn("run", "-d", "--name", "det2", "host", "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done",
       check=True)
    try:
        t = time.monotonic()
        r = pn("logs", "-f", "det2", timeout=30)
        # -f returned on its own when the container ended, with every line
        assert r.returncode == 0 and r.out.split("\n")[:5] == [f"line {i}" for i in range(1, 6)]
        assert time.monotonic() - t >= 0.5
        assert pn("wait", "det2", check=True).out.strip() == "0"
        assert pn("logs", "--tail", "2", "det2", check=True).out == "line 4\nline 5\n"
    finally:
        pn("rm", "-f", "det2")


def test_stop_start_restart_keep_the_root_filesystem():
    pn("run", "-d", "--name", "det3", "host", "sh", "-c", "echo run >> /count; sleep 60", check=True)
    try:
        pn("stop", "-t", "0", "det3", check=True)
        assert not _running("det3")
        assert "Exited (137)" in pn("ps", "-a", check=True).out
        pn("start", "det3", check=True)
        assert _running("det3")
        pn("restart", "-t", "0", "det3", check=True)
        assert _running("det3")
        r = pn("exec", "det3", "cat", "/count", check=True)
        assert r.out == "run\nrun\nrun\n"  # the same upper layer all three times
    finally:
        pn("rm", "-f", "det3")


def test_rm_d_container_removes_itself_and_exit_code_of_a_stopped_one():
    pn("run", "-d", "--rm", "--name", "det4", "host", "true", check=True)
    _until(lambda: pn("inspect", "det4").returncode != 0, what="the auto-removal")
    pn("run", "-d", "--name", "det5", "host", "sh", "-c", "exit 7", check=True)
    try:
        assert pn("wait", "det5", check=True).out.strip() == "7"
        assert "Exited (7)" in pn("ps", "-a", check=True).out
    finally:
        pn("rm", "det5", check=True)


def test_a_killed_supervisor_shows_the_container_exited_and_prune_clears_it(store):
    pn("run", "-d", "--name", "det6", "host", "sleep", "60", check=True)
    ctr_pid = int(pn("inspect", "-f", "{{.State.Pid}}", "det6", check=True).out)
    shim_pid = int(open(f"/proc/{ctr_pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert "pinnace-shim" in open(f"/proc/{shim_pid}/cmdline").read()
    os.kill(shim_pid, signal.SIGKILL)  # the supervisor this test's container got
    _until(lambda: not os.path.exists(f"/proc/{ctr_pid}"), what="the container to die with its supervisor")
    _until(lambda: not _running("det6"), what="det6 to be reported exited")
    assert "Exited (137)" in pn("ps", "-a", check=True).out
    r = pn("system", "prune", "-f", check=True)
    assert "1 containers" in r.out
    assert container_dirs(store) == [] and runtime_records(store) == []


def test_two_hundred_idle_containers_start_list_stop_and_leave_nothing(store):
    names = [f"idle{i}" for i in range(200)]

    def start(n: str) -> str:
        return pn("run", "-d", "--rm", "--name", n, "host", "sleep", "600", check=True).out.strip()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(start, names))
    try:
        assert len(set(ids)) == 200
        listed = pn("ps", "-q", "--no-trunc", check=True).out.split()
        assert set(ids) <= set(listed)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: pn("stop", "-t", "0", n, check=True), names))
    finally:
        subprocess.run([PINNACE, "rm", "-f", *names], capture_output=True)
    _until(lambda: container_dirs(store) == [], what="every container to be removed")
    assert runtime_records(store) == []
    assert pn("ps", "-aq", check=True).out.strip() == ""


def test_fifty_concurrent_clis_starting_and_removing_corrupt_nothing(store):
    def cycle(i: int) -> None:
        n = f"conc{i}"
        pn("run", "-d", "--name", n, "host", "sleep", "600", check=True)
        assert pn("inspect", "-f", "{{.Name}}", n, check=True).out.strip() == "/" + n
        pn("rm", "-f", n, check=True)

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        list(pool.map(cycle, range(50)))
    assert container_dirs(store) == [] and runtime_records(store) == []
    assert pn("ps", "-aq", check=True).out.strip() == ""


def test_ps_filters_by_name_status_and_label():
    pn("run", "-d", "--name", "flt-web", "-l", "tier=web", "host", "sleep", "60", check=True)
    pn("run", "-d", "--name", "flt-db", "-l", "tier=db", "host", "sleep", "60", check=True)
    pn("run", "--name", "flt-done", "host", "true", check=True)
    try:
        def names(*f: str) -> list[str]:
            return sorted(c["Names"] for c in json.loads(pn("ps", "--format", "json", *f, check=True).out))

        assert names("--filter", "label=tier=web") == ["flt-web"]
        assert names("-f", "label=tier") == ["flt-db", "flt-web"]
        assert names("-f", "name=flt-") == ["flt-db", "flt-web"]
        assert names("-f", "status=exited") == ["flt-done"]
        assert names("-f", "name=flt-", "-f", "label=tier=db") == ["flt-db"]
        r = pn("ps", "-f", "colour=red")
        assert r.returncode == 125 and "invalid filter" in r.err
    finally:
        pn("rm", "-f", "flt-web", "flt-db", "flt-done")


def test_a_container_that_got_no_cgroup_still_stops_and_is_removed():
    """Started where /sys/fs/cgroup is hidden (as under `ip netns exec`): it
    runs without a cgroup, and stop and rm -f still end it by its pid."""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs none /sys/fs/cgroup && exec {PINNACE} run -d --name nocg "
                        "--network none host sleep 300"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        pid = int(pn("inspect", "-f", "{{.State.Pid}}", "nocg", check=True).out)
        pn("stop", "-t", "1", "nocg", check=True)
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    finally:
        r = pn("rm", "-f", "nocg")
    assert r.returncode == 0, r.err
