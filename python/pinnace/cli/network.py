"""``pinnace network create|ls|inspect|rm|prune|connect|disconnect`` and ``pinnace port``."""

from __future__ import annotations

import json

import click

from pinnace.errors import PinnaceError


def _nets(obj):
    from pinnace.network.store import Networks

    return Networks(obj.root, obj.runroot)


def _labels(items) -> dict:
    from pinnace.config import container_labels

    return container_labels(None, list(items))


@click.group()
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("-d", "--driver", default="bridge", help="Driver (bridge is the only one)")
@click.option("--subnet", default=None, help="IPv4 subnet in CIDR form (default: a free /24)")
@click.option("--gateway", default=None, help="The bridge's address in the subnet (default: its first)")
@click.option("--label", "labels", multiple=True, help="Set a label: KEY=VALUE")
@click.argument("name")
@click.pass_obj
def create(obj, driver: str, subnet: str | None, gateway: str | None, labels, name: str) -> int:
    """Create a network; its containers reach each other by name."""
    from pinnace.errors import UsageError

    if driver != "bridge":
        raise UsageError(f"network driver {driver!r} is not supported (only bridge)")
    net = _nets(obj).create(name, subnet, gateway, _labels(labels))
    click.echo(net["Id"])
    return 0


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format")
@click.pass_obj
def ls(obj, quiet: bool, no_trunc: bool, fmt: str) -> int:
    """List networks."""
    from pinnace.network import MODES

    nets = _nets(obj).all()
    rows = [(n["Id"], n["Name"], n["Driver"], subnet) for n in nets
            for subnet in [n["IPAM"]["Config"][0]["Subnet"]]]
    rows += [(m, m, "host" if m == "host" else "null", "") for m in MODES]
    if fmt == "json":
        click.echo(json.dumps([{"ID": i, "Name": n, "Driver": d, "Scope": "local", "Subnet": s}
                               for i, n, d, s in rows], indent=2))
        return 0
    if quiet:
        for r in rows:
            click.echo(r[0] if no_trunc else r[0][:12])
        return 0
    table = [("NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET")]
    table += [(i if no_trunc else i[:12], n, d, "local", s) for i, n, d, s in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def inspect_network(obj, net: dict) -> dict:
    from pinnace.network import MODES

    out = dict(net)
    if net["Name"] in MODES:
        return out
    store = obj.store()
    out["Containers"] = {
        l["Id"]: {"Name": l["Name"], "EndpointID": l.get("HostIf", ""), "MacAddress": l.get("MacAddress", ""),
                  "IPv4Address": f"{l['IPAddress']}/{l['IPPrefixLen']}", "IPv6Address": ""}
        for l in _nets(obj).leases(net, store)}
    return out


@network.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="'json' (default) or a {{.Field}} path to print")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(obj, fmt: str | None, names) -> int:
    """Show networks as docker-shaped JSON, with their containers."""
    from pinnace.cli.lifecycle import echo_inspected
    from pinnace.errors import NetworkNotFound

    nets = _nets(obj)
    out, missing = [], []
    for n in names:
        try:
            out.append(inspect_network(obj, nets.get(n)))
        except NetworkNotFound:
            missing.append(n)
    echo_inspected(out, fmt)
    if missing:
        raise NetworkNotFound(f"network {missing[0]} not found")
    return 0


@network.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not fail when a network does not exist")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rm(obj, force: bool, names) -> int:
    """Remove networks (none of their containers may be running)."""
    from pinnace.errors import NetworkNotFound

    nets = _nets(obj)
    code = 0
    for n in names:
        try:
            click.echo(nets.remove(n, obj.store()))
        except NetworkNotFound as e:
            if not force:
                click.echo(f"Error: {e}", err=True)
                code = 1
        except PinnaceError as e:
            click.echo(f"Error: {e}", err=True)
            code = 1
    return code


def prune_networks(obj) -> list[str]:
    """Remove every user network without running containers."""
    from pinnace.network import DEFAULT

    nets, store = _nets(obj), obj.store()
    removed = []
    for net in nets.all():
        if net["Name"] != DEFAULT and not nets.leases(net, store):
            try:
                removed.append(nets.remove(net["Name"], store))
            except PinnaceError:
                pass
    return removed


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (there is no prompt)")
@click.pass_obj
def prune(obj, force: bool) -> int:
    """Remove all networks no running container uses."""
    removed = prune_networks(obj)
    if removed:
        click.echo("Deleted Networks:")
        for n in removed:
            click.echo(n)
    return 0


def _running(obj, ref: str) -> tuple[object, str, dict]:
    from pinnace.errors import Conflict

    store = obj.store()
    cid = store.resolve(ref)
    st = store.state(cid) or {}
    if not (st.get("State") or {}).get("Running") or not st["State"].get("Pid"):
        raise Conflict(f"container {ref} is not running")
    return store, cid, st


