"""pinnace: a daemonless, Docker-like container runtime you install with pip.

>>> import pinnace
>>> pinnace.run("host", ["echo", "hi"]).stdout
b'hi\\n'
"""

from __future__ import annotations

from pinnace import errors
from pinnace.api import RunResult, run

__version__ = "0.1.0"

__all__ = ["run", "RunResult", "errors", "__version__"]
