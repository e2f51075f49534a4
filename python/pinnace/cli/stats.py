"""``pinnace stats``: live resource usage, like ``docker stats``."""

from __future__ import annotations

import json
import sys

import click


def _table(rows: list[dict]) -> list[str]:
    from pinnace.containers.stats import docker_json

    table = [("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")]
    for s in rows:
        d = docker_json(s)
        table.append((d["ID"], d["Name"], d["CPUPerc"], d["MemUsage"], d["MemPerc"], d["NetIO"], d["BlockIO"], d["PIDs"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one reading and exit")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.argument("containers", nargs=-1)
@click.pass_obj
def stats(obj, no_stream: bool, fmt: str, all_: bool, containers: tuple[str, ...]) -> int:
    """Display a live stream of containers' resource usage."""
    from pinnace.containers.stats import docker_json
    from pinnace.containers.stats import stats as read

    store = obj.store()
    if containers:
        ids = [store.resolve(c) for c in containers]
    else:
        ids = [i for i in store.ids() if (store.state(i) or {}).get("State", {}).get("Running") or all_]
    tty = sys.stdout.isatty() and not no_stream
    try:
        while True:
            rows = read(store, ids)
            if containers and not rows:
                raise click.ClickException(f"no running container: {', '.join(containers)}")
            if fmt == "json":
                out = [json.dumps(docker_json(s)) for s in rows]
            else:
                out = _table(rows)
            if tty:
                click.echo("\033[2J\033[H", nl=False)
            click.echo("\n".join(out))
            if no_stream:
                return 0
            ids = [i for i in ids if any(r["id"] == i for r in rows)]
            if not ids:
                return 0
    except KeyboardInterrupt:
        return 0
