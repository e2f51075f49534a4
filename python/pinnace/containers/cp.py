"""``docker cp``: files in and out of a container, with every path looked up
inside the container's root: a running container's through
``/proc/PID/root``; a stopped one's root filesystem (its image's layers and
its own upper layer) mounted for the copy alone by a child process in a
mount namespace of its own, which hands back a descriptor of it and exits:
the mount is then reachable only through that descriptor, so nothing stays
mounted however the copy ends.
Bind mounts (volumes, and the host image's /usr and /lib*) are not part of a
stopped container's view.

A path in a container may cross symlinks its processes made, pointing
anywhere; the kernel would follow an absolute one to the *host's* files.
So the lookup here is done component by component from a descriptor of the
container's root: a symlink is read and resolved again from that root (or
the directory it is in), ``..`` stops at the root, and every open refuses to
follow a link (O_NOFOLLOW), so a link swapped in meanwhile fails the copy
instead of redirecting it.
"""

from __future__ import annotations

import contextlib
import os
import stat

from pinnace.errors import Conflict, UsageError

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40


class _Walk:
    """Directory descriptors from the root down to where a lookup is."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.stack = [os.dup(root_fd)]

    def top(self) -> int:
        return self.stack[-1]

    def up(self) -> None:
        if len(self.stack) > 1:
            os.close(self.stack.pop())

    def to_root(self) -> None:
        while len(self.stack) > 1:
            os.close(self.stack.pop())

    def down(self, name: str) -> None:
        self.stack.append(os.open(name, _DIR, dir_fd=self.top()))

    def close(self) -> None:
        for fd in self.stack:
            os.close(fd)
        self.stack = []


def resolve(root_fd: int, path: str, follow_last: bool = False) -> tuple[int, str]:
    """(descriptor of the parent directory, last name) of ``path`` inside the
    root; the caller owns the descriptor. The last name is "" for the root."""
    parts = [p for p in path.split("/") if p]
    walk = _Walk(root_fd)
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                walk.up()
                continue
            try:
                st = os.lstat(name, dir_fd=walk.top())
            except FileNotFoundError:
                if parts:
                    raise FileNotFoundError(2, "no such file or directory", path) from None
                return _keep(walk), name
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(40, f"too many levels of symbolic links in {path}")
                target = os.readlink(name, dir_fd=walk.top())
                if target.startswith("/"):
                    walk.to_root()
                parts = [p for p in target.split("/") if p] + parts
                continue
            if not parts:
                return _keep(walk), name
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(20, f"not a directory: {name} in {path}")
            walk.down(name)
        return _keep(walk), ""
    finally:
        walk.close()


def _keep(walk: _Walk) -> int:
    return os.dup(walk.top())


def container_root(store, ref: str) -> tuple[int, str]:
    """A descriptor of a running container's root, and its id."""
    cid = store.resolve(ref)
    st = store.state(cid) or {}
    pid = (st.get("State") or {}).get("Pid") or 0
    if not (st.get("State") or {}).get("Running") or pid <= 0:
        raise Conflict(f"container {ref} is not running")
    # the one link followed on purpose: /proc's magic link to its root
    return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), cid


def _stopped_root(store, ref: str) -> tuple[str, int, dict] | None:
    """For a container that is not running: (its id, its held lock, its
    overlay's parts); None when it runs."""
    cid = store.resolve(ref)
    st = store.state(cid) or {}
    if (st.get("State") or {}).get("Running"):
        return None
    p = store.paths(cid)
    data = (st.get("GraphDriver") or {}).get("Data") or {}
    if not data.get("LowerDir"):
        raise Conflict(f"container {ref} has no root filesystem on record to copy from or to")
    # held for the copy: `start` cannot mount the same upper layer meanwhile
    lock = store.try_lock(p)
    return cid, lock, {"lower": data["LowerDir"], "upper": p.upper, "work": p.work, "merged": p.merged}


