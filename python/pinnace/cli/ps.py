"""``pinnace ps``: list containers, like ``docker ps``."""

from __future__ import annotations

import json
import time

import click


def _ago(stamp: str) -> str:
    try:
        t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return ""
    s = max(0, int(time.time() - t))
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            v = s // n
            return f"{v} {unit}{'s' if v > 1 else ''} ago"
    return f"{s} seconds ago"


def _status(st: dict) -> str:
    s = st.get("State", {})
    if s.get("Running"):
        return "Up " + _ago(s.get("StartedAt", "")).replace(" ago", "")
    if s.get("Status") == "dead":
        return "Dead"
    return f"Exited ({s.get('ExitCode', 0)}) {_ago(s.get('FinishedAt') or s.get('StartedAt', ''))}".rstrip()


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Filter: name=, id=, status=(created|running|exited), label=KEY[=VALUE], ancestor=IMAGE")
@click.pass_obj
def ps(obj, all_: bool, quiet: bool, no_trunc: bool, fmt: str, filters: tuple[str, ...]) -> int:
    """List containers."""
    from pinnace.containers.filters import select
    from pinnace.network import port_strings

    rows = select(obj.store(), all_, filters)
    if fmt == "json":
        click.echo(json.dumps([{
            "Id": r["Id"], "Names": r.get("Name", "").lstrip("/"), "Image": r.get("Image", ""),
            "Command": " ".join([r.get("Path", "")] + r.get("Args", [])), "Created": r.get("Created", ""),
            "State": r.get("State", {}).get("Status", ""), "Status": _status(r),
            "ExitCode": r.get("State", {}).get("ExitCode", 0),
            "OOMKilled": r.get("State", {}).get("OOMKilled", False),
            "Ports": port_strings(r.get("NetworkSettings")) if r.get("State", {}).get("Running") else [],
            "Networks": list(((r.get("NetworkSettings") or {}).get("Networks") or {}))} for r in rows], indent=2))
        return 0
    if quiet:
        for r in rows:
            click.echo(r["Id"] if no_trunc else r["Id"][:12])
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for r in rows:
        ports = ", ".join(port_strings(r.get("NetworkSettings"))) if r.get("State", {}).get("Running") else ""
        cmd = " ".join([r.get("Path", "")] + r.get("Args", []))
        if not no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        table.append((r["Id"] if no_trunc else r["Id"][:12], r.get("Image", ""), f'"{cmd}"',
                      _ago(r.get("Created", "")), _status(r), ports, r.get("Name", "").lstrip("/")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
