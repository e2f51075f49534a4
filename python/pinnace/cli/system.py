"""``pinnace system``: whole-store maintenance."""

from __future__ import annotations

import click


@click.group()
def system() -> None:
    """Manage pinnace's store."""


@system.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (there is no prompt)")
@click.pass_obj
def prune(obj, all_: bool, force: bool) -> int:
    """Remove stopped containers, unused networks, dangling images and what crashed runs left behind."""
    from pinnace.cli.network import prune_networks
    from pinnace.containers.images import prune_images

    store = obj.store()
    removed = store.prune()
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
    networks = prune_networks(obj)
    if networks:
        click.echo("Deleted Networks:")
        for n in networks:
            click.echo(n)
    images, layers = prune_images(store, all_)
    if images:
        click.echo("Deleted Images:")
        for i in images:
            click.echo(f"deleted: {i}")
    click.echo(f"Total reclaimed: {len(removed)} containers, {len(images)} images, {len(layers)} layers")
    return 0
