"""Images: what a container's root filesystem is stacked from.

An image here is its layer directories (overlay lowerdirs, top first), its
OCI image config and any extra mounts it needs. The built-in ``host`` image
lives in :mod:`pinnace.images.host`; ``--rootfs DIR`` is a one-layer image.
"""

from __future__ import annotations

import os

from pinnace.errors import ImageNotFound, UsageError


class Image:
    """``layers``: overlay lowerdirs, topmost first; ``config``: the "config"
    object of an OCI image config (Env, Cmd, Entrypoint, ...); ``mounts``:
    extra runtime-spec mounts the image needs (the host image's binds)."""

    __slots__ = ("name", "layers", "config", "mounts")

    def __init__(self, name: str, layers: list[str], config: dict | None = None, mounts: list[dict] | None = None):
        self.name, self.layers = name, layers
        self.config = config or {}
        self.mounts = mounts or []


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
    raise ImageNotFound(f"image not found: {name} (pulling from registries is not supported yet; try the built-in 'host' image)")


def from_rootfs(path: str) -> Image:
    """A directory holding an unpacked root filesystem, used as one read-only layer."""
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        raise UsageError(f"rootfs {path}: not a directory")
    return Image(name=p, layers=[p], config={"Cmd": ["/bin/sh"]})
