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
    ``device_read_bps``, ``device_write_bps``).
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
                "device_write_bps", "group_add"):
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
