"""Acting on a container another process runs: signal, stop, wait, list its
processes, read its logs. The owner (the `pinnace run` process, or the
detached container's supervisor) holds an flock on the container's directory
for as long as it runs it, so "is it still running" and "wait until it is
done" are both questions to that lock."""

from __future__ import annotations

import fcntl
import os
import select
import signal as _signal
import time

from pinnace.containers import RESET_DONE, RESET_REQUEST, Store
from pinnace.errors import Conflict, PinnaceError, UsageError

SIGNALS = {name[3:]: int(getattr(_signal, name)) for name in dir(_signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(_signal, name), int)}


def parse_signal(sig: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``15`` -> 15, as docker accepts them."""
    if isinstance(sig, int):
        return sig
    s = sig.strip().upper()
    if s.isdigit():
        n = int(s)
        if 0 < n < 65:
            return n
    else:
        n = SIGNALS.get(s.removeprefix("SIG"))
        if n is not None:
            return n
    raise UsageError(f"invalid signal: {sig}")


def _in_cgroup(pid: int, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False


def _pidfd(st: dict) -> int | None:
    """A pidfd for the container's first process, or None if it is gone. The
    pid in the record is checked against the container's cgroup after the
    pidfd is open, so a recycled pid is never signalled."""
    pid = (st.get("State") or {}).get("Pid") or 0
    if pid <= 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if not _in_cgroup(pid, st["Id"]) and not _started_with(pid, st):
        os.close(fd)
        return None
    return fd


def _started_with(pid: int, st: dict) -> bool:
    """Whether ``pid`` started when the record says the container did (within
    seconds): the check for a container that runs without a cgroup."""
    import calendar

    started = (st.get("State") or {}).get("StartedAt") or ""
    try:
        t0 = calendar.timegm(time.strptime(started[:19], "%Y-%m-%dT%H:%M:%S"))
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, StopIteration, IndexError):
        return False
    begun = btime + ticks / os.sysconf("SC_CLK_TCK")
    return t0 - 2 <= begun <= t0 + 30


def running_state(store: Store, ref: str) -> dict:
    cid = store.resolve(ref)
    st = store.state(cid) or {}
    if not (st.get("State") or {}).get("Running"):
        raise Conflict(f"container {ref} is not running")
    return st


def kill(store: Store, ref: str, sig: str | int = "KILL") -> None:
    """Send a signal to the container's first process (``docker kill``)."""
    n = parse_signal(sig)
    st = running_state(store, ref)
    fd = _pidfd(st)
    if fd is None:
        raise Conflict(f"container {ref} is not running")
    try:
        _signal.pidfd_send_signal(fd, n)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def _wait_exit(fd: int, timeout: float | None) -> bool:
    """Until the process behind ``fd`` exits (True) or ``timeout`` passes."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(None if timeout is None else max(0, int(timeout * 1000))))


def wait_owner(store: Store, cid: str, timeout: float | None = None) -> bool:
    """Until whoever runs the container has finished with it (its lock is free)."""
    p = store.paths(cid)
    try:
        fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return True
        deadline = time.monotonic() + timeout
        delay = 0.0002  # a supervisor usually lets go within a millisecond: look soon, then less often
        while True:
            if _lock_free(fd):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
    finally:
        os.close(fd)


def _lock_free(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def reset(store: Store, ref: str, timeout: float = 30) -> int:
    """Bring a container back to its image's state and run its command
    again (``Container.reset``); returns the new pid.

    Every process of the container ends; its root filesystem is the image's
    again (the overlay's upper layer is swapped for an empty one; volumes and
    bind mounts are kept, as they outlive containers); its id, name,
    labels, network addresses and published ports stay. A running container
    is started again by its own supervisor, which keeps its network
    namespace; a stopped one is started as ``start`` does."""
    return ResetInProgress(store, store.resolve(ref)).result(timeout)


class ResetInProgress:
    """A reset asked for: ``fileno()`` becomes readable when the supervisor
    has answered (so many can be awaited at once with one poll);
    ``result()`` waits for it and returns the new pid."""

    def __init__(self, store: Store, cid: str):
        from pinnace._files import write_atomic

        self.store, self.cid = store, cid
        p = store.paths(cid)
        self.request, self.done = os.path.join(p.dir, RESET_REQUEST), os.path.join(p.dir, RESET_DONE)
        self.fd = self.lock = -1
        st = store.state(cid) or {}
        pidfd = _pidfd(st) if (st.get("State") or {}).get("Running") else None
        if pidfd is None:
            return  # stopped: result() resets it as start would
        try:
            # the supervisor writes its answer into this FIFO: a wake-up, not a poll
            _unlink(self.done)
            os.mkfifo(self.done, 0o600)
            self.fd = os.open(self.done, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.lock = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            write_atomic(self.request, "{}\n")
            # its first process only: the rest of its pid namespace goes with
            # it (a kill of the whole cgroup could strike the new container)
            try:
                _signal.pidfd_send_signal(pidfd, 9)
            except ProcessLookupError:
                pass
        except BaseException:
            self._close()
            raise
        finally:
            os.close(pidfd)

    def fileno(self) -> int:
        return self.fd

    def abandoned(self) -> bool:
        """Its supervisor has ended without answering (``result`` then
        starts it as a stopped container)."""
        return self.lock >= 0 and _lock_free(self.lock)

    def cancel(self) -> None:
        self._close()

    def _close(self) -> None:
        for fd in (self.fd, self.lock):
            if fd >= 0:
                os.close(fd)
        self.fd = self.lock = -1
        _unlink(self.done)

    def result(self, timeout: float = 30) -> int:
        from pinnace._jsonenc import loads
        from pinnace.errors import ExecError, SetupError

        if self.fd >= 0:
            try:
                p = select.poll()
                p.register(self.fd, select.POLLIN)
                deadline = time.monotonic() + timeout
                data = b""
                while True:
                    if p.poll(50):
                        try:
                            chunk = os.read(self.fd, 4096)
                        except BlockingIOError:
                            chunk = b""
                        data += chunk
                        if not chunk:
                            time.sleep(0.001)  # a writer came and went without a word
                    if data.endswith(b"\n"):
                        msg = loads(data)
                        if "error" in msg:
                            code = msg.get("exit_code", 125)
                            raise (ExecError if code in (126, 127) else SetupError)(msg["error"], code)
                        return int(msg["pid"])
                    if _lock_free(self.lock):
                        break  # its supervisor ended before it saw the request: reset it as stopped
                    if time.monotonic() >= deadline:
                        raise PinnaceError(f"container {self.cid[:12]} did not come back from its reset "
                                           f"in {timeout:g} s")
            finally:
                self._close()
            _unlink(self.request)
        return self._reset_stopped()

    def _reset_stopped(self) -> int:
        from pinnace.containers.detached import fresh_dir, restart_detached

        p = self.store.paths(self.cid)
        lock = self.store.try_lock(p)
        try:
            fresh_dir(p.upper)
        finally:
            os.close(lock)
        return restart_detached(self.store, self.cid)  # which gives it a fresh work directory


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _kill_everything(cgroup: str, pidfd: int | None) -> None:
    """SIGKILL to every process of the container's cgroup and to its main
    process (which is all there is to kill when no cgroup could be made)."""
    from pinnace import _core
    from pinnace.errors import PinnaceError

    try:
        _core.cgroup_kill(cgroup)
    except PinnaceError:
        pass  # no cgroup to list (none was made, or it is gone)
    if pidfd is not None:
        try:
            _signal.pidfd_send_signal(pidfd, 9)
        except ProcessLookupError:
            pass


def stop(store: Store, ref: str, timeout: float | None = None, sig: str | int | None = None) -> None:
    """``docker stop``: the stop signal (the image's StopSignal, else
    SIGTERM), then after ``timeout`` seconds (default 10) SIGKILL to every
    process in the container's cgroup; returns once it is stopped."""
    from pinnace import _core

    cid = store.resolve(ref)
    st = store.state(cid) or {}
    if not (st.get("State") or {}).get("Running"):
        return  # docker: stopping a stopped container succeeds
    timeout = 10.0 if timeout is None else float(timeout)
    n = parse_signal(sig or (st.get("Config") or {}).get("StopSignal") or "TERM")
    fd = _pidfd(st)
    if fd is not None:
        try:
            try:
                _signal.pidfd_send_signal(fd, n)
            except ProcessLookupError:
                pass
            exited = _wait_exit(fd, timeout)
            if not exited:
                _kill_everything(st.get("CgroupPath") or "", fd)
        finally:
            os.close(fd)
    if not wait_owner(store, cid, timeout=30):
        raise PinnaceError(f"container {ref} did not stop")


def wait(store: Store, ref: str) -> int:
    """``docker wait``: block until the container stops; its exit code."""
    cid = store.resolve(ref)
    wait_owner(store, cid)
    st = store.state(cid) or {}
    exit_file = store.paths(cid).runtime_file[:-5] + ".exit"
    try:
        from pinnace._jsonenc import loads

        with open(exit_file, "rb") as f:
            return int(loads(f.read()).get("ExitCode", 0))
    except (OSError, ValueError):
        pass
    return int((st.get("State") or {}).get("ExitCode", 0))


def top(store: Store, ref: str) -> list[tuple[str, ...]]:
    """The container's processes as ``ps -ef`` shows them (``docker top``)."""
    from pinnace import _core

    st = running_state(store, ref)
    pids = _core.cgroup_pids(st.get("CgroupPath") or "")
    tick = os.sysconf("SC_CLK_TCK")
    boot = time.time() - float(open("/proc/uptime").read().split()[0])
    rows = [("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")]
    import pwd

    for pid in sorted(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = fields[1]
        cpu = (int(fields[11]) + int(fields[12])) // tick
        start = boot + int(fields[19]) / tick
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append((user, str(pid), ppid, "0", time.strftime("%H:%M", time.localtime(start)), "?",
                     time.strftime("%H:%M:%S", time.gmtime(cpu)), cmd or f"[{comm}]"))
    return rows
