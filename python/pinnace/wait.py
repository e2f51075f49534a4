"""Readiness waits: until a container's log says so, a port accepts, an HTTP
endpoint answers, or a command succeeds. Each has a deadline and raises
:class:`pinnace.errors.NotReady` saying what never became ready and what
was seen last; each gives up at once when the container stops.

They react rather than poll once a second: the log is followed as it grows
(inotify on the container's directory, which the supervisor appends to),
and connects and commands are retried with a backoff that starts at 5 ms.
Ports are tried from inside the container's network namespace (a thread
that ``setns``'s into it), on 127.0.0.1 by default, so they work the same
with ``--network none``, a bridge, or the host's network, and need no
published port.

>>> import pinnace
>>> with pinnace.from_env().containers.run("host", "sleep 0.2; echo ready; sleep infinity", detach=True) as c:
...     pinnace.wait.wait_for_log(c, "ready", timeout=5)
'ready'
"""

from __future__ import annotations

import os
import time

from pinnace.errors import Conflict, ExecTimeout, NotReady

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pinnace.api import Container, ExecResult

_FIRST_DELAY = 0.005
_MAX_DELAY = 0.1
_CLONE_NEWNET = 0x40000000


def _container(c) -> Container:
    if isinstance(c, str):
        from pinnace.api import Container

        return Container(c)
    return c


def _exit_note(c: Container) -> str:
    st = c._store.state(c.id) or {}
    s = st.get("State") or {}
    return f"container {c.short_id} exited with code {s.get('ExitCode', '?')}"


def _alive(c: Container) -> bool:
    return c._store.owner_alive(c._store.paths(c.id))


def wait_for_log(container, pattern, timeout: float = 30, *, stdout: bool = True, stderr: bool = True) -> str:
    """Until a line of the container's output matches ``pattern`` (a str
    looked for as is, or a compiled regex searched); returns that line
    (without its newline). Detached containers only (they keep a log)."""
    from collections import deque

    from pinnace.containers.logs import lines
    from pinnace.errors import UsageError

    c = _container(container)
    st = c._state()
    path = st.get("LogPath")
    if not path:
        raise UsageError(f"container {c.short_id} has no log (only detached containers keep one)")
    match = (lambda s: pattern in s) if isinstance(pattern, str) else (lambda s: pattern.search(s) is not None)
    shown = pattern if isinstance(pattern, str) else pattern.pattern
    deadline = time.monotonic() + timeout
    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
    last: deque[str] = deque(maxlen=10)
    alive = True

    def more() -> bool:
        nonlocal alive
        alive = _alive(c)
        return alive and time.monotonic() < deadline

    for stream, data in lines(path, follow_while=more):
        if stream not in streams:
            continue
        line = data.decode("utf-8", "replace").rstrip("\n")
        if match(line):
            return line
        last.append(line)
        if time.monotonic() >= deadline:
            break
    seen = ("; its last lines:\n  " + "\n  ".join(last)) if last else "; it printed nothing"
    if not alive:
        raise NotReady(f"{_exit_note(c)} before a log line matched {shown!r}{seen}")
    raise NotReady(f"container {c.short_id}: no log line matched {shown!r} within {timeout} s{seen}")


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, _CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _netns_fd(c: Container) -> int:
    """A descriptor of the container's network namespace, taken from its
    first process after checking that process is the container's."""
    from pinnace.containers.control import _pidfd

    st = c._state()
    fd = _pidfd(st)
    if fd is None:
        raise Conflict(f"container {c.short_id} is not running")
    try:
        ns = os.open(f"/proc/{st['State']['Pid']}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    return ns


def _in_netns(c: Container, fn: Callable[[], object]):
    """``fn()`` run on a thread inside the container's network namespace
    (setns on a thread is allowed for network namespaces and touches no
    other thread); its result or its exception."""
    import threading

    ns = _netns_fd(c)
    box: dict = {}

    def body() -> None:
        try:
            _setns(ns)
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    try:
        t = threading.Thread(target=body, name=f"pinnace-netns-{c.short_id}", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(ns)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _retry(c: Container, attempt: Callable[[float], str | None], timeout: float, what: str) -> None:
    """Call ``attempt(seconds left)`` until it returns None (ready), with a
    backoff from 5 ms; it returns what it saw otherwise."""
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while True:
        last = attempt(max(0.01, deadline - time.monotonic()))
        if last is None:
            return
        if not _alive(c):
            raise NotReady(f"{_exit_note(c)} before {what} (last: {last})")
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(f"container {c.short_id}: {what} not within {timeout} s (last: {last})")
        time.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_DELAY)


def wait_for_port(container, port: int, timeout: float = 30, *, host: str = "127.0.0.1") -> None:
    """Until a TCP connect to ``host:port`` succeeds inside the container's
    network namespace."""
    import socket

    c = _container(container)

    def attempt(left: float) -> str | None:
        try:
            with socket.create_connection((host, port), timeout=min(left, 1.0)):
                return None
        except OSError as e:
            return f"{type(e).__name__}: {e.strerror or e}"

    _in_netns(c, lambda: _retry(c, attempt, timeout, f"TCP port {port} accepted a connection on {host}"))


def wait_for_http(container, port: int, path: str = "/", status: int = 200, timeout: float = 30, *,
                  host: str = "127.0.0.1") -> None:
    """Until ``GET path`` on ``host:port`` inside the container's network
    namespace answers with ``status``."""
    import http.client

    c = _container(container)

    def attempt(left: float) -> str | None:
        conn = http.client.HTTPConnection(host, port, timeout=min(left, 2.0))
        try:
            conn.request("GET", path)
            got = conn.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            return f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        finally:
            conn.close()
        return None if got == status else f"status {got}"

    _in_netns(c, lambda: _retry(c, attempt, timeout, f"GET http://{host}:{port}{path} answered {status}"))


def wait_for_command(container, cmd: str | Iterable[str], timeout: float = 30) -> ExecResult:
    """Until ``cmd`` exec'd in the container exits 0 (each try killed at
    the deadline); its result."""
    c = _container(container)
    done: list = []
    failed: list[str] = []

    def attempt(left: float) -> str | None:
        try:
            r = c.exec_run(cmd, timeout=left)
        except ExecTimeout:
            # the deadline cut this try short: what the last whole one said matters more
            if failed:
                return f"{failed[-1]} (a later try was still running at the deadline)"
            return "still running at the deadline"
        except Conflict:
            return "container not running"
        if r.exit_code == 0:
            done.append(r)
            return None
        tail = r.output[-200:].decode("utf-8", "replace").strip()
        failed.append(f"exit code {r.exit_code}" + (f", output {tail!r}" if tail else ""))
        return failed[-1]

    _retry(c, attempt, timeout, f"command {cmd!r} succeeded")
    return done[0]


__all__ = ["wait_for_log", "wait_for_port", "wait_for_http", "wait_for_command"]
