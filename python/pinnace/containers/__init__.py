"""Container records and their directories, safe under concurrent CLIs.

Layout (``root`` is persistent, ``runroot`` is runtime state)::

    root/containers/ID/state.json     docker-shaped record, replaced atomically
    root/containers/ID/{upper,work,merged}   the overlay's private parts
    root/containers/ID/{hostname,hosts}      files bound into the container
    root/names/NAME -> ID             a symlink: creating it reserves the name

The process that runs a container holds an flock on its directory (a
detached container's ``pinnace-shim``, which also writes ``ctr.log`` and,
when the container ends, ``exit.json``). A
container whose state says running but whose lock nobody holds lost its
owner (killed, or the host rebooted and runroot is gone). Its process died
with the owner (the core sets PDEATHSIG), so it is reported as exited with
137, and ``system prune`` or ``rm`` removes what it left.
"""

from __future__ import annotations

import os
import time

from pinnace._files import write_atomic

from pinnace._jsonenc import dumps
from pinnace.errors import Conflict, ContainerNotFound, PinnaceError, UsageError

DEFAULT_ROOT = "/var/lib/pinnace"
DEFAULT_RUNROOT = "/run/pinnace"


def default_root() -> str:
    return os.environ.get("PINNACE_ROOT") or DEFAULT_ROOT


def default_runroot() -> str:
    return os.environ.get("PINNACE_RUNROOT") or DEFAULT_RUNROOT


def _rmtree(path: str) -> None:
    """shutil.rmtree(path, ignore_errors=True), done in Rust without the GIL
    (and without importing shutil, which pulls in ``re``: ~10 ms of a CLI run)."""
    from pinnace import _core

    _core.remove_tree(path)


_spread: set[str] = set()


def _spread_subdirs(path: str) -> None:
    """Each container's directory in a block group of its own (ext2/3/4; see
    the core's ``spread_subdirs``): on ext4 without a journal, a crowded
    group made every start slower than the one before. Once per process."""
    if path in _spread:
        return
    from pinnace import _core

    try:
        _core.spread_subdirs(path)
    except OSError:
        return  # missing (the caller makes it and asks again), or not ours to flag
    _spread.add(path)


TRASH_PREFIX = ".trash-"
#: in a container's directory: a reset asked for (``control.reset``), answered by its shim
RESET_REQUEST = "reset.request"
RESET_DONE = "reset.done"
#: every container's cgroup sits below this one
CGROUP_PARENT = "pinnace"


def cgroup_path(cid: str) -> str:
    return f"{CGROUP_PARENT}/{cid}"


_trash_queue = None


def _remove_in_background(path: str) -> None:
    in_background(_rmtree, path)


def in_background(fn, *args) -> None:
    """Run ``fn(*args)`` on the cleanup worker (drained at interpreter exit)."""
    global _trash_queue
    if _trash_queue is None:
        import atexit
        import queue
        import threading

        q = queue.Queue()

        def worker() -> None:
            while True:
                fn, args = q.get()
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - prune sweeps what failed here
                    pass
                finally:
                    q.task_done()

        threading.Thread(target=worker, name="pinnace-cleanup", daemon=True).start()
        atexit.register(q.join)
        _trash_queue = q
    _trash_queue.put((fn, args))


def drain_background_removals() -> None:
    """Wait until everything handed to the background worker is done."""
    if _trash_queue is not None:
        _trash_queue.join()


def _pick(seq: tuple[str, ...]) -> str:
    return seq[os.urandom(1)[0] % len(seq)]

_ADJ = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "swift", "tender", "upbeat", "vivid", "witty", "zen")
_NOUN = ("albatross", "barque", "brig", "clipper", "cutter", "dinghy", "galleon", "ketch", "lugger",
         "pinnace", "schooner", "skiff", "sloop", "tender", "yawl", "junk", "dhow", "coracle", "frigate", "punt")


