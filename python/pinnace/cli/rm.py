"""``pinnace rm``: remove containers."""

from __future__ import annotations

import click


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes too (pinnace makes none yet)")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def rm(obj, force: bool, volumes: bool, containers: tuple[str, ...]) -> int:
    """Remove one or more containers."""
    from pinnace.errors import PinnaceError

    store = obj.store()
    code = 0
    for ref in containers:
        try:
            store.remove(store.resolve(ref), force=force)
            click.echo(ref)
        except PinnaceError as e:
            click.echo(f"Error: {e}", err=True)
            code = 1
    return code
