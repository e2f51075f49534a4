"""Images: what a container's root filesystem is stacked from.

An image here is its layer directories (overlay lowerdirs, top first), its
OCI image config and any extra mounts it needs. The built-in ``host`` image
lives in :mod:`pinnace.images.host`; ``--rootfs DIR`` is a one-layer image.
"""

from __future__ import annotations

import os
import sys

from pinnace.errors import ImageNotFound, UsageError


class _ImagesModule(type(sys)):
    """``pinnace.images`` is this package, and once imported Python binds the
    name to it; making it callable keeps ``pinnace.images()`` (the public
    listing, :func:`pinnace.api.images`) working whatever was imported first.
    (``type(sys)`` is ``types.ModuleType``, without importing types: ~0.3 ms
    of every ``pinnace run``.)"""

    def __call__(self, *, root: str | None = None) -> "list[ImageInfo]":
        from pinnace.api import images

        return images(root=root)


sys.modules[__name__].__class__ = _ImagesModule


class Image:
    """``layers``: overlay lowerdirs, topmost first; ``config``: the "config"
    object of an OCI image config (Env, Cmd, Entrypoint, ...); ``mounts``:
    extra runtime-spec mounts the image needs (the host image's binds)."""

    __slots__ = ("name", "layers", "config", "mounts", "id")

    def __init__(self, name: str, layers: list[str], config: dict | None = None, mounts: list[dict] | None = None,
                 id: str = ""):
        self.name, self.layers = name, layers
        self.config = config or {}
        self.mounts = mounts or []
        self.id = id


class ImageInfo:
    """An image in the store, as ``pinnace.images()`` and ``pinnace.pull()`` return it."""

    __slots__ = ("id", "tags", "digests", "size", "shared_size", "layers", "config", "created", "containers",
                 "record")

    def __init__(self, record: dict, tags: list[str], digests: list[str], shared_size: int = 0,
                 containers: int = 0):
        self.id = record["Id"]
        self.tags, self.digests = tags, digests
        self.size = record.get("Size", 0)
        self.shared_size = shared_size
        self.layers = list(record["RootFS"]["Layers"])
        self.config = record.get("Config") or {}
        self.created = record.get("Created", "")
        self.containers = containers
        self.record = record

    def __repr__(self) -> str:
        return f"<ImageInfo {self.id[7:19]} {' '.join(self.tags) or '<none>'}>"


_host_images: dict[str, Image] = {}


def resolve(name: str, root: str) -> Image:
    """Find an image by name in the store under ``root``."""
    if name == "host":
        # Once per process and store: a test harness starts many sandboxes.
        img = _host_images.get(root)
        if img is None or not os.path.isdir(img.layers[0]):
            from pinnace.images.host import host_image

            img = _host_images[root] = host_image(root)
        return img
    from pinnace.images.store import ImageStore

    store = ImageStore(root)
    rec = store.lookup(name)
    if rec is None:
        raise ImageNotFound(f"no such image: {name}")
    return from_record(store, rec, name)


def from_record(store, rec: dict, name: str) -> Image:
    # overlay takes lowerdirs topmost first; a layer repeated in the stack is
    # kept only at its topmost place (the same result: it re-applies there)
    seen: set[str] = set()
    layers = []
    for diff_id in reversed(rec["RootFS"]["Layers"]):
        if diff_id not in seen:
            seen.add(diff_id)
            layers.append(store.layer_dir(diff_id))
    if not layers:
        empty = os.path.join(store.layers, "empty")
        os.makedirs(empty, exist_ok=True)
        layers.append(empty)
    return Image(name=name, layers=layers, config=rec.get("Config") or {}, id=rec["Id"])


def for_run(name: str, root: str, policy: str = "missing", platform: str | None = None,
            progress_stream=None) -> Image:
    """The image a container runs from, pulled first when missing (or
    always), as ``docker run --pull`` does. With ``progress_stream`` the pull
    reports there (the CLI passes stderr: the container's stdout stays its own)."""
    if policy not in ("missing", "always", "never"):
        raise UsageError(f"invalid pull policy {policy!r}: expected missing, always or never")
    if policy != "always" or name == "host":
        try:
            return resolve(name, root)
        except ImageNotFound:
            if policy == "never" or name == "host":
                raise
    from pinnace.images.pull import canonical, pull
    from pinnace.images.store import ImageStore

    progress = None
    if progress_stream is not None:
        from pinnace.images.progress import for_stream

        if policy != "always":
            progress_stream.write(f"Unable to find image '{canonical(name)}' locally\n")
        progress = for_stream(progress_stream)
    try:
        rec = pull(name, root, platform=platform, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    return from_record(ImageStore(root), rec, name)


def list_images(root: str, containers_by_image: dict[str, int] | None = None) -> list[ImageInfo]:
    """Every image in the store with its size and the part shared with other images."""
    from pinnace.images.store import ImageStore

    store = ImageStore(root)
    refs = store.refs()
    records = store.records_all()
    users: dict[str, int] = {}
    for rec in records:
        for d in set(rec["RootFS"]["Layers"]):
            users[d] = users.get(d, 0) + 1
    out = []
    for rec in records:
        tags, digests = store.names_of(rec["Id"], refs)
        shared = 0
        for d in set(rec["RootFS"]["Layers"]):
            if users[d] > 1:
                info = store.layer_info(d) or {}
                shared += info.get("Size", 0)
        out.append(ImageInfo(rec, tags, digests, shared, (containers_by_image or {}).get(rec["Id"], 0)))
    out.sort(key=lambda i: i.created or "", reverse=True)
    return out


def from_rootfs(path: str) -> Image:
    """A directory holding an unpacked root filesystem, used as one read-only layer."""
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        raise UsageError(f"rootfs {path}: not a directory")
    return Image(name=p, layers=[p], config={"Cmd": ["/bin/sh"]})
