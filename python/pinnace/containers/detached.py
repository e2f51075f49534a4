"""Detached containers: each runs under its own ``pinnace-shim``, no daemon.

The shim (``rust/shim.rs``) is the container's parent and its owner: it
holds the container directory's flock while the container lives, appends
its output to ``ctr.log`` (podman's k8s-file format), writes ``exit.json``
when it ends and, with ``remove``, removes the container. This module only
prepares the container as ``runner`` does, writes the shim's configuration,
starts the shim and waits for its one ready line.
"""

from __future__ import annotations

import _thread
import errno
import os
import time

from pinnace import _core
from pinnace._files import write_atomic
from pinnace._jsonenc import dumps, loads
from pinnace.config import RunOptions, build_spec, container_labels
from pinnace.containers import TRASH_PREFIX, Store, new_id
from pinnace.containers.runner import _etc_files, initial_record, prepare, shim_binary
from pinnace.errors import ExecError, SetupError
from pinnace.images import Image

SHIM_CONFIG = "shim.json"
_SPAWN_LOCK = _thread.allocate_lock()


def _read_line(fd: int) -> bytes:
    # Only up to the newline: the container holds a copy of the pipe's write
    # end until it execs, so end-of-file may come late.
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _spawn(shim: str, config_path: str) -> int:
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
               (os.POSIX_SPAWN_DUP2, 0, 2)]
    for attempt in range(50):
        try:
            return os.posix_spawn(shim, [shim, config_path], os.environ, setsid=True, file_actions=actions)
        except OSError as e:
            # Just written by shim_path: a fork elsewhere in this process may
            # still hold the file open for writing until it execs.
            if e.errno != errno.ETXTBSY or attempt == 49:
                raise
            time.sleep(0.002)
    raise AssertionError("unreachable")


def _hand_over(shim: str, config_path: str, config: dict, lock_fd: int, owner_pidfd: int = -1) -> dict | None:
    """Write the shim's configuration, start it with the container's locked
    directory and a ready pipe (and ``owner_pidfd``, when given), and return
    its one ready line (None if it died without one)."""
    r, w = os.pipe()
    try:
        config.update(lock_fd=lock_fd, ready_fd=w, owner_pidfd=owner_pidfd if owner_pidfd >= 0 else None)
        write_atomic(config_path, dumps(config))
        passed = [fd for fd in (w, lock_fd, owner_pidfd) if fd >= 0]
        # inheritable only while this spawn runs: a shim started by another
        # thread meanwhile must not get them (another container's lock would
        # then look held for as long as that shim lives)
        with _SPAWN_LOCK:
            for fd in passed:
                os.set_inheritable(fd, True)
            try:
                pid = _spawn(shim, config_path)
            finally:
                for fd in passed:
                    os.set_inheritable(fd, False)
        os.close(w)
        w = -1
        # the shim forks at once: its first process ends, the shim is adopted
        os.waitpid(pid, 0)
        line = _read_line(r)
        return loads(line) if line else None
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


def _started(msg: dict | None, cid: str) -> int:
    """The pid from a ready line, or the error it carries, raised."""
    if msg is None:
        raise SetupError(f"container {cid[:12]}: the shim exited before the container started")
    if "error" in msg:
        code = msg.get("exit_code", 125)
        raise (ExecError if code in (126, 127) else SetupError)(msg["error"], code)
    return msg["pid"]


def start_detached(store: Store, image: Image, opts: RunOptions, *, tty: bool = False,
                   console_size: tuple[int, int] | None = None, owner_pidfd: int = -1) -> tuple[str, int]:
    """Start a container that outlives the caller; returns (id, pid).

    With ``owner_pidfd`` (a pidfd of some process, e.g. ``os.pidfd_open(os.getpid())``)
    it does not outlive that process: its shim kills it when the process exits.

    The container is running (its command exec'd) when this returns; its
    output goes to ``Paths.log_file``, its end to ``Paths.exit_file``. Errors
    before the command runs raise as ``run`` raises them (``ExecError`` with
    126/127, ``SetupError``...), with the container already cleaned up when
    ``opts.remove``.
    """
    cid = new_id()
    p = store.paths(cid)
    hostname = opts.hostname or cid[:12]
    spec = build_spec(opts, image.config, image.layers, image.mounts, container_id=cid, rootfs=p.merged,
                      upper=p.upper, work=p.work, etc_files=_etc_files(p.dir, opts.network),
                      init_binary=shim_binary(store) if opts.init else None)
    if tty:
        spec["process"]["terminal"] = True
    labels = container_labels(image.config.get("Labels"), opts.labels)
    shim = shim_binary(store)
    name = store.reserve_name(opts.name, cid)
    lock_fd = -1
    handed_over = False
    try:
        lock_fd = prepare(store, p, hostname, opts)
        state = initial_record(cid, name, image, opts, spec, p, hostname, labels)
        state["HostConfig"]["LogConfig"] = {"Type": "k8s-file", "Path": p.log_file}
        state["LogPath"] = p.log_file
        if not opts.remove:
            store.write_state(p, state)
        config = {
            "spec": spec,
            "log_path": p.log_file,
            "exit_path": p.exit_file,
            "lock_dir": p.dir,
            "lock_fd": lock_fd,
            "tty": tty,
            "console_size": list(console_size) if console_size else None,
            "runtime_record": {"path": p.runtime_file, "record": state},
            "remove": {"dir": p.dir, "trash": os.path.join(store.containers, TRASH_PREFIX + cid),
                       "name_link": os.path.join(store.names, name), "name_target": cid,
                       "files": [p.runtime_file]} if opts.remove else None,
        }
        msg = _hand_over(shim, os.path.join(p.dir, SHIM_CONFIG), config, lock_fd, owner_pidfd)
        handed_over = msg is not None
        return cid, _started(msg, cid)
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
        if not handed_over:
            # the shim never took the container: it is ours to remove
            store.release_name(name, cid)
            store.remove_dirs(p)


def restart_detached(store: Store, cid: str) -> int:
    """Start a stopped container again under a new shim (``docker start``):
    the same root filesystem (its upper layer kept), command and settings.
    Returns the new pid."""
    from pinnace.errors import Conflict

    p = store.paths(cid)
    st = store.state(cid) or {}
    if (st.get("State") or {}).get("Running"):
        return (st.get("State") or {}).get("Pid", 0)
    config_path = os.path.join(p.dir, SHIM_CONFIG)
    try:
        with open(config_path, "rb") as f:
            config = loads(f.read())
    except FileNotFoundError:
        raise Conflict(f"container {cid[:12]} was not made to be started again "
                       "(only containers run with -d or created kept can be)") from None
    lock_fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    import fcntl

    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise Conflict(f"container {cid[:12]} is being started or stopped by another process") from None
    try:
        for stale in (p.exit_file,):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        state = st
        state.pop("RestartCount", None)
        state["State"] = {"Status": "running", "Running": True, "Pid": 0, "ExitCode": 0, "OOMKilled": False,
                          "StartedAt": _now(), "FinishedAt": "", "Error": ""}
        store.write_state(p, state)
        config["runtime_record"] = {"path": p.runtime_file, "record": state}
        return _started(_hand_over(shim_binary(store), config_path, config, lock_fd), cid)
    finally:
        os.close(lock_fd)


def _now() -> str:
    from pinnace.containers import now

    return now()
