"""docker-py's shape over pinnace: ``client = pinnace.from_env()``, then
``client.containers.run(...)``, ``.get()``, ``.list()`` and
``client.images.pull()``, ``.get()``, ``.list()``, ``.remove()``.

No daemon and no socket: the client is a store location (``root`` and
``runroot``), and every call acts in this process through the same
machinery as the CLI (``containers.runner`` for foreground runs,
``containers.detached`` for ``detach=True``).

>>> import pinnace
>>> with pinnace.from_env() as client:
...     client.containers.run("host", ["echo", "hello"], remove=True)
b'hello\\n'
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from pinnace.api import Container
    from pinnace.images import ImageInfo

#: docker-py keyword -> pinnace run option
_RENAMED = {
    "environment": "env",
    "working_dir": "workdir",
    "mem_limit": "memory",
    "memswap_limit": "memory_swap",
    "mem_reservation": "memory_reservation",
    "stdin_open": "interactive",
    "network_mode": "network",
    "auto_remove": "remove",
}


class Client:
    """A pinnace store, spoken to as docker-py speaks to a daemon.

    ``root`` and ``runroot`` default to ``$PINNACE_ROOT`` / ``$PINNACE_RUNROOT``,
    else ``/var/lib/pinnace`` and ``/run/pinnace``.
    """

    def __init__(self, root: str | None = None, runroot: str | None = None):
        from pinnace.containers import Store, default_root, default_runroot

        self._store = Store(root or default_root(), runroot or default_runroot())
        self.containers = ContainerCollection(self)
        self.images = ImageCollection(self)

    @property
    def root(self) -> str:
        return self._store.root

    @property
    def runroot(self) -> str:
        return self._store.runroot

    def ping(self) -> bool:
        return True

    def version(self) -> dict:
        import pinnace

        return {"Version": pinnace.__version__, "ApiVersion": "pinnace", "Os": "linux"}

    def close(self) -> None:
        """Nothing to let go of (no connection); containers stay as they are."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pinnace.Client root={self.root!r}>"


def from_env(**kwargs) -> Client:
    """A :class:`Client` for the store ``$PINNACE_ROOT``/``$PINNACE_RUNROOT``
    name (docker-py's ``docker.from_env()``). Keywords other than ``root`` and
    ``runroot`` (``timeout``, ``version``, ...) are accepted and ignored."""
    return Client(root=kwargs.get("root"), runroot=kwargs.get("runroot"))


