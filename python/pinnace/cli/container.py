"""``pinnace container VERB``: docker's management-command spelling of the
container verbs (``container ls`` is ``ps``, ``container rm`` is ``rm``...)."""

from __future__ import annotations

import click

from pinnace.cli.app import LazyGroup

_VERBS = {
    "ls": ("pinnace.cli.ps", "ps"), "ps": ("pinnace.cli.ps", "ps"), "list": ("pinnace.cli.ps", "ps"),
    "rm": ("pinnace.cli.rm", "rm"), "run": ("pinnace.cli.run", "make_command"),
    "exec": ("pinnace.cli.exec", "exec_"), "inspect": ("pinnace.cli.lifecycle", "inspect"),
    "logs": ("pinnace.cli.lifecycle", "logs"), "stop": ("pinnace.cli.lifecycle", "stop"),
    "start": ("pinnace.cli.lifecycle", "start"), "restart": ("pinnace.cli.lifecycle", "restart"),
    "kill": ("pinnace.cli.lifecycle", "kill"), "wait": ("pinnace.cli.lifecycle", "wait"),
    "top": ("pinnace.cli.lifecycle", "top"), "stats": ("pinnace.cli.stats", "stats"),
    "prune": ("pinnace.cli.container", "prune"),
    "cp": ("pinnace.cli.cp", "cp"),
}


class _Verbs(LazyGroup):
    table = _VERBS


@click.group(cls=_Verbs)
def container() -> None:
    """Manage containers."""


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (there is no prompt)")
@click.pass_obj
def prune(obj, force: bool) -> int:
    """Remove all stopped containers."""
    removed = obj.store().prune()
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
    click.echo(f"Total reclaimed containers: {len(removed)}")
    return 0
