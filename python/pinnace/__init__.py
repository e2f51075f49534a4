"""pinnace: a daemonless, Docker-like container runtime you install with pip.

>>> import pinnace
>>> pinnace.run("host", ["echo", "hi"]).stdout
b'hi\\n'
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: typing costs the CLI ~10 ms

__version__ = "0.1.0"

__all__ = ["run", "stats", "pull", "images", "container", "list_containers", "Container", "RunResult", "errors",
           "__version__"]

if TYPE_CHECKING:
    from pinnace import errors
    from pinnace.api import Container, RunResult, container, images, list_containers, pull, run, stats


def __getattr__(name: str):
    # Lazy, so that `pinnace run` on the command line pays only for what it uses.
    if name == "images":
        # the subpackage, callable as the listing: see pinnace/images/__init__.py
        import pinnace.images

        return pinnace.images
    if name in ("run", "stats", "pull", "RunResult", "container", "list_containers", "Container"):
        from pinnace import api

        return getattr(api, name)
    if name == "errors":
        # `import pinnace.errors`, not `from pinnace import errors`: the latter
        # asks this very function first and recurses
        import pinnace.errors

        return pinnace.errors
    raise AttributeError(f"module 'pinnace' has no attribute {name!r}")
