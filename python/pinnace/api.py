"""The Python API: ``pinnace.run(image, command, **options)``.

In-process: no CLI subprocess, the Rust core clones the container straight
from this interpreter (releasing the GIL while it waits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pinnace.config import RunOptions, env_list
from pinnace.containers import default_root, default_runroot


@dataclass
class RunResult:
    """What a finished container left: like ``subprocess.CompletedProcess``."""

    id: str
    name: str
    exit_code: int
    stdout: bytes | None
    stderr: bytes | None
    #: the signal that killed the command, if one did (exit_code is then 128+N)
    signal: int | None = None
    timed_out: bool = False
    #: the kernel's OOM killer acted in the container's cgroup
    oom_killed: bool = False
    #: what the container used (cgroup counters read as it ended): memory_peak,
    #: cpu_usage_ns, cpu_throttled_periods, pids_current, io_read_bytes, ...
    stats: dict | None = None
    #: limits the host could not enforce (discarded, as docker does)
    warnings: list[str] | None = None

    @property
    def output(self) -> str:
        """stdout decoded as UTF-8 (replacing what does not decode)."""
        return (self.stdout or b"").decode("utf-8", "replace")


def run(
    image: str | None = None,
    command: str | Iterable[str] | None = None,
    *,
    rootfs: str | None = None,
    input: bytes | str | None = None,
    timeout: float | None = None,
    remove: bool = True,
    env: Iterable[str] | Mapping[str, str] | None = None,
    root: str | None = None,
    runroot: str | None = None,
    **options,
) -> RunResult:
    """Run ``command`` in a fresh container of ``image`` and wait for it.

    Options mirror ``pinnace run``'s flags (``name``, ``env``, ``env_file``,
    ``workdir``, ``user``, ``hostname``, ``network``, ``volumes``, ``tmpfs``,
    ``read_only``, ``cap_add``, ``cap_drop``, ``ulimits``, ``entrypoint``,
    ``memory``, ``memory_swap``, ``memory_reservation``, ``cpus``,
    ``cpu_shares``, ``cpuset_cpus``, ``pids_limit``, ``blkio_weight``,
    ``device_read_bps``, ``device_write_bps``; networks: ``network`` (a
    network's name, ``bridge`` by default, ``host`` or ``none``),
    ``publish`` (``["8080:80"]``), ``publish_all``, ``ip``, ``network_alias``,
    ``add_host``, ``dns``, ``dns_search``, ``dns_option``).
    Unlike the CLI, ``remove`` defaults to True: the result carries all the
    output, so the container is usually of no further use.

    >>> import pinnace
    >>> pinnace.run("host", ["sh", "-c", "echo hi"]).stdout
    b'hi\\n'

    Raises :class:`pinnace.errors.ExecError` (exit_code 126/127) when the
    command cannot run and :class:`pinnace.errors.PinnaceError` subclasses
    for everything else that fails before it runs.
    """
    from pinnace.containers.runner import run as run_container

    store, img, opts = _prepare(image, command, rootfs, env, remove, root, runroot, options)
    if isinstance(input, str):
        input = input.encode()
    out = run_container(store, img, opts, input=input, timeout=timeout,
                        stdin=-1 if input is not None else -2, background_removal=True)
    return RunResult(out.id, out.name, out.exit_code, out.stdout, out.stderr, out.signal, out.timed_out,
                     out.oom_killed, out.stats, out.warnings)


def _prepare(image, command, rootfs, env, remove: bool, root: str | None, runroot: str | None,
             options: dict) -> tuple:
    """(store, image, RunOptions) for a run, from ``pinnace.run``'s arguments."""
    from pinnace import images
    from pinnace.containers import Store
    from pinnace.errors import UsageError

    pull_policy = options.pop("pull", "missing")
    platform = options.pop("platform", None)
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    for key in ("volumes", "tmpfs", "cap_add", "cap_drop", "ulimits", "env_file", "device_read_bps",
                "device_write_bps", "group_add", "publish", "add_host", "dns", "dns_search", "dns_option",
                "network_alias"):
        if isinstance(options.get(key), str):
            options[key] = [options[key]]
    if isinstance(options.get("entrypoint"), str):
        options["entrypoint"] = [options["entrypoint"]]
    opts = RunOptions(command=list(command) if command else None, env=env_list(env), remove=remove, **options)
    store = Store(root or default_root(), runroot or default_runroot())
    if rootfs is not None:
        img = images.from_rootfs(rootfs)
    elif image is None:
        raise UsageError("give an image or rootfs")
    else:
        img = images.for_run(image, store.root, pull_policy, platform)
    return store, img, opts


