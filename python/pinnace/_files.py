"""Small file helpers shared by the container and image stores."""

from __future__ import annotations

import os


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``path`` so readers see the old content or the new, never half:
    a temporary name beside it, then rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.rename(tmp, path)
