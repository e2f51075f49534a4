"""stop, kill, wait, top, inspect and logs on containers another process runs."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import PINNACE, pn


def _start(name: str, *cmd: str, rm: bool = True) -> subprocess.Popen:
    """A container run by a `pinnace run` in the background; returns once it is running."""
    args = [PINNACE, "run"] + (["--rm"] if rm else []) + ["--name", name, "host", *cmd]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = pn("inspect", "--type", "container", "-f", "{{.State.Running}} {{.State.Pid}}", name)
        if r.returncode == 0 and r.out.startswith("true") and not r.out.strip().endswith(" 0"):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"container {name} did not start: {proc.communicate()}")


def test_stop_sends_term_then_the_exit_code_is_the_commands():
    proc = _start("stopterm", "sh", "-c", 'trap "echo got term; exit 7" TERM; while :; do sleep 0.05; done', rm=False)
    try:
        r = pn("stop", "-t", "20", "stopterm", check=True)
        assert r.out.strip() == "stopterm"
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 7 and b"got term" in out
        assert pn("wait", "stopterm", check=True).out.strip() == "7"
        state = json.loads(pn("inspect", "stopterm", check=True).out)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 7 and not state["Running"]
    finally:
        proc.kill()
        pn("rm", "-f", "stopterm")


def test_stop_of_a_process_ignoring_term_ends_in_sigkill_after_the_timeout():
    # `sleep` as PID 1 has no handler, so SIGTERM is ignored, as in docker
    proc = _start("stopkill", "sleep", "60")
    try:
        t = time.monotonic()
        pn("stop", "-t", "1", "stopkill", check=True)
        took = time.monotonic() - t
        proc.wait(timeout=20)
        assert proc.returncode == 137
        assert took >= 1.0  # it waited the grace period before SIGKILL
    finally:
        proc.kill()


def test_kill_sends_the_signal_asked_for_and_rejects_bad_ones():
    proc = _start("killsig", "sh", "-c", 'trap "exit 42" USR1; while :; do sleep 0.05; done')
    try:
        r = pn("kill", "-s", "NOPE", "killsig")
        assert r.returncode == 125 and r.err.strip() == "Error: invalid signal: NOPE"
        pn("kill", "-s", "USR1", "killsig", check=True)
        proc.wait(timeout=20)
        assert proc.returncode == 42
        r = pn("kill", "killsig")
        assert r.returncode == 1 and "no such container" in r.err
    finally:
        proc.kill()


def test_top_lists_the_containers_processes():
    proc = _start("toplist", "sh", "-c", "sleep 60 & sleep 61; wait")
    try:
        out = pn("top", "toplist", check=True).out
        assert out.splitlines()[0].split()[:2] == ["UID", "PID"]
        assert "sleep 60" in out and "sleep 61" in out
    finally:
        pn("kill", "toplist")
        proc.wait(timeout=20)


def test_inspect_is_docker_shaped_and_formats():
    proc = _start("inspectme", "sleep", "60")
    try:
        c = json.loads(pn("inspect", "inspectme", check=True).out)[0]
        assert c["Name"] == "/inspectme" and c["State"]["Running"] and c["State"]["Pid"] > 0
        assert c["Config"]["Cmd"] == ["sleep", "60"] and c["HostConfig"]["AutoRemove"] is True
        pid = pn("inspect", "-f", "{{.State.Pid}}", "inspectme", check=True).out.strip()
        assert pid == str(c["State"]["Pid"])
        r = pn("inspect", "no-such-thing")
        assert r.returncode == 125 and r.err.strip() == "Error: no such object: no-such-thing"
    finally:
        pn("kill", "inspectme")
        proc.wait(timeout=20)


def test_logs_of_a_foreground_container_is_a_clear_error():
    pn("run", "--name", "nolog", "host", "true", check=True)
    try:
        r = pn("logs", "nolog")
        assert r.returncode == 125 and "only detached containers" in r.err
    finally:
        pn("rm", "nolog")


@pytest.mark.parametrize("value,expected", [("10m", 1000 - 600), ("1h30m", 1000 - 5400), ("1.5s", 998.5),
                                            ("1700000000", 1700000000.0),
                                            ("2023-11-14T22:13:20Z", 1700000000.0),
                                            ("2023-11-14T22:13:20.5+00:00", 1700000000.5)])
def test_logs_since_forms(value, expected):
    from pinnace.containers.logs import parse_since

    assert parse_since(value, now=1000) == expected


def test_log_records_assemble_into_lines_per_stream(tmp_path):
    from pinnace.containers.logs import lines

    log = tmp_path / "ctr.log"
    log.write_bytes(b"2026-11-28T06:40:26.1Z stdout F hello\n"
                    b"2026-11-28T06:40:27.0Z stderr P part1 \n"
                    b"2026-11-28T06:40:27.1Z stdout F world\n"
                    b"2026-11-28T06:40:27.2Z stderr F part2\n"
                    b"2026-11-28T06:40:28.2Z stdout P no newline yet")
    assert list(lines(str(log))) == [("stdout", b"hello\n"), ("stdout", b"world\n"),
                                     ("stderr", b"part1 part2\n"), ("stdout", b"no newline yet")]
    assert list(lines(str(log), tail=2)) == [("stderr", b"part1 part2\n"), ("stdout", b"no newline yet")]
    from pinnace.containers.logs import parse_since

    assert [d for _, d in lines(str(log), since=parse_since("2026-11-28T06:40:27.05Z"), timestamps=True)][0] == \
        b"2026-11-28T06:40:27.1Z world\n"


def test_exec_cli_runs_in_the_container():
    proc = _start("execcli", "sh", "-c", "echo made-by-ctr > /tmp/mark; sleep 60")
    try:
        r = pn("exec", "-e", "FOO=bar", "-w", "/tmp", "execcli", "sh", "-c",
               'echo "$FOO $(pwd) $(cat mark) $(cat /proc/1/cmdline | tr "\\0" " ")"; exit 3')
        assert r.returncode == 3
        assert r.out.strip() == "bar /tmp made-by-ctr sh -c echo made-by-ctr > /tmp/mark; sleep 60"
        r = pn("exec", "-i", "execcli", "cat", input=b"through stdin")
        assert r.returncode == 0 and r.out == "through stdin"
        r = pn("exec", "execcli", "no-such-command")
        assert r.returncode == 127
        assert r.err.strip() == 'Error: exec: "no-such-command": executable file not found in $PATH'
        assert pn("exec", "-d", "execcli", "sleep", "61").returncode == 0
        assert "sleep 61" in pn("top", "execcli", check=True).out
    finally:
        pn("kill", "execcli")
        proc.wait(timeout=20)
    r = pn("exec", "execcli", "true")
    assert r.returncode == 125 and len(r.err.strip().splitlines()) == 1


def test_init_is_pid_1_forwards_term_and_reaps_orphans():
    # an orphan that exits is re-parented to PID 1: with --init it is reaped
    r = pn("run", "--rm", "--init", "host", "sh", "-c",
           'cat /proc/1/cmdline | tr "\\0" " "; echo; sh -c "sleep 0.1 &"; sleep 0.6; '
           'grep -l "^State:.Z" /proc/[0-9]*/status | wc -l; exit 4', check=False)
    first, zombies = r.out.splitlines()[:2]
    assert first.startswith("/run/pinnace-init -- sh -c") and zombies.strip() == "0"
    assert r.returncode == 4
    # a command with no TERM handler still stops on SIGTERM: init passes it on
    proc = subprocess.Popen([PINNACE, "run", "--rm", "--init", "--name", "initterm2", "host", "sleep", "60"])
    try:
        deadline = time.monotonic() + 20
        while pn("inspect", "-f", "{{.State.Running}}", "initterm2").out.strip() != "true":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t = time.monotonic()
        pn("stop", "-t", "30", "initterm2", check=True)
        assert time.monotonic() - t < 10  # not the 30 s grace period: TERM did it
        assert proc.wait(timeout=20) == 143
    finally:
        proc.kill()