class ContainerCollection:
    """``client.containers``."""

    def __init__(self, client: Client):
        self.client = client

    def run(self, image, command: str | Iterable[str] | None = None, stdout: bool = True, stderr: bool = False,
            remove: bool = False, *, detach: bool = False, stream: bool = False, ports: Mapping | None = None,
            volumes: Mapping | Iterable[str] | None = None, die_with_parent: bool = False, **kwargs):
        """Run a container of ``image`` (a name, or an object with ``id``).

        Without ``detach``: waits and returns its stdout (plus its stderr
        after it with ``stderr=True``) as bytes; a non-zero exit raises
        :class:`pinnace.errors.ContainerError` with ``exit_status`` and
        ``stderr``. ``remove`` removes it afterwards (docker-py keeps it by
        default). With ``detach``: returns the running :class:`Container`
        at once (``remove`` then removes it when it stops); with
        ``die_with_parent`` too, it is killed when this process exits,
        however it exits (its supervisor watches a pidfd of this process).

        Keywords are docker-py's (``environment``, ``working_dir``,
        ``mem_limit``, ``volumes`` as ``{"/host": {"bind": "/ctr", "mode":
        "ro"}}`` or ``["/host:/ctr:ro"]``, ``tmpfs``, ``ulimits``,
        ``nano_cpus``, ``labels``, ``hostname``, ``user``, ``entrypoint``,
        ``init``, ``tty``, ``stdin_open``, ``network``, ``name``, ...) or
        pinnace run's own option names (``memory``, ``cpus``,
        ``pids_limit``, ...). A string ``command`` runs under ``/bin/sh -c``.

        >>> client.containers.run("host", "echo out; echo err >&2", remove=True, stderr=True)
        b'out\\nerr\\n'
        >>> with client.containers.run("host", "sleep infinity", detach=True, mem_limit="64m") as c:
        ...     c.status
        'running'
        """
        from pinnace import _core
        from pinnace.api import Container, _prepare
        from pinnace.errors import ContainerError

        options = _run_options(kwargs, volumes, ports)
        remove = bool(options.pop("remove", False)) or remove  # docker-py's auto_remove
        env = options.pop("env", None)
        name = getattr(image, "id", None) or image
        tty = bool(options.get("tty"))
        store, img, opts = _prepare(name, command, None, env, remove, self.client.root, self.client.runroot,
                                    options)
        if detach:
            from pinnace.containers.detached import start_detached

            cid, _ = start_detached(store, img, opts, tty=tty, owner_pidfd=_own_pidfd() if die_with_parent else -1)
            return Container._known(store, cid, opts.name)
        from pinnace.containers.runner import run as run_container

        out = run_container(store, img, opts, stdin=_core.DEVNULL, stdout=_core.PIPE if stdout else _core.DEVNULL,
                            stderr=_core.PIPE, background_removal=True)
        if out.exit_code != 0:
            kept = None if opts.remove else Container._known(store, out.id, out.name)
            raise ContainerError(kept, out.exit_code, command, name, out.stderr)
        data = (out.stdout or b"") + ((out.stderr or b"") if stderr else b"")
        return iter([data]) if stream else data

    def get(self, container_id: str) -> Container:
        """The container with that name, id or unique id prefix
        (``pinnace.errors.ContainerNotFound`` otherwise)."""
        from pinnace.api import Container

        return Container._known(self.client._store, self.client._store.resolve(container_id))

    def list(self, all: bool = False, filters: Mapping[str, str | Iterable[str]] | None = None,
             limit: int = -1, **ignored) -> list[Container]:
        """Running containers (``all``: stopped ones too), newest first;
        ``filters`` as docker-py's: ``{"name": ..., "id": ..., "status": ...,
        "label": "k" or "k=v" or a list of them, "ancestor": ...}``."""
        from pinnace.api import _list

        specs = []
        for key, value in (filters or {}).items():
            for v in [value] if isinstance(value, str) else value:
                specs.append(f"{key}={v}")
        rows = _list(self.client._store, all, specs)
        return rows[:limit] if limit >= 0 else rows

    def prune(self, filters=None) -> dict:
        """Remove every stopped container (and what crashed runs left)."""
        return {"ContainersDeleted": self.client._store.prune(), "SpaceReclaimed": 0}