def _safe_members(tar, dest: str):
    """The members of a tar stream that tarfile's "data" filter lets through:
    no absolute names, nothing that leads out of ``dest`` (names, hard and
    symbolic links), no devices; setuid/setgid bits dropped. Refusals raise
    ``tarfile.TarError``, as the filter's do."""
    import os
    from tarfile import TarError

    dest = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([dest, os.path.realpath(path)]) == dest

    for m in tar:
        if os.path.isabs(m.name) or not inside(os.path.join(dest, m.name)):
            raise TarError(f"put_archive: {m.name!r} would land outside the destination")
        if m.issym() and (os.path.isabs(m.linkname) or
                          not inside(os.path.join(dest, os.path.dirname(m.name), m.linkname))):
            raise TarError(f"put_archive: symlink {m.name!r} -> {m.linkname!r} leads outside the destination")
        if m.islnk() and (os.path.isabs(m.linkname) or not inside(os.path.join(dest, m.linkname))):
            raise TarError(f"put_archive: hard link {m.name!r} -> {m.linkname!r} leads outside the destination")
        if m.isdev():
            continue
        m.mode &= 0o1777
        yield m


def pull(reference: str, *, platform: str | None = None, tls_verify: bool | None = None,
         root: str | None = None) -> "ImageInfo":
    """Pull an image from its registry into the store (docker's reference
    rules: ``busybox`` is ``docker.io/library/busybox:latest``).

    ``platform`` picks from a multi-platform image (``linux/arm64``; default
    this machine's); ``tls_verify=False`` allows a registry without a valid
    certificate (and plain HTTP). Returns the image's :class:`ImageInfo`.
    """
    from pinnace.images import ImageInfo
    from pinnace.images.pull import pull as do_pull
    from pinnace.images.store import ImageStore

    root = root or default_root()
    rec = do_pull(reference, root, platform=platform, tls_verify=tls_verify)
    store = ImageStore(root)
    tags, digests = store.names_of(rec["Id"])
    return ImageInfo(rec, tags, digests)


def images(*, root: str | None = None) -> list["ImageInfo"]:
    """The images in the store, newest first, with sizes (``size``, and
    ``shared_size``: the part of it other images share)."""
    from pinnace.images import list_images

    return list_images(root or default_root())


def stats(container: str, *, interval: float = 0.5, root: str | None = None, runroot: str | None = None) -> dict:
    """Resource usage of a running container (by name or id), as ``pinnace
    stats`` shows it: ``cpu_percent`` (over ``interval`` seconds; 100 = one
    CPU), ``memory_usage``, ``memory_limit``, ``memory_percent``, ``pids``,
    ``block_read``, ``block_write``, and the cgroup's ``raw`` counters
    (including CPU throttling)."""
    from pinnace.containers import Store
    from pinnace.containers.stats import stats as read
    from pinnace.errors import ContainerNotFound

    store = Store(root or default_root(), runroot or default_runroot())
    cid = store.resolve(container)
    rows = read(store, [cid], interval)
    if not rows:
        raise ContainerNotFound(f"container {container} is not running")
    return rows[0]


