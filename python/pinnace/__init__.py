"""pinnace: a daemonless, Docker-like container runtime you install with pip.

>>> import pinnace
>>> pinnace.run("host", ["echo", "hi"]).stdout
b'hi\\n'
>>> client = pinnace.from_env()             # docker-py's shape
>>> client.containers.run("host", ["echo", "hi"], remove=True)
b'hi\\n'
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: typing costs the CLI ~10 ms

__version__ = "0.1.0"

__all__ = ["run", "stats", "pull", "images", "container", "list_containers", "Container", "ExecResult", "RunResult",
           "from_env", "Client", "errors", "wait", "__version__"]

if TYPE_CHECKING:
    from pinnace import errors
    from pinnace import wait
    from pinnace.api import Container, ExecResult, RunResult, container, images, list_containers, pull, run, stats
    from pinnace.client import Client, from_env


def __getattr__(name: str):
    # Lazy, so that `pinnace run` on the command line pays only for what it uses.
    if name == "images":
        # the subpackage, callable as the listing: see pinnace/images/__init__.py
        import pinnace.images

        return pinnace.images
    if name in ("run", "stats", "pull", "RunResult", "container", "list_containers", "Container", "ExecResult"):
        from pinnace import api

        return getattr(api, name)
    if name in ("from_env", "Client"):
        from pinnace import client

        return getattr(client, name)
    if name == "wait":
        import pinnace.wait

        return pinnace.wait
    if name == "errors":
        # `import pinnace.errors`, not `from pinnace import errors`: the latter
        # asks this very function first and recurses
        import pinnace.errors

        return pinnace.errors
    raise AttributeError(f"module 'pinnace' has no attribute {name!r}")
