"""The click group; each command lives in its own module, imported on use."""

from __future__ import annotations

import click

from pinnace.containers import default_root, default_runroot

COMMANDS = {
    "run": ("pinnace.cli.run", "make_command"),
    "pull": ("pinnace.cli.pull", "pull"),
    "images": ("pinnace.cli.images", "images"),
    "image": ("pinnace.cli.images", "image"),
    "rmi": ("pinnace.cli.images", "rmi"),
    "login": ("pinnace.cli.login", "login"),
    "exec": ("pinnace.cli.exec", "exec_"),
    "cp": ("pinnace.cli.cp", "cp"),
    "stop": ("pinnace.cli.lifecycle", "stop"),
    "start": ("pinnace.cli.lifecycle", "start"),
    "restart": ("pinnace.cli.lifecycle", "restart"),
    "container": ("pinnace.cli.container", "container"),
    "kill": ("pinnace.cli.lifecycle", "kill"),
    "wait": ("pinnace.cli.lifecycle", "wait"),
    "top": ("pinnace.cli.lifecycle", "top"),
    "logs": ("pinnace.cli.lifecycle", "logs"),
    "inspect": ("pinnace.cli.lifecycle", "inspect"),
    "logout": ("pinnace.cli.login", "logout"),
    "ps": ("pinnace.cli.ps", "ps"),
    "network": ("pinnace.cli.network", "network"),
    "port": ("pinnace.cli.network", "port"),
    "rm": ("pinnace.cli.rm", "rm"),
    "stats": ("pinnace.cli.stats", "stats"),
    "system": ("pinnace.cli.system", "system"),
    "version": ("pinnace.cli.version", "version"),
}


class Context:
    """What every command gets in ``ctx.obj``."""

    def __init__(self, root: str, runroot: str):
        self.root = root
        self.runroot = runroot

    def store(self):
        from pinnace.containers import Store

        return Store(self.root, self.runroot)


class LazyGroup(click.Group):
    """Commands from a table of (module, attribute), imported when used."""

    table = COMMANDS

    def list_commands(self, ctx):
        return sorted(self.table)

    def get_command(self, ctx, name):
        if name not in self.table:
            return None
        import importlib

        module, attr = self.table[name]
        obj = getattr(importlib.import_module(module), attr)
        return obj if isinstance(obj, click.Command) else obj()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.option("--root", default=default_root, show_default="/var/lib/pinnace (env PINNACE_ROOT)",
              help="Directory for persistent state")
@click.option("--runroot", default=default_runroot, show_default="/run/pinnace (env PINNACE_RUNROOT)",
              help="Directory for runtime state")
@click.version_option("0.1.0", "--version", prog_name="pinnace")
@click.pass_context
def cli(ctx: click.Context, root: str, runroot: str) -> None:
    """A daemonless, Docker-like container runtime."""
    ctx.obj = Context(root, runroot)