class Container:
    """A container in the store, by id: the lifecycle verbs of the CLI, and
    docker-py's ``Container`` methods. ``with`` removes it (force) on the way
    out, however that is.

    Attributes are read when asked (``status``, ``attrs``), never cached, so
    ``reload()`` exists only for code written for docker-py.

    >>> import pinnace
    >>> with pinnace.from_env().containers.run("host", "sleep infinity", detach=True) as c:
    ...     c.exec_run("echo hi").output
    b'hi\\n'
    """

    def __init__(self, id: str, *, root: str | None = None, runroot: str | None = None):
        from pinnace.containers import Store

        self._store = Store(root or default_root(), runroot or default_runroot())
        self.id = self._store.resolve(id)
        self._name: str | None = None

    @classmethod
    def _known(cls, store, cid: str, name: str | None = None) -> "Container":
        """One the caller has just made or listed: no lookup."""
        c = cls.__new__(cls)
        c._store, c.id, c._name = store, cid, name
        return c

    def _state(self) -> dict:
        from pinnace.errors import ContainerNotFound

        st = self._store.state(self.id)
        if st is None:
            raise ContainerNotFound(f"no such container: {self.id[:12]}")
        return st

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def attrs(self) -> dict:
        """``docker inspect``'s view of it, read now."""
        from pinnace.cli.lifecycle import inspect_container

        return inspect_container(self._state())

    def reload(self) -> None:
        """Check it still exists (raises ``ContainerNotFound``); attributes are always current."""
        self._state()

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = self._state().get("Name", "").lstrip("/")
        return self._name

    @property
    def status(self) -> str:
        """created, running or exited."""
        return self._state()["State"]["Status"]

    @property
    def labels(self) -> dict[str, str]:
        return (self._state().get("Config") or {}).get("Labels") or {}

    @property
    def ports(self) -> dict:
        """Published ports as docker-py shows them (``{"80/tcp": [{"HostIp": ..., "HostPort": ...}]}``);
        {} when none."""
        return (self.attrs.get("NetworkSettings") or {}).get("Ports") or {}

    def start(self) -> None:
        """Start a stopped detached container again, with the same root filesystem."""
        from pinnace.containers.detached import restart_detached

        restart_detached(self._store, self.id)

    def restart(self, timeout: float = 10) -> None:
        self.stop(timeout)
        self.start()

    def reset(self, timeout: float = 30) -> None:
        """Back to the image's state: every process killed, the root
        filesystem as the image has it (volumes kept), the command running
        again; the same id, name, network addresses and published ports.
        A running sandbox is started again by its own supervisor (about
        what a start costs, spent outside this process)::

            c.write_file("/etc/motd", "changed")
            c.reset()
            assert c.exec_run("cat /etc/motd").exit_code != 0  # not in the image
        """
        from pinnace.containers import control

        control.reset(self._store, self.id, timeout)

    def kill(self, signal: str | int | None = "KILL") -> None:
        from pinnace.containers import control

        control.kill(self._store, self.id, signal or "KILL")

    def stop(self, timeout: float = 10) -> None:
        """The stop signal, then SIGKILL for everything in it after ``timeout`` s."""
        from pinnace.containers import control

        control.stop(self._store, self.id, timeout)

    def wait(self, timeout: float | None = None, condition: str | None = None) -> dict:
        """Until it stops: ``{"StatusCode": exit code, "Error": None}`` as
        docker-py returns it. Raises TimeoutError after ``timeout`` seconds."""
        from pinnace.containers import control

        if not control.wait_owner(self._store, self.id, timeout):
            raise TimeoutError(f"container {self.id[:12]} still running after {timeout} s")
        return {"StatusCode": control.wait(self._store, self.id), "Error": None}

    def exec_run(self, cmd: str | Iterable[str], stdout: bool = True, stderr: bool = True, stdin: bool = False,
                 tty: bool = False, privileged: bool = False, user: str = "", detach: bool = False,
                 stream: bool = False, socket: bool = False,
                 environment: Iterable[str] | Mapping[str, str] | None = None, workdir: str | None = None,
                 demux: bool = False, timeout: float | None = None, *,
                 env: Iterable[str] | Mapping[str, str] | None = None, input: bytes | None = None) -> "ExecResult":
        """Run ``cmd`` inside it (all its namespaces, its cgroup), docker-py's way.

        Returns ``ExecResult(exit_code, output)``: ``output`` is stdout and
        stderr together (bytes), with ``demux`` a ``(stdout, stderr)`` pair;
        with ``stream`` an iterator of chunks as they come (pairs with
        ``demux``) and ``exit_code`` None; with ``detach`` both None. A
        string ``cmd`` runs under ``/bin/sh -c``. ``input`` (bytes) is fed to
        its stdin. ``timeout`` (seconds) kills it and raises
        :class:`pinnace.errors.ExecTimeout`, which carries the output so far.
        ``tty`` runs it on a terminal (one output stream, CR LF line ends),
        with ``stream`` and ``detach`` too (a detached one's terminal output
        is read and dropped, as docker's daemon does, so it never blocks).

        ``socket`` returns ``ExecResult(None, sock)``: ``sock`` is what
        docker-py gives over a Unix socket, a :class:`socket.SocketIO`
        (``read(n)``, ``write(data)``, ``close()``; ``sock._sock`` is the
        socket itself). What is written to it is the command's stdin when
        ``stdin=True`` (``sock._sock.shutdown(socket.SHUT_WR)`` ends it), and
        is dropped otherwise, as docker drops it. Without ``tty`` its output
        comes in docker's multiplexed frames (an 8-byte header: the stream,
        1 stdout or 2 stderr, three zero bytes, the payload's length as a
        big-endian 32-bit number; then the payload), so docker-py's
        ``docker.utils.socket.frames_iter``/``demux_adaptor`` read it; with
        ``tty`` it is the terminal's bytes as they are. The socket reaches
        end-of-file when the command's output is closed (it has ended), or
        when ``timeout`` runs out (the command is then killed). The exit code
        is not known in this mode (docker-py's needs an ``exec_inspect``).

        >>> c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        ExecResult(exit_code=0, output=(b'out\\n', b'err\\n'))
        """
        from pinnace import _core
        from pinnace.containers.exec import exec_in
        from pinnace.errors import UsageError

        if isinstance(cmd, str):
            cmd = ["/bin/sh", "-c", cmd]
        cmd = list(cmd)
        if input is not None and (socket or tty or detach):
            raise UsageError("exec_run: input= does not go with socket, tty or detach "
                             "(with socket=True, stdin=True write it to the socket)")
        kw = dict(env=env_list(environment if environment is not None else env), workdir=workdir,
                  user=user or None, privileged=privileged)
        # docker-py's order: detach, then socket, then stream
        if tty and detach:
            return ExecResult(None, None, self._exec_tty_detached(cmd, kw))
        if socket and not detach:
            return ExecResult(None, self._exec_socket(cmd, kw, stdin, stdout, stderr, tty, timeout))
        if tty and stream:
            return ExecResult(None, self._exec_tty_stream(cmd, kw, timeout))
        if tty:
            return self._exec_tty(cmd, kw, timeout)
        if stream and not detach:
            return ExecResult(None, self._exec_stream(cmd, kw, stdout, stderr, demux, timeout))
        out_fd = _core.DEVNULL if detach or not stdout else _core.PIPE
        err_fd = _core.DEVNULL if detach or not stderr else _core.PIPE
        r = exec_in(self._store, self.id, cmd, input=input, timeout=timeout, detach=detach,
                    stdin=_core.PIPE if input is not None else _core.DEVNULL, stdout=out_fd, stderr=err_fd, **kw)
        if detach:
            return ExecResult(None, None, r.pid)
        out = (r.stdout, r.stderr) if demux else (r.stdout or b"") + (r.stderr or b"")
        if r.timed_out:
            raise self._exec_timeout(cmd, timeout, out)
        return ExecResult(r.exit_code, out, r.pid)

    def _exec_timeout(self, cmd: list[str], timeout: float | None, output) -> Exception:
        from pinnace.errors import ExecTimeout

        return ExecTimeout(f"exec {cmd!r} in container {self.id[:12]} still running after {timeout} s: killed",
                           output)

    def _exec_tty(self, cmd: list[str], kw: dict, timeout: float | None) -> "ExecResult":
        """``cmd`` on a new terminal (its output as a terminal writes it, CR LF
        line ends and all, as docker's)."""
        import os
        import threading

        from pinnace.containers.exec import exec_in

        master, slave = os.openpty()
        chunks: list[bytes] = []

        def pump() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has closed it
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=pump, name="pinnace-exec-tty", daemon=True)
        reader.start()
        try:
            r = exec_in(self._store, self.id, cmd, stdin=slave, stdout=slave, stderr=slave, tty=True,
                        timeout=timeout, **kw)
        finally:
            os.close(slave)
            # a process it left behind may hold the terminal: do not wait on it for long
            reader.join(timeout=1)
            os.close(master)
        out = b"".join(chunks)
        if r.timed_out:
            raise self._exec_timeout(cmd, timeout, out)
        return ExecResult(r.exit_code, out, r.pid)

    def _exec_started(self, cmd: list[str], kw: dict, stdio: tuple[int, int, int], ours: list[int],
                      theirs: list[int], tty: bool = False) -> tuple[int, int]:
        """Start ``cmd`` detached on ``stdio``; close ``theirs`` (the ends it
        holds now) and, should it fail to start, ``ours``. Its (pid, pidfd);
        the pidfd is -1 when it has already gone."""
        import os

        from pinnace.containers.exec import exec_in

        try:
            r = exec_in(self._store, self.id, cmd, detach=True, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                        tty=tty, **kw)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in set(theirs):
                os.close(fd)
        try:
            return r.pid, os.pidfd_open(r.pid)
        except OSError:
            return r.pid, -1

    def _exec_stream(self, cmd: list[str], kw: dict, stdout: bool, stderr: bool, demux: bool,
                     timeout: float | None):
        """Start ``cmd`` with its output on pipes of ours; the generator reading them."""
        import os

        from pinnace import _core

        # demux: a pipe per stream; else one both write to, so their order is kept
        pipes = [os.pipe() if on else None for on in ((stdout, stderr) if demux else (stdout or stderr,))]
        ends = [p[1] if p else _core.DEVNULL for p in pipes]
        fds = ends if demux else [ends[0] if stdout else _core.DEVNULL, ends[0] if stderr else _core.DEVNULL]
        _, pidfd = self._exec_started(cmd, kw, (_core.DEVNULL, fds[0], fds[1]), [p[0] for p in pipes if p],
                                      [p[1] for p in pipes if p])
        readers = {p[0]: i for i, p in enumerate(pipes) if p}
        return _stream_output(readers, pidfd, demux, timeout, f"exec {cmd!r} in container {self.id[:12]}")

    def _exec_tty_stream(self, cmd: list[str], kw: dict, timeout: float | None):
        """Start ``cmd`` on a new terminal; the generator reading it."""
        import os

        master, slave = os.openpty()
        _, pidfd = self._exec_started(cmd, kw, (slave, slave, slave), [master], [slave], tty=True)
        return _stream_output({master: 0}, pidfd, False, timeout, f"exec {cmd!r} in container {self.id[:12]}")

    def _exec_tty_detached(self, cmd: list[str], kw: dict) -> int:
        """Start ``cmd`` on a new terminal and leave it running; its pid.

        Closing the terminal's master side would hang it up (SIGHUP for
        the command) and nobody reading it would stall the command once the
        terminal's buffer fills; so, as docker's daemon does, something
        reads and drops it for as long as the command has it open: a
        ``cat`` of its own session, which outlives this process if need be
        and ends (EIO) once the command's side is closed."""
        import os
        import subprocess
        import threading

        master, slave = os.openpty()
        pid, pidfd = self._exec_started(cmd, kw, (slave, slave, slave), [master], [slave], tty=True)
        try:
            drain = subprocess.Popen(["cat"], stdin=master, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        finally:
            os.close(master)
            if pidfd >= 0:
                os.close(pidfd)
        # reaped here while this process lives (init reaps it after)
        threading.Thread(target=drain.wait, name="pinnace-exec-tty-drain", daemon=True).start()
        return pid

    def _exec_socket(self, cmd: list[str], kw: dict, stdin: bool, stdout: bool, stderr: bool, tty: bool,
                     timeout: float | None):
        """Start ``cmd`` with its stdio relayed to a socket (see ``exec_run``); the caller's end."""
        import os
        import socket
        import threading

        from pinnace import _core

        if tty:
            master, slave = os.openpty()
            ours_fds, theirs_fds = [master], [slave]
            stdio = (slave, slave, slave)
            sources, sink = {master: 0}, master if stdin else None
        else:
            pipes = [os.pipe() if on else None for on in (stdin, stdout, stderr)]
            # our ends: the write end of stdin's pipe, the read ends of the output's
            ours_fds = [p[1 if i == 0 else 0] for i, p in enumerate(pipes) if p]
            theirs_fds = [p[0 if i == 0 else 1] for i, p in enumerate(pipes) if p]
            stdio = tuple(p[0 if i == 0 else 1] if p else _core.DEVNULL for i, p in enumerate(pipes))
            sources = {p[0]: i for i, p in enumerate(pipes) if p and i}
            sink = pipes[0][1] if pipes[0] else None
        _, pidfd = self._exec_started(cmd, kw, stdio, ours_fds, theirs_fds, tty=tty)
        user, relay = socket.socketpair()
        threading.Thread(target=_relay_socket, args=(relay, sources, sink, pidfd, timeout, not tty),
                         name="pinnace-exec-socket", daemon=True).start()
        sock = user.makefile("rwb", buffering=0)
        user.close()  # the SocketIO holds it now: closing that closes the socket
        return sock

    def logs(self, stdout: bool = True, stderr: bool = True, stream: bool = False, timestamps: bool = False,
             tail: int | str = "all", since: str | float | None = None, follow: bool | None = None,
             until: str | float | None = None):
        """Its output (detached containers keep a log): bytes, or with
        ``stream`` an iterator of lines, which with ``follow`` (the default
        when streaming) goes on until the container stops."""
        from pinnace.containers.logs import lines, parse_since
        from pinnace.errors import UsageError

        st = self._state()
        path = st.get("LogPath")
        if not path:
            raise UsageError(f"container {self.id[:12]} has no log (only detached containers keep one)")
        follow = stream if follow is None else follow
        streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        since_t = parse_since(since) if isinstance(since, str) else _timestamp(since)
        until_t = parse_since(until) if isinstance(until, str) else _timestamp(until)
        p = self._store.paths(self.id)
        it = (data for s, data in lines(path, tail=None if tail == "all" else int(tail), since=since_t,
                                         until=until_t, timestamps=timestamps,
                                         follow_while=(lambda: self._store.owner_alive(p)) if follow else None)
              if s in streams)
        return it if stream else b"".join(it)

    def stats(self, stream: bool = False, decode: bool | None = None, interval: float = 0.5):
        """Resource usage as ``pinnace.stats`` gives it (CPU % over
        ``interval`` s, memory, pids, block I/O, the raw cgroup counters);
        with ``stream`` an iterator of readings until it stops."""
        from pinnace.containers.stats import stats as read
        from pinnace.errors import Conflict

        def one() -> dict | None:
            rows = read(self._store, [self.id], interval)
            return rows[0] if rows else None

        if stream:
            return iter(one, None)
        row = one()
        if row is None:
            raise Conflict(f"container {self.id[:12]} is not running")
        return row

    def put_archive(self, path: str, data) -> bool:
        """Unpack a tar archive (bytes or a binary file object) into the
        directory ``path`` in the container, as docker-py does. Entries that
        would land outside it are refused (tarfile's ``data`` filter); the
        copy in is done with every path looked up inside the container's
        root. Like all the file methods it works on a stopped container too,
        as ``docker cp`` does: its root filesystem is mounted for the copy
        alone (volumes and the host image's /usr are not part of that view)."""
        import io
        import os
        import stat
        import tarfile
        import tempfile

        from pinnace.containers import cp
        from pinnace.errors import UsageError

        if not stat.S_ISDIR(self._stat(path).st_mode):
            raise UsageError(f"put_archive: {path} in container {self.id[:12]} is not a directory")
        fileobj = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with tempfile.TemporaryDirectory(prefix="pinnace-put-") as tmp:
            with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python before 3.11.4 (Debian 12's 3.11.2): the same checks by hand
                    for member in _safe_members(tar, tmp):
                        tar.extract(member, tmp, set_attrs=not member.issym())
            for entry in os.listdir(tmp):
                cp.copy_in(self._store, self.id, os.path.join(tmp, entry), path)
        return True

    def get_archive(self, path: str, chunk_size: int = 2 << 20, encode_stream: bool = False):
        """``(chunks, stat)``: a tar archive of ``path`` in the container
        (running or not; an iterator of bytes) and docker's stat of it
        (``name``, ``size``, ``mode``, ``mtime``, ``linkTarget``)."""
        import io
        import os
        import tarfile
        import tempfile
        import time

        from pinnace.containers import cp

        st = self._stat(path)
        name = os.path.basename(path.rstrip("/")) or "/"
        buf = io.BytesIO()
        with tempfile.TemporaryDirectory(prefix="pinnace-get-") as tmp:
            cp.copy_out(self._store, self.id, path, os.path.join(tmp, name))
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(os.path.join(tmp, name), arcname=name)
        data = buf.getvalue()
        info = {"name": name, "size": st.st_size, "mode": st.st_mode,
                "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)), "linkTarget": ""}
        return (data[i:i + chunk_size] for i in range(0, len(data), chunk_size)), info

    def _stat(self, path: str):
        from pinnace.containers import cp
        from pinnace.errors import UsageError

        try:
            return cp.stat_path(self._store, self.id, path)
        except FileNotFoundError:
            raise UsageError(f"no such file or directory in container {self.id[:12]}: {path}") from None

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Make ``path`` in the container (running or not) a file holding
        ``data`` (its directory must exist).

        >>> c.write_file("/tmp/greeting", "hi\\n"); c.read_file("/tmp/greeting")
        b'hi\\n'
        """
        from pinnace.containers import cp

        cp.write_file(self._store, self.id, path, data.encode() if isinstance(data, str) else bytes(data), mode)

    def read_file(self, path: str) -> bytes:
        """The content of the file ``path`` in the container (running or not)."""
        from pinnace.containers import cp

        return cp.read_file(self._store, self.id, path)

    # -- readiness: see pinnace.wait -------------------------------------------

    def wait_for_log(self, pattern, timeout: float = 30, *, stdout: bool = True, stderr: bool = True) -> str:
        """Until a line of its output matches ``pattern`` (a str found as is,
        or a compiled regex); the line. See :func:`pinnace.wait.wait_for_log`."""
        from pinnace.wait import wait_for_log

        return wait_for_log(self, pattern, timeout, stdout=stdout, stderr=stderr)

    def wait_for_port(self, port: int, timeout: float = 30, *, host: str = "127.0.0.1") -> None:
        """Until a TCP connect to ``port`` succeeds inside its network namespace."""
        from pinnace.wait import wait_for_port

        wait_for_port(self, port, timeout, host=host)

    def wait_for_http(self, port: int, path: str = "/", status: int = 200, timeout: float = 30, *,
                      host: str = "127.0.0.1") -> None:
        """Until ``GET path`` on ``port`` (inside its network namespace) answers ``status``."""
        from pinnace.wait import wait_for_http

        wait_for_http(self, port, path, status, timeout, host=host)

    def wait_for_command(self, cmd: str | Iterable[str], timeout: float = 30) -> "ExecResult":
        """Until ``cmd`` exec'd in it exits 0; its result."""
        from pinnace.wait import wait_for_command

        return wait_for_command(self, cmd, timeout)

    def top(self) -> list[tuple[str, ...]]:
        from pinnace.containers import control

        return control.top(self._store, self.id)

    def remove(self, force: bool = False, v: bool = False, link: bool = False) -> None:
        """Remove it (``force``: kill it first if it runs). ``v`` and ``link``
        are accepted for docker-py's sake: pinnace has no anonymous volumes or links."""
        self._store.remove(self.id, force=force)

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        from pinnace.errors import ContainerNotFound

        try:
            self.remove(force=True)
        except ContainerNotFound:
            pass

    def __eq__(self, other) -> bool:
        return isinstance(other, Container) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]}>"


def _timestamp(t) -> float | None:
    """A datetime or a Unix time (docker-py's since/until) as a Unix time."""
    if t is None or isinstance(t, (int, float)):
        return t
    return t.timestamp()


def _stream_output(readers: dict[int, int], pidfd: int, demux: bool, timeout: float | None, what: str):
    """Chunks from the pipes ``readers`` (fd -> 0 stdout, 1 stderr) until
    all are closed; past ``timeout`` the process behind ``pidfd`` is killed
    and ExecTimeout raised."""
    import os
    import select
    import time

    from pinnace.errors import ExecTimeout

    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    try:
        while readers:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                _kill(pidfd)
                raise ExecTimeout(f"{what} still running after {timeout} s: killed")
            for fd, _ in poller.poll(None if left is None else max(1, int(left * 1000))):
                data = _read(fd)
                if not data:
                    poller.unregister(fd)
                    os.close(fd)
                    del readers[fd]
                elif demux:
                    yield (data, None) if readers[fd] == 0 else (None, data)
                else:
                    yield data
    finally:
        for fd in readers:
            os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)


