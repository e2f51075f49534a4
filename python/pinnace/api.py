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
    from pinnace import images
    from pinnace.containers import Store
    from pinnace.containers.runner import run as run_container
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
    root = root or default_root()
    store = Store(root, runroot or default_runroot())
    if rootfs is not None:
        img = images.from_rootfs(rootfs)
    elif image is None:
        raise UsageError("give an image or rootfs")
    else:
        img = images.for_run(image, root, pull_policy, platform)
    if isinstance(input, str):
        input = input.encode()
    out = run_container(store, img, opts, input=input, timeout=timeout,
                        stdin=-1 if input is not None else -2, background_removal=True)
    return RunResult(out.id, out.name, out.exit_code, out.stdout, out.stderr, out.signal, out.timed_out,
                     out.oom_killed, out.stats, out.warnings)


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
    """A container in the store, by id: the lifecycle verbs of the CLI as
    methods. ``with`` removes it (force) on the way out, however that is.

    >>> c = pinnace.container("web")
    >>> c.exec_run(["cat", "/etc/hostname"]).exit_code
    0
    """

    def __init__(self, id: str, *, root: str | None = None, runroot: str | None = None):
        from pinnace.containers import Store

        self._store = Store(root or default_root(), runroot or default_runroot())
        self.id = self._store.resolve(id)

    @property
    def attrs(self) -> dict:
        """``docker inspect``'s view of it, read now."""
        from pinnace.cli.lifecycle import inspect_container
        from pinnace.errors import ContainerNotFound

        st = self._store.state(self.id)
        if st is None:
            raise ContainerNotFound(f"no such container: {self.id[:12]}")
        return inspect_container(st)

    @property
    def name(self) -> str:
        return self.attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        """created, running or exited."""
        return self.attrs["State"]["Status"]

    def kill(self, signal: str | int = "KILL") -> None:
        from pinnace.containers import control

        control.kill(self._store, self.id, signal)

    def stop(self, timeout: float = 10) -> None:
        """The stop signal, then SIGKILL for everything in it after ``timeout`` s."""
        from pinnace.containers import control

        control.stop(self._store, self.id, timeout)

    def wait(self, timeout: float | None = None) -> dict:
        """Until it stops: ``{"StatusCode": exit code}`` as docker-py returns it.
        Raises TimeoutError after ``timeout`` seconds."""
        from pinnace.containers import control

        if not control.wait_owner(self._store, self.id, timeout):
            raise TimeoutError(f"container {self.id[:12]} still running after {timeout} s")
        return {"StatusCode": control.wait(self._store, self.id), "Error": None}

    def exec_run(self, cmd: str | Iterable[str], *, env: Iterable[str] | Mapping[str, str] | None = None,
                 workdir: str | None = None, user: str | None = None, privileged: bool = False,
                 input: bytes | None = None, timeout: float | None = None, detach: bool = False,
                 demux: bool = False) -> "ExecResult":
        """Run ``cmd`` inside it (all its namespaces, its cgroup). Returns
        ``ExecResult(exit_code, output)``; ``output`` is stdout and stderr
        together, or with ``demux`` a ``(stdout, stderr)`` pair."""
        from pinnace import _core
        from pinnace.containers.exec import exec_in

        if isinstance(cmd, str):
            cmd = ["/bin/sh", "-c", cmd]
        r = exec_in(self._store, self.id, list(cmd), env=env_list(env), workdir=workdir, user=user,
                    privileged=privileged, input=input, timeout=timeout, detach=detach,
                    stdin=_core.PIPE if input is not None else _core.DEVNULL,
                    stdout=_core.DEVNULL if detach else _core.PIPE, stderr=_core.DEVNULL if detach else _core.PIPE)
        if detach:
            return ExecResult(None, None, r.pid)
        out = (r.stdout, r.stderr) if demux else (r.stdout or b"") + (r.stderr or b"")
        return ExecResult(r.exit_code, out, r.pid, r.timed_out)

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None,
             since: str | float | None = None, timestamps: bool = False, follow: bool = False):
        """Its output (detached containers keep a log): bytes, or with
        ``follow`` an iterator of chunks until it stops."""
        from pinnace.containers.logs import lines, parse_since
        from pinnace.errors import UsageError

        st = self._store.state(self.id) or {}
        path = st.get("LogPath")
        if not path:
            raise UsageError(f"container {self.id[:12]} has no log (only detached containers keep one)")
        streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        since_t = parse_since(since) if isinstance(since, str) else since
        p = self._store.paths(self.id)
        it = (data for stream, data in lines(path, tail=tail, since=since_t, timestamps=timestamps,
                                              follow_while=(lambda: self._store.owner_alive(p)) if follow else None)
              if stream in streams)
        return it if follow else b"".join(it)

    def top(self) -> list[tuple[str, ...]]:
        from pinnace.containers import control

        return control.top(self._store, self.id)

    def remove(self, force: bool = False) -> None:
        self._store.remove(self.id, force=force)

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        from pinnace.errors import ContainerNotFound

        try:
            self.remove(force=True)
        except ContainerNotFound:
            pass

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]}>"


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


def list_containers(*, all: bool = False, root: str | None = None, runroot: str | None = None) -> list[Container]:
    """Running containers (with ``all``, stopped ones too), newest first.
    (Not ``pinnace.containers``: that name is the package of the store.)"""
    from pinnace.containers import Store

    store = Store(root or default_root(), runroot or default_runroot())
    rows = [st for st in (store.state(i) for i in store.ids()) if st]
    if not all:
        rows = [r for r in rows if (r.get("State") or {}).get("Running")]
    rows.sort(key=lambda r: r.get("Created", ""), reverse=True)
    return [Container(r["Id"], root=store.root, runroot=store.runroot) for r in rows]