@network.command("connect")
@click.option("--ip", default=None, help="IPv4 address on the network")
@click.option("--alias", "aliases", multiple=True, help="Another name for the container on this network")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.pass_obj
def connect(obj, ip: str | None, aliases, network_name: str, container: str) -> int:
    """Connect a running container to a network (one more interface)."""
    from pinnace.errors import Conflict, UsageError
    from pinnace.network import DEFAULT, MODES
    from pinnace.network.bridge import attach_running
    from pinnace.network.setup import _valid_hostname

    for alias in aliases:
        if not _valid_hostname(alias):
            raise UsageError(f"invalid --alias {alias!r}: letters, digits, '.', '-' and '_' only")
    nets = _nets(obj)
    net = nets.get(network_name)
    if net["Name"] in MODES:
        raise UsageError(f"cannot connect a container to the {net['Name']} network")
    if (ip or aliases) and net["Name"] == DEFAULT:
        raise UsageError("--ip and --alias are supported only on user-defined networks")
    store, cid, st = _running(obj, container)
    settings = st.get("NetworkSettings") or {}
    mode = (st.get("HostConfig") or {}).get("NetworkMode")
    if mode in MODES:
        raise Conflict(f"container {container} uses --network {mode}: it cannot join other networks")
    endpoints = settings.get("Networks") or {}
    if net["Name"] in endpoints:
        raise Conflict(f"container {container} is already connected to network {net['Name']}")
    used = {e.get("Interface") for e in endpoints.values()}
    ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
    p = store.paths(cid)
    e = attach_running((net, list(aliases), ip), nets, store, cid, st.get("Name", "").lstrip("/"),
                       st["State"]["Pid"], p.dir, ifname)
    _record_endpoints(store, cid, net["Name"], e)
    return 0


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Also when the container is not running")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container")
@click.pass_obj
def disconnect(obj, force: bool, network_name: str, container: str) -> int:
    """Disconnect a container from a network."""
    from pinnace.errors import Conflict
    from pinnace.network.bridge import detach_running

    nets = _nets(obj)
    net = nets.get(network_name)
    store = obj.store()
    cid = store.resolve(container)
    st = store.state(cid) or {}
    endpoints = (st.get("NetworkSettings") or {}).get("Networks") or {}
    if net["Name"] not in endpoints:
        raise Conflict(f"container {container} is not connected to network {net['Name']}")
    pid = (st.get("State") or {}).get("Pid") or 0 if (st.get("State") or {}).get("Running") else 0
    if not pid and not force:
        raise Conflict(f"container {container} is not running")
    detach_running(net, nets, store, cid, pid, store.paths(cid).dir, endpoints[net["Name"]].get("Interface", ""))
    _record_endpoints(store, cid, net["Name"], None)
    return 0


def _record_endpoints(store, cid: str, name: str, endpoint: dict | None) -> None:
    """Change one network's entry in the container's records (runtime and kept)."""
    import os

    from pinnace._jsonenc import loads
    from pinnace.network.bridge import write_down_script

    p = store.paths(cid)
    for path, write in ((p.runtime_file, store.write_runtime), (p.state_file, store.write_state)):
        try:
            with open(path, "rb") as f:
                rec = loads(f.read())
        except (OSError, ValueError):
            continue
        s = rec.setdefault("NetworkSettings", {})
        nets = s.setdefault("Networks", {})
        if endpoint is None:
            nets.pop(name, None)
        else:
            nets[name] = endpoint
        write(p, rec)
    # what the shim gives back when the container ends
    try:
        with open(p.runtime_file, "rb") as f:
            settings = loads(f.read()).get("NetworkSettings") or {}
    except (OSError, ValueError):
        return
    leases = [e["LeasePath"] for e in (settings.get("Networks") or {}).values() if e.get("LeasePath")]
    ports_dir = store.networks().ports_dir
    ports = []
    for key, binds in (settings.get("Ports") or {}).items():
        num, _, proto = key.partition("/")
        for b in binds or []:
            first = next(iter(settings["Networks"].values()), {})
            ports.append({"Proto": proto, "HostIp": b["HostIp"], "HostPort": int(b["HostPort"]), "Port": int(num),
                          "IP": first.get("IPAddress", "")})
    if os.path.isdir(ports_dir) or ports:
        write_down_script(store.networks(), p.dir, cid, leases, ports)


@click.command()
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_obj
def port(obj, container: str, private_port: str | None) -> int:
    """List a container's published ports (or where PRIVATE_PORT[/PROTO] is published)."""
    from pinnace.errors import UsageError

    store = obj.store()
    st = store.state(store.resolve(container)) or {}
    if not (st.get("State") or {}).get("Running"):
        return 0
    ports = (st.get("NetworkSettings") or {}).get("Ports") or {}
    if private_port:
        key = private_port if "/" in private_port else private_port + "/tcp"
        binds = ports.get(key)
        if not binds:
            raise UsageError(f"no public port '{key}' published for {container}")
        for b in binds:
            click.echo(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
        return 0
    for key, binds in ports.items():
        for b in binds or []:
            click.echo(f"{key} -> {b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
    return 0