def now() -> str:
    """An RFC 3339 timestamp with nanoseconds, as docker writes them."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalnum() and all(c.isalnum() or c in "_.-" for c in name)


class Paths:
    __slots__ = ("id", "dir", "runtime_file")

    def __init__(self, cid: str, dir: str, runtime_file: str):
        self.id, self.dir, self.runtime_file = cid, dir, runtime_file

    @property
    def upper(self) -> str:
        return os.path.join(self.dir, "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.dir, "work")

    @property
    def merged(self) -> str:
        return os.path.join(self.dir, "merged")

    @property
    def state_file(self) -> str:
        return os.path.join(self.dir, "state.json")

    @property
    def log_file(self) -> str:
        """A detached container's output (k8s-file format), written by its shim."""
        return os.path.join(self.dir, "ctr.log")

    @property
    def exit_file(self) -> str:
        """How a detached container ended: {"ExitCode", "Signal", "OOMKilled",
        "FinishedAt"[, "Error"]}, written by its shim before it lets go."""
        return os.path.join(self.dir, "exit.json")


class Store:
    def __init__(self, root: str, runroot: str):
        self.root = os.path.abspath(root)
        self.runroot = os.path.abspath(runroot)
        self.containers = os.path.join(self.root, "containers")
        self.names = os.path.join(self.root, "names")
        self.run_containers = os.path.join(self.runroot, "containers")

    def networks(self):
        from pinnace.network.store import Networks

        return Networks(self.root, self.runroot)

    def paths(self, cid: str) -> Paths:
        return Paths(cid, os.path.join(self.containers, cid), os.path.join(self.run_containers, cid + ".json"))

    # -- names ---------------------------------------------------------------

    def reserve_name(self, name: str | None, cid: str) -> str:
        """Claim ``name`` (or a generated one) for ``cid``; atomic across processes."""
        os.makedirs(self.names, exist_ok=True)
        if name is not None:
            if not _valid_name(name):
                raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            try:
                os.symlink(cid, os.path.join(self.names, name))
            except FileExistsError:
                other = self._name_target(name)
                raise Conflict(f"the container name {name!r} is already in use by container {other[:12]}") from None
            return name
        while True:
            candidate = f"{_pick(_ADJ)}_{_pick(_NOUN)}_{os.urandom(2).hex()}"
            try:
                os.symlink(cid, os.path.join(self.names, candidate))
                return candidate
            except FileExistsError:
                continue

    def _name_target(self, name: str) -> str:
        try:
            return os.readlink(os.path.join(self.names, name))
        except OSError:
            return ""

    def _name_of(self, cid: str) -> str:
        """The name reserved for ``cid`` (a scan: only for records that are lost)."""
        try:
            for n in os.listdir(self.names):
                if self._name_target(n) == cid:
                    return n
        except FileNotFoundError:
            pass
        return ""

    def release_name(self, name: str, cid: str) -> None:
        if name and self._name_target(name) == cid:
            try:
                os.unlink(os.path.join(self.names, name))
            except FileNotFoundError:
                pass

    # -- lifecycle -----------------------------------------------------------

    def create_dirs(self, p: Paths) -> int:
        """Make the container's directory, locked from the first moment (so a
        concurrent prune never takes it for an orphan); returns the lock fd."""
        _spread_subdirs(self.containers)
        try:
            os.mkdir(p.dir, 0o700)
        except FileNotFoundError:
            os.makedirs(self.containers, exist_ok=True)
            _spread_subdirs(self.containers)
            os.mkdir(p.dir, 0o700)
        fd = self.lock(p)
        for d in (p.upper, p.work, p.merged):
            os.mkdir(d, 0o755)
        return fd

    def lock(self, p: Paths) -> int:
        """Hold the container's lock for as long as this process runs it.

        The lock is an flock on the container's directory: the kernel drops it
        when the holder dies, however it dies, and no reboot can leave it held.
        """
        from pinnace import _core  # its flock: importing fcntl costs every start ~0.15 ms

        fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _core.flock(fd)
        return fd

    def try_lock(self, p: Paths) -> int:
        """The container's lock for a stopped container (``start``, ``cp``),
        or Conflict when another process holds it."""
        from pinnace import _core

        fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if not _core.flock(fd, block=False):
            os.close(fd)
            raise Conflict(f"container {p.id[:12]} is being started or stopped by another process")
        return fd

    def owner_alive(self, p: Paths) -> bool:
        from pinnace import _core

        try:
            fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return not _core.flock(fd, block=False)
        finally:
            os.close(fd)

    def write_state(self, p: Paths, state: dict) -> None:
        """The persistent record (kept containers)."""
        write_atomic(p.state_file, dumps(state))

    def write_runtime(self, p: Paths, state: dict) -> None:
        """The record while running (pid and all), under runroot."""
        try:
            write_atomic(p.runtime_file, dumps(state))
        except FileNotFoundError:
            os.makedirs(self.run_containers, exist_ok=True)
            write_atomic(p.runtime_file, dumps(state))

    def clear_runtime(self, p: Paths) -> None:
        try:
            os.unlink(p.runtime_file)
        except FileNotFoundError:
            pass

    def remove_dirs(self, p: Paths, background: bool = False) -> None:
        """Remove a container's directory and records. With ``background`` the
        directory is renamed out of sight at once and deleted on a worker
        thread (drained at interpreter exit; ``prune`` sweeps what a killed
        process left), so an in-process caller does not wait for the disk."""
        if background:
            trash = os.path.join(self.containers, TRASH_PREFIX + p.id)
            try:
                os.rename(p.dir, trash)
            except OSError:
                _rmtree(p.dir)
            else:
                _remove_in_background(trash)
        else:
            _rmtree(p.dir)
        self.clear_runtime(p)

    # -- queries -------------------------------------------------------------

    def ids(self) -> list[str]:
        try:
            return [d for d in os.listdir(self.containers) if not d.startswith(".")]
        except FileNotFoundError:
            return []

    def state(self, cid: str) -> dict | None:
        """The record, with a dead owner's 'running' corrected to 'exited'."""
        import json

        p = self.paths(cid)
        st = None
        for path in (p.runtime_file, p.state_file):  # the runtime record is the newer one
            try:
                with open(path) as f:
                    st = json.load(f)
                break
            except (OSError, ValueError):
                continue
        if st is None:
            if not os.path.isdir(p.dir):
                return None  # gone (removed, or never was)
            # its name is still reserved: say it (ps, rm by name)
            name = "/" + self._name_of(cid)
            if self.owner_alive(p):
                # starting: its record is being written
                return {"Id": cid, "Name": name, "State": {"Status": "created", "Running": True, "Pid": 0,
                                                           "ExitCode": 0}, "Config": {}, "Created": ""}
            # A directory with no record: a run whose owner died before the
            # container started, or whose runtime record a reboot took away.
            return {"Id": cid, "Name": name, "State": {"Status": "exited", "Running": False, "ExitCode": 137,
                                                       "Error": "no record"}, "Config": {}, "Created": ""}
        s = st.get("State", {})
        if s.get("Status") in ("running", "created") and not self.owner_alive(p):
            try:
                with open(p.exit_file) as f:
                    ex = json.load(f)
            except (OSError, ValueError):
                ex = None
            if ex is not None:
                # a shim saw it end
                s.update(Status="exited", Running=False, Pid=0, ExitCode=ex.get("ExitCode", 0),
                         OOMKilled=ex.get("OOMKilled", False), FinishedAt=ex.get("FinishedAt", ""),
                         Error=ex.get("Error", ""))
                return st
            s.update(Status="exited", Running=False, Pid=0, ExitCode=137, Error="owner process died",
                     FinishedAt=s.get("FinishedAt") or "")
        return st

    def resolve(self, ref: str) -> str:
        """A name, a full id or a unique id prefix -> the full id."""
        if len(ref) == 64 and not ref.strip("0123456789abcdef") and os.path.isdir(os.path.join(self.containers, ref)):
            return ref  # a full id, as docker looks first (the API's objects hold them)
        target = self._name_target(ref)
        if target and os.path.isdir(os.path.join(self.containers, target)):
            return target
        matches = [i for i in self.ids() if i.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"multiple containers match {ref!r}; give more of the id")
        raise ContainerNotFound(f"no such container: {ref}")

    def remove(self, cid: str, force: bool = False) -> None:
        from pinnace import _core

        st = self.state(cid) or {}
        p = self.paths(cid)
        cgroup = st.get("CgroupPath") or cgroup_path(cid)
        if st.get("State", {}).get("Running"):
            if not force:
                raise Conflict(f"cannot remove container {cid[:12]}: container is running: stop it first or use -f")
            # everything in its cgroup, so a double-forked daemon dies too
            # (its main process below: all there is when it got no cgroup, or when its
            # owner saw it end and took the cgroup away meanwhile)
            try:
                _core.cgroup_kill(cgroup)
            except PinnaceError:
                pass
            pid = st["State"].get("Pid") or 0
            if pid > 0:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            # its owner needs a few ms to see the end and record it: look
            # often at first rather than oversleep every removal by 10 ms
            delay = 0.0005
            while self.owner_alive(p) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
        # the owner removes it; an owner that died could not
        _core.cgroup_destroy(cgroup)
        _release_network(self, cid, st.get("NetworkSettings"))
        self.release_name(st.get("Name", "").lstrip("/"), cid)
        self.remove_dirs(p)

    def prune(self) -> list[str]:
        """Remove every container that is not running, orphans included."""
        removed = []
        try:
            for d in os.listdir(self.containers):
                if d.startswith(TRASH_PREFIX):
                    _rmtree(os.path.join(self.containers, d))
        except FileNotFoundError:
            pass
        for cid in self.ids():
            st = self.state(cid)
            if st and not st.get("State", {}).get("Running"):
                self.remove(cid)
                removed.append(cid)
        # cgroups whose container is gone or no longer running
        from pinnace import _core

        for cid in _core.cgroup_children(CGROUP_PARENT):
            if os.path.isdir(os.path.join(self.containers, cid)):
                if not self.owner_alive(self.paths(cid)):
                    _core.cgroup_destroy(cgroup_path(cid))
            elif _foreign_cgroup_is_stale(cid):
                # Not ours: another store's (another --root) or a container
                # whose directory is gone. Never kill what may be someone
                # else's running container: remove it only when it is empty
                # and old enough not to be one that is just starting.
                _core.cgroup_destroy(cgroup_path(cid))
        _core.cgroup_remove_parent_if_empty(CGROUP_PARENT)
        from pinnace.network.bridge import sweep

        sweep(self.networks(), self)
        # runtime records whose container directory is gone
        try:
            for f in os.listdir(self.run_containers):
                if ".tmp-" in f:
                    # a record being written by a process killed mid-write
                    if not _pid_alive(f.rpartition(".tmp-")[2]):
                        try:
                            os.unlink(os.path.join(self.run_containers, f))
                        except FileNotFoundError:
                            pass
                    continue
                cid = f.removesuffix(".json")
                if not os.path.isdir(os.path.join(self.containers, cid)):
                    self.clear_runtime(self.paths(cid))
        except FileNotFoundError:
            pass
        return removed


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def _release_network(store: Store, cid: str, settings: dict | None) -> None:
    """Addresses and ports a container left (its owner died without giving them back)."""
    nets = store.networks()
    from pinnace.network.bridge import release

    release(nets, store, cid, settings if settings and settings.get("Networks") else None)


def _foreign_cgroup_is_stale(cid: str, min_age: float = 60.0) -> bool:
    from pinnace import _core

    if _core.cgroup_pids(cgroup_path(cid)):
        return False
    import glob

    ages = []
    for d in glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}/{cid}") + glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/{cid}"):
        try:
            ages.append(time.time() - os.stat(d).st_ctime)
        except OSError:
            pass
    return bool(ages) and min(ages) >= min_age


def new_id() -> str:
    return os.urandom(32).hex()


__all__ = ["Store", "Paths", "new_id", "now", "write_atomic", "default_root", "default_runroot"]