def _kill(pidfd: int) -> None:
    """SIGKILL for the process behind ``pidfd`` (-1: none), and wait (a
    second at most) until it is gone, so that the caller hears of the
    timeout only once it is."""
    import select
    import signal

    if pidfd < 0:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return
    select.select([pidfd], [], [], 1.0)


def _read(fd: int) -> bytes:
    """``os.read``, with a terminal's EIO (its other side is closed) as end-of-file."""
    import errno
    import os

    try:
        return os.read(fd, 65536)
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise


def _relay_socket(sock, sources: dict[int, int], sink: int | None, pidfd: int, timeout: float | None,
                  frames: bool) -> None:
    """Relay between an exec'd command and the socket ``sock``: what comes
    from ``sources`` (fd -> 1 stdout, 2 stderr; 0 a terminal) goes to the
    socket, in docker's multiplexed frames with ``frames``; what the socket
    gives goes to ``sink`` (its stdin; None: read and dropped). Ends, closing
    everything, once the sources are all closed and their output sent, when
    the other end of the socket is gone, or past ``timeout`` (the command
    behind ``pidfd`` then killed)."""
    import os
    import select
    import struct
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    to_sock, to_sink = b"", b""
    sock_open = True  # still reading from the socket
    if sink is not None:
        os.set_blocking(sink, False)
    sock.setblocking(False)
    try:
        while sources or to_sock:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                _kill(pidfd)
                return
            poller = select.poll()
            if to_sock:
                poller.register(sock, select.POLLOUT)
            elif sock_open and not to_sink:
                poller.register(sock, select.POLLIN)
            if to_sink:
                poller.register(sink, select.POLLOUT)
            if not to_sock:
                for fd in sources:
                    if fd != sink or not to_sink:
                        poller.register(fd, select.POLLIN)
            for fd, ev in poller.poll(None if left is None else max(1, int(left * 1000))):
                if fd == sock.fileno():
                    if to_sock:
                        try:
                            to_sock = to_sock[sock.send(to_sock):]
                        except (BrokenPipeError, ConnectionResetError):
                            return  # nobody reads any more: the command's output pipes go with ours
                        except BlockingIOError:
                            pass
                        continue
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        sock_open = False
                        if sink is not None and sink not in sources:
                            os.close(sink)  # end-of-file for its stdin
                            sink = None
                    elif sink is not None:
                        to_sink = data
                elif fd == sink and to_sink and ev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    try:
                        to_sink = to_sink[os.write(sink, to_sink):]
                    except BlockingIOError:
                        pass
                    except OSError:  # it closed its stdin: drop what it will not read
                        to_sink = b""
                elif fd in sources:
                    try:
                        data = _read(fd)
                    except BlockingIOError:
                        continue
                    if not data:
                        del sources[fd]
                        if fd != sink:
                            os.close(fd)
                    elif frames:  # (one poll may find both streams readable)
                        to_sock += struct.pack(">BxxxL", sources[fd], len(data)) + data
                    else:
                        to_sock += data
    finally:
        for fd in {*sources, *([sink] if sink is not None else [])}:
            os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)
        sock.close()