def _mount_root(parts: dict) -> int:
    """A descriptor of the stopped container's overlay, mounted by a child
    process in a private mount namespace and passed back over a socket: the
    namespace dies with the child, so the mount is reachable only through
    the descriptor and goes when it is closed (or this process dies). Its
    errors are re-raised here."""
    import ctypes
    import json
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            ours.close()
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                raise OSError(ctypes.get_errno(), "unshare the mount namespace")
            # MS_REC | MS_PRIVATE: nothing of what follows reaches the host's
            if libc.mount(None, b"/", None, 0x4000 | 0x40000, None) != 0:
                raise OSError(ctypes.get_errno(), "make / private")
            opts = f"lowerdir={parts['lower']},upperdir={parts['upper']},workdir={parts['work']}"
            if libc.mount(b"overlay", parts["merged"].encode(), b"overlay", 0, opts.encode()) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"mount the container's root filesystem: {os.strerror(e)}")
            socket.send_fds(theirs, [b"{}"], [os.open(parts["merged"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)])
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            code = 1
            theirs.sendall(json.dumps({"type": type(e).__name__, "errno": getattr(e, "errno", None),
                                       "message": getattr(e, "strerror", None) or str(e)}).encode())
        finally:
            os._exit(code)
    theirs.close()
    try:
        msg, fds, _, _ = socket.recv_fds(ours, 65536, 1)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if fds:
        return fds[0]
    err = json.loads(msg) if msg else {"type": "OSError", "message": "the mount process died"}
    raise OSError(err.get("errno") or 0, err["message"])


@contextlib.contextmanager
def opened_root(store, ref: str):
    """A descriptor of the root of the container ``ref``, running or not,
    for as long as the ``with`` lasts: a running one's through /proc, a
    stopped one's overlay mounted for the while (under its lock, so
    ``start`` cannot mount the same upper layer meanwhile)."""
    stopped = _stopped_root(store, ref)
    if stopped is None:
        root, _ = container_root(store, ref)
        lock = -1
    else:
        _, lock, parts = stopped
        try:
            root = _mount_root(parts)
        except BaseException:
            os.close(lock)
            raise
    try:
        yield root
    finally:
        os.close(root)
        if lock >= 0:
            os.close(lock)


def _copy_file(src_fd: int, dst_fd: int) -> None:
    while os.sendfile(dst_fd, src_fd, None, 1 << 20):
        pass


def _times(st: os.stat_result) -> tuple[int, int]:
    return st.st_atime_ns, st.st_mtime_ns


def _copy_tree(src_dir: int, name: str, dst_dir: int, dst_name: str) -> None:
    """Copy ``name`` (in ``src_dir``) to ``dst_name`` (in ``dst_dir``), a
    directory recursively; symlinks as symlinks; nothing ever followed."""
    st = os.lstat(name, dir_fd=src_dir)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=src_dir)
        try:
            os.unlink(dst_name, dir_fd=dst_dir)
        except FileNotFoundError:
            pass
        os.symlink(target, dst_name, dir_fd=dst_dir)
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(dst_name, dir_fd=dst_dir).st_mode):
                raise
        src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        dst = os.open(dst_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_dir)
        try:
            for entry in os.scandir(src):
                _copy_tree(src, entry.name, dst, entry.name)
            os.chmod(dst, mode)
            os.utime(dst, ns=_times(st))
        finally:
            os.close(src)
            os.close(dst)
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot copy {name}: only files, directories and symlinks are copied")
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dst = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dst_dir)
        try:
            _copy_file(src, dst)
            os.chmod(dst, mode)
            os.utime(dst, ns=_times(st))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _target(dst_parent: int, dst_name: str, src_name: str) -> tuple[int, str]:
    """docker's rule: copying onto an existing directory copies into it."""
    if dst_name:
        # the destination was resolved with its last link followed (inside
        # the root): what is there now is not a link we may follow
        try:
            st = os.lstat(dst_name, dir_fd=dst_parent)
        except FileNotFoundError:
            return os.dup(dst_parent), dst_name
        if stat.S_ISDIR(st.st_mode):
            return os.open(dst_name, _DIR, dir_fd=dst_parent), src_name
        return os.dup(dst_parent), dst_name
    return os.dup(dst_parent), src_name


