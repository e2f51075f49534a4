"""-t: a pseudo-terminal, driven the way a user at a terminal drives it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from conftest import PINNACE, pn


def _drive(argv: list[str], inputs: list[tuple[bytes, float]], settle: float = 1.5) -> tuple[str, int]:
    """Run ``argv`` on a new pty, type ``inputs`` (each then waiting), return (screen, exit code)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    out = b""

    def read(seconds: float) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return

    try:
        read(settle)
        for data, wait in inputs:
            os.write(fd, data)
            read(wait)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)
            read(0.1)
        raise AssertionError(f"{argv} did not end: {out!r}")
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_run_it_gives_a_terminal_where_ctrl_c_interrupts_and_the_exit_code_comes_back():
    screen, code = _drive([PINNACE, "run", "--rm", "-it", "host", "sh"], [
        (b"test -t 0 && test -t 1 && echo both-ttys TERM=$TERM\r", 1.0),
        (b"sleep 30\r", 0.7),
        (b"\x03", 0.5),                      # ^C: SIGINT for sleep, not for the shell
        (b"echo still-here; exit 5\r", 1.0),
    ])
    assert "both-ttys TERM=xterm" in screen
    assert "still-here" in screen
    assert code == 5, screen


def test_exec_it_into_a_running_container():
    ctr = subprocess.Popen([PINNACE, "run", "--rm", "--name", "ttyexec", "host", "sleep", "60"])
    try:
        deadline = time.monotonic() + 20
        while "true" not in pn("inspect", "-f", "{{.State.Running}}", "ttyexec").out:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        screen, code = _drive([PINNACE, "exec", "-it", "ttyexec", "sh"], [
            (b"test -t 0 && echo exec-tty; cat /proc/1/cmdline\r", 1.0),
            (b"exit 4\r", 1.0),
        ])
        assert "exec-tty" in screen and "sleep" in screen
        assert code == 4, screen
    finally:
        pn("kill", "ttyexec")
        ctr.wait(timeout=20)