class ExecResult:
    """What ``exec_run`` returns; unpacks as ``exit_code, output`` like docker-py's."""

    __slots__ = ("exit_code", "output", "pid", "timed_out")

    def __init__(self, exit_code, output, pid=0, timed_out=False):
        self.exit_code, self.output, self.pid, self.timed_out = exit_code, output, pid, timed_out

    def __iter__(self):
        return iter((self.exit_code, self.output))

    def __repr__(self) -> str:
        return f"ExecResult(exit_code={self.exit_code!r}, output={self.output!r})"


def container(name_or_id: str, *, root: str | None = None, runroot: str | None = None) -> Container:
    """The container with that name, id or unique id prefix."""
    return Container(name_or_id, root=root, runroot=runroot)


def list_containers(*, all: bool = False, filters: Iterable[str] = (), root: str | None = None,
                    runroot: str | None = None) -> list[Container]:
    """Running containers (with ``all``, stopped ones too), newest first;
    ``filters`` as ``pinnace ps --filter`` takes them (``label=k=v``, ...).
    (Not ``pinnace.containers``: that name is the package of the store.)"""
    from pinnace.containers import Store

    return _list(Store(root or default_root(), runroot or default_runroot()), all, filters)


def _list(store, all: bool, filters: Iterable[str]) -> list[Container]:
    from pinnace.containers.filters import select

    return [Container._known(store, r["Id"], r.get("Name", "").lstrip("/")) for r in select(store, all, filters)]