def copy(store, src: str, dst: str) -> None:
    """``pinnace cp CONTAINER:SRC HOSTDEST`` or ``pinnace cp HOSTSRC CONTAINER:DEST``."""
    def split(arg: str) -> tuple[str | None, str]:
        if ":" in arg and not arg.startswith(("/", ".")):
            ref, _, path = arg.partition(":")
            return ref, path or "/"
        return None, arg

    (sref, spath), (dref, dpath) = split(src), split(dst)
    if (sref is None) == (dref is None):
        raise UsageError("copying between containers or between host paths is not supported: "
                         "one side must be CONTAINER:PATH")
    if sref is not None:
        copy_out(store, sref, spath, dpath)
    else:
        copy_in(store, dref, spath, dpath)


def copy_out(store, ref: str, path: str, host_path: str) -> None:
    """``path`` in the container ``ref`` (running or not) to ``host_path``, docker cp's rules."""
    _copy_with(store, ref, ref, path, host_path)


def copy_in(store, ref: str, host_path: str, path: str) -> None:
    """``host_path`` to ``path`` in the container ``ref`` (running or not), docker cp's rules."""
    _copy_with(store, ref, None, host_path, path)


def _copy_with(store, ref: str, sref: str | None, spath: str, dpath: str) -> None:
    with opened_root(store, ref) as root:
        _copy(root, sref, spath, dpath)


def _copy(root: int, sref: str | None, spath: str, dpath: str) -> None:
    """The copy, given a descriptor of the container's root."""
    host_root = os.open("/", _DIR)
    try:
        if sref is not None:
            s_parent, s_name = resolve(root, spath)
            d_parent, d_name = resolve(host_root, os.path.abspath(dpath), follow_last=True)
        else:
            s_parent, s_name = resolve(host_root, os.path.abspath(spath))
            d_parent, d_name = resolve(root, dpath, follow_last=True)
        try:
            if not s_name:
                raise UsageError("copying a whole root filesystem is not supported")
            try:
                os.lstat(s_name, dir_fd=s_parent)
            except FileNotFoundError:
                raise UsageError(f"no such file or directory: {spath}") from None
            t_dir, t_name = _target(d_parent, d_name, s_name)
            try:
                _copy_tree(s_parent, s_name, t_dir, t_name)
            finally:
                os.close(t_dir)
        finally:
            os.close(s_parent)
            os.close(d_parent)
    finally:
        os.close(host_root)


def read_file(store, ref: str, path: str) -> bytes:
    """The content of the regular file ``path`` in the container ``ref``
    (running or not; a last symlink followed, inside the container's root)."""
    with opened_root(store, ref) as root:
        parent, name = resolve(root, path, follow_last=True)
        try:
            if not name:
                raise IsADirectoryError(21, "is a directory", path)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        # read before the root goes: a stopped one's mount must not outlive its lock
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"not a regular file: {path}")
            return f.read()


def write_file(store, ref: str, path: str, data: bytes, mode: int = 0o644) -> None:
    """Make ``path`` in the container ``ref`` (running or not) a regular file
    holding ``data`` (its directory must exist; a file there is replaced, a
    symlink there is not followed)."""
    with opened_root(store, ref) as root:
        parent, name = resolve(root, path)
        try:
            if not name:
                raise IsADirectoryError(21, "is a directory", path)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                         dir_fd=parent)
        finally:
            os.close(parent)
        with open(fd, "wb") as f:
            f.write(data)
            os.fchmod(fd, mode)


def stat_path(store, ref: str, path: str) -> os.stat_result:
    """``lstat`` of ``path`` in the container ``ref`` (running or not), a
    last symlink followed inside the container's root."""
    with opened_root(store, ref) as root:
        parent, name = resolve(root, path, follow_last=True)
        try:
            return os.lstat(name, dir_fd=parent) if name else os.fstat(parent)
        finally:
            os.close(parent)
