"""``pinnace cp``: copy files between a running container and the host."""

from __future__ import annotations

import click


@click.command()
@click.argument("src")
@click.argument("dst")
@click.pass_obj
def cp(obj, src: str, dst: str) -> int:
    """Copy SRC to DST; one of them is CONTAINER:PATH (directories recursively,
    symlinks as symlinks, paths in the container looked up inside its root)."""
    from pinnace.containers.cp import copy

    try:
        copy(obj.store(), src, dst)
    except NotADirectoryError as e:
        from pinnace.errors import UsageError

        raise UsageError(str(e.strerror or e)) from None
    except FileNotFoundError as e:
        from pinnace.errors import UsageError

        raise UsageError(f"no such file or directory: {e.filename or e}") from None
    return 0