class ImageCollection:
    """``client.images``: thin wrappers over the image store."""

    def __init__(self, client: Client):
        self.client = client

    def pull(self, repository: str, tag: str | None = None, *, platform: str | None = None,
             tls_verify: bool | None = None) -> ImageInfo:
        from pinnace.api import pull

        ref = f"{repository}:{tag}" if tag and "@" not in repository else repository
        return pull(ref, platform=platform, tls_verify=tls_verify, root=self.client.root)

    def get(self, name: str) -> ImageInfo:
        """The image by reference or id (``pinnace.errors.ImageNotFound`` otherwise)."""
        from pinnace.errors import ImageNotFound
        from pinnace.images import ImageInfo
        from pinnace.images.store import ImageStore

        store = ImageStore(self.client.root)
        rec = store.lookup(name)
        if rec is None:
            raise ImageNotFound(f"no such image: {name}")
        return ImageInfo(rec, *store.names_of(rec["Id"]))

    def remove(self, image=None, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        """Remove an image (a reference, an id or unique id prefix, or an
        object with ``id``) as ``docker rmi`` does: one of several tags only
        untags it; an image a container uses (running or not) is refused with
        :class:`pinnace.errors.Conflict` unless ``force``, as is one named
        by id that has several tags; an unknown one raises
        :class:`pinnace.errors.ImageNotFound`. Layers other images or
        containers use stay. Returns docker's record of what was done
        (``[{"Untagged": ref}, ..., {"Deleted": id}]``; docker-py's own
        ``images.remove`` returns None). ``noprune`` is accepted for
        docker-py's sake: pinnace's images have no parent images to prune."""
        from pinnace.containers.images import remove_image
        from pinnace.errors import UsageError

        name = getattr(image, "id", image)
        if not isinstance(name, str) or not name:
            raise UsageError(f"images.remove: give an image's name or id, not {image!r}")
        return remove_image(self.client._store, name, force)

    def list(self, name: str | None = None, all: bool = False, filters=None) -> list[ImageInfo]:
        from pinnace.api import images

        rows = images(root=self.client.root)
        if name:
            rows = [r for r in rows if any(t == name or t.rpartition(":")[0] == name for t in r.tags)]
        return rows


_pidfd: tuple[int, int] | None = None


def _own_pidfd() -> int:
    """A pidfd of this process (made once; a forked child makes its own)."""
    global _pidfd
    import os

    if _pidfd is None or _pidfd[0] != os.getpid():
        _pidfd = (os.getpid(), os.pidfd_open(os.getpid()))
    return _pidfd[1]


def _run_options(kwargs: dict, volumes, ports) -> dict:
    """docker-py's ``containers.run`` keywords as pinnace run options."""
    from pinnace.errors import UsageError

    options = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        key = _RENAMED.get(key, key)
        if key == "privileged":
            if value:
                raise UsageError("privileged containers are not supported")
            continue
        if key == "nano_cpus":
            key, value = "cpus", value / 1e9
        elif key == "tmpfs" and isinstance(value, dict):
            value = [f"{path}:{opts}" if opts else path for path, opts in value.items()]
        elif key == "ulimits":
            value = [_ulimit(u) for u in value]
        elif key == "entrypoint" and isinstance(value, str):
            value = ["/bin/sh", "-c", value]
        options[key] = value
    if volumes:
        options["volumes"] = volume_list(volumes)
    if ports:
        options["publish"] = publish_list(ports)
    return options


def _ulimit(u) -> str:
    """A docker-py Ulimit (or its dict, or pinnace's "name=soft:hard") as pinnace's string."""
    if isinstance(u, str):
        return u
    get = u.get if isinstance(u, dict) else lambda k, d=None: getattr(u, k, d)
    name, soft = get("name") or get("Name"), get("soft", get("Soft"))
    hard = get("hard", get("Hard"))
    return f"{name}={soft}:{hard if hard is not None else soft}"


def volume_list(volumes: Mapping | Iterable[str]) -> list[str]:
    """docker-py's volumes (``{"/host": {"bind": "/ctr", "mode": "ro"}}``,
    ``{"/host": "/ctr"}`` or ``["/host:/ctr:ro"]``) as ``-v`` strings.

    >>> volume_list({"/srv": {"bind": "/data", "mode": "ro"}})
    ['/srv:/data:ro']
    """
    if isinstance(volumes, str):
        return [volumes]
    if not hasattr(volumes, "items"):
        return list(volumes)
    out = []
    for host, spec in volumes.items():
        if isinstance(spec, str):
            out.append(f"{host}:{spec}")
        else:
            mode = spec.get("mode", "rw")
            out.append(f"{host}:{spec['bind']}" + (f":{mode}" if mode and mode != "rw" else ""))
    return out


def publish_list(ports: Mapping) -> list[str]:
    """docker-py's ports (``{"80/tcp": 8080}``, ``{"80": ("127.0.0.1", 8080)}``,
    ``{"80/tcp": None}`` for any free port, ``{"80": [8080, 8081]}``) as
    ``-p`` strings.

    >>> publish_list({"80/tcp": 8080, "53/udp": ("127.0.0.1", 5353), 22: None})
    ['8080:80/tcp', '127.0.0.1:5353:53/udp', '22']
    """
    out = []
    for ctr, hosts in ports.items():
        ctr = str(ctr)
        for host in hosts if isinstance(hosts, list) else [hosts]:
            if host is None:
                out.append(ctr)
            elif isinstance(host, tuple):
                addr, port = host if len(host) == 2 else (host[0], None)
                out.append(f"{addr}:{port if port is not None else ''}:{ctr}")
            else:
                out.append(f"{host}:{ctr}")
    return out


__all__ = ["Client", "ContainerCollection", "ImageCollection", "from_env", "volume_list", "publish_list"]
