"""Images: what a container's root filesystem is stacked from.

An image here is its layer directories (overlay lowerdirs, top first), its
OCI image config and any extra mounts it needs. The built-in ``host`` image
lives in :mod:`pinnace.images.host`; ``--rootfs DIR`` is a one-layer image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pinnace.errors import ImageNotFound, UsageError


@dataclass
class Image:
    name: str
    #: overlay lowerdirs, topmost first
    layers: list[str]
    #: the "config" object of an OCI image config (Env, Cmd, Entrypoint, ...)
    config: dict = field(default_factory=dict)
    #: extra runtime-spec mounts the image needs (the host image's binds)
    mounts: list[dict] = field(default_factory=list)


def resolve(name: str, root: str) -> Image:
    """Find an image by name in the store under ``root``."""
    if name == "host":
        from pinnace.images.host import host_image

        return host_image(root)
    raise ImageNotFound(f"image not found: {name} (pulling from registries is not supported yet; try the built-in 'host' image)")


def from_rootfs(path: str) -> Image:
    """A directory holding an unpacked root filesystem, used as one read-only layer."""
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        raise UsageError(f"rootfs {path}: not a directory")
    return Image(name=p, layers=[p], config={"Cmd": ["/bin/sh"]})
