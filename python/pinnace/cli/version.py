from __future__ import annotations

import click


@click.command()
def version() -> int:
    """Show the pinnace version."""
    from pinnace import _core

    click.echo(f"pinnace version {_core.__version__}")
    return 0
