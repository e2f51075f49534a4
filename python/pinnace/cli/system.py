"""``pinnace system``: whole-store maintenance."""

from __future__ import annotations

import click


@click.group()
def system() -> None:
    """Manage pinnace's store."""


@system.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (there is no prompt)")
@click.pass_obj
def prune(obj, force: bool) -> int:
    """Remove stopped containers and what crashed runs left behind."""
    removed = obj.store().prune()
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
    click.echo(f"Total reclaimed containers: {len(removed)}")
    return 0
