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
from pinnace.containers import RESET_DONE, RESET_REQUEST, TRASH_PREFIX, Store, new_id
from pinnace.containers.runner import _etc_files, initial_record, join_netns, net_request_options, prepare, shim_binary
from pinnace.errors import ExecError, SetupError
from pinnace.images import Image
from pinnace.network import bridge as netbridge
from pinnace.network import setup as netsetup
from pinnace.network.store import Networks

SHIM_CONFIG = "shim.json"
_SPAWN_LOCK = _thread.allocate_lock()
#: the network options a container was made with, for ``start``
NET_OPTIONS = "netopts.json"


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
        line = _read_line(r)
        # the shim forked at once (its first process ended, the shim was
        # adopted): reaped after its answer, not waited for before it
        os.waitpid(pid, 0)
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


def _exit_command(p, netreq) -> list[str] | None:
    """The network's down script, which exists only for published ports."""
    script = os.path.join(p.dir, netsetup.DOWN_SCRIPT)
    if netreq.mode != "bridge" or not os.path.exists(script):
        return None
    return ["/bin/sh", script]


def _exit_unlink(p, netreq) -> str | None:
    return os.path.join(p.dir, netsetup.DOWN_FILES) if netreq.mode == "bridge" else None


def warn(message: str) -> None:
    import sys

    sys.stderr.write(f"WARNING: {message}\n")


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
    nets = Networks(store.root, store.runroot)
    netreq = netsetup.request(opts, image.config, nets)
    spec = build_spec(opts, image.config, image.layers, image.mounts, container_id=cid, rootfs=p.merged,
                      upper=p.upper, work=p.work, etc_files=_etc_files(p.dir, netreq.mode),
                      init_binary=shim_binary(store) if opts.init else None)
    if tty:
        spec["process"]["terminal"] = True
    labels = container_labels(image.config.get("Labels"), opts.labels)
    shim = shim_binary(store)
    name = store.reserve_name(opts.name, cid)
    lock_fd = -1
    handed_over = False
    net = None
    try:
        lock_fd = prepare(store, p, hostname, opts)
        write_atomic(os.path.join(p.dir, NET_OPTIONS), dumps(dict(net_request_options(opts),
                                                                   exposed=image.config.get("ExposedPorts"))))
        net = netsetup.up(netreq, nets, store, cid, name, hostname, p.dir, image.config.get("ExposedPorts"))
        if net.fd >= 0:
            join_netns(spec, f"/proc/{os.getpid()}/fd/{net.fd}")
        for w in netreq.warnings:
            warn(w)
        state = initial_record(cid, name, image, opts, spec, p, hostname, labels)
        state["NetworkSettings"] = net.settings
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
            "exit_command": _exit_command(p, netreq),
            "exit_unlink": _exit_unlink(p, netreq),
            # Container.reset: the shim starts it again on an empty upper layer
            "reset": {"upper": p.upper, "work": p.work, "request": os.path.join(p.dir, RESET_REQUEST),
                      "done": os.path.join(p.dir, RESET_DONE)},
        }
        msg = _hand_over(shim, os.path.join(p.dir, SHIM_CONFIG), config, lock_fd, owner_pidfd)
        handed_over = msg is not None
        return cid, _started(msg, cid)
    finally:
        if net is not None:
            net.close()
        if lock_fd >= 0:
            os.close(lock_fd)
        if not handed_over and net is not None and netreq.mode == "bridge":
            netbridge.release(nets, store, cid)
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
    lock_fd = store.try_lock(p)
    try:
        for stale in (p.exit_file,):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        fresh_dir(p.work)
        state = st
        state.pop("RestartCount", None)
        nets = Networks(store.root, store.runroot)
        # what an earlier run left (a shim that died could not give it back)
        netbridge.release(nets, store, cid)
        net = _network_again(store, nets, cid, state, config)
        try:
            state["State"] = {"Status": "running", "Running": True, "Pid": 0, "ExitCode": 0, "OOMKilled": False,
                              "StartedAt": _now(), "FinishedAt": "", "Error": ""}
            store.write_state(p, state)
            config["runtime_record"] = {"path": p.runtime_file, "record": state}
            msg = _hand_over(shim_binary(store), config_path, config, lock_fd)
            if msg is None and net is not None:
                netbridge.release(nets, store, cid)
            return _started(msg, cid)
        finally:
            if net is not None:
                net.close()
    finally:
        os.close(lock_fd)


def fresh_dir(path: str) -> None:
    """``path`` as an empty directory, its old content deleted: an overlay's
    upper layer for a reset, its work directory for every start (scratch,
    and a ``volatile`` overlay leaves a mark there that refuses the next mount)."""
    old = f"{path}.old-{time.monotonic_ns()}"
    try:
        os.rename(path, old)
    except FileNotFoundError:
        old = ""
    os.mkdir(path, 0o755)
    if old:
        _core.remove_tree(old)


def _network_again(store: Store, nets: Networks, cid: str, state: dict, config: dict):
    """A restarted container's network, made again from the options it was
    run with (a new namespace, an address leased anew, as docker does)."""
    p = store.paths(cid)
    try:
        with open(os.path.join(p.dir, NET_OPTIONS), "rb") as f:
            saved = loads(f.read())
    except FileNotFoundError:
        return None
    exposed = saved.pop("exposed", None)
    opts = RunOptions(**saved)
    netreq = netsetup.request(opts, {"ExposedPorts": exposed}, nets)
    name = state.get("Name", "").lstrip("/")
    hostname = (state.get("Config") or {}).get("Hostname") or cid[:12]
    net = netsetup.up(netreq, nets, store, cid, name, hostname, p.dir, exposed)
    spec = config["spec"]
    if net.fd >= 0:
        join_netns(spec, f"/proc/{os.getpid()}/fd/{net.fd}")
    config["exit_command"] = _exit_command(p, netreq)
    config["exit_unlink"] = _exit_unlink(p, netreq)
    state["NetworkSettings"] = net.settings
    return net


def _now() -> str:
    from pinnace.containers import now

    return now()
