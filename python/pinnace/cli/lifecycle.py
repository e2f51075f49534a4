"""``pinnace stop|kill|wait|top|logs|inspect``: acting on containers that run
in another process (a detached container's supervisor, or a `pinnace run`)."""

from __future__ import annotations

import json
import sys

import click

from pinnace.errors import PinnaceError


def _each(refs, fn) -> int:
    """docker: act on each, report each failure on one line, exit 1 if any failed."""
    code = 0
    for ref in refs:
        try:
            fn(ref)
        except PinnaceError as e:
            click.echo(f"Error: {e}", err=True)
            code = 1
    return code


@click.command()
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing (default 10)")
@click.option("-s", "--signal", "sig", default=None, help="Signal to stop with (default: the image's, else SIGTERM)")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def stop(obj, timeout: float | None, sig: str | None, containers: tuple[str, ...]) -> int:
    """Stop running containers: the stop signal, then SIGKILL after a grace period."""
    from pinnace.containers import control

    store = obj.store()
    return _each(containers, lambda ref: (control.stop(store, ref, timeout, sig), click.echo(ref)))


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def kill(obj, sig: str, containers: tuple[str, ...]) -> int:
    """Send a signal to the first process of running containers."""
    from pinnace.containers import control

    control.parse_signal(sig)  # a bad signal is one usage error, not one per container
    store = obj.store()
    return _each(containers, lambda ref: (control.kill(store, ref, sig), click.echo(ref)))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(obj, containers: tuple[str, ...]) -> int:
    """Block until containers stop, then print their exit codes."""
    from pinnace.containers import control

    store = obj.store()
    return _each(containers, lambda ref: click.echo(control.wait(store, ref)))


@click.command()
@click.argument("container")
@click.argument("ps_args", nargs=-1)
@click.pass_obj
def top(obj, container: str, ps_args: tuple[str, ...]) -> int:
    """Show the processes running in a container."""
    from pinnace.containers import control

    rows = control.top(obj.store(), container)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end (default all)")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", default=None, help="Show logs since a time (RFC 3339, Unix time, or relative like 10m)")
@click.option("--until", default=None, help="Show logs before a time (same forms as --since)")
@click.argument("container")
@click.pass_obj
def logs(obj, follow: bool, tail: str, timestamps: bool, since: str | None, until: str | None, container: str) -> int:
    """Show a container's output: its stdout on stdout, its stderr on stderr."""
    from pinnace.containers.logs import lines, parse_since
    from pinnace.errors import UsageError

    store = obj.store()
    cid = store.resolve(container)
    st = store.state(cid) or {}
    path = st.get("LogPath")
    if not path:
        raise UsageError(f"container {container} has no log: only detached containers (run -d) keep one; "
                         "a foreground run's output went to its terminal")
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise UsageError(f"invalid --tail {tail!r}: expected a number or 'all'")
    n = None if tail == "all" or int(tail) < 0 else int(tail)
    p = store.paths(cid)
    follow_while = (lambda: store.owner_alive(p)) if follow else None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in lines(path, tail=n, timestamps=timestamps,
                              since=parse_since(since) if since else None,
                              until=parse_since(until) if until else None, follow_while=follow_while):
        target = err if stream == "stderr" else out
        target.write(data)
        if follow:
            target.flush()
    return 0


def inspect_container(st: dict) -> dict:
    """A container record shaped as ``docker inspect`` shows one."""
    cfg = st.get("Config") or {}
    host = st.get("HostConfig") or {}
    s = st.get("State") or {}
    mounts = []
    for b in host.get("Binds") or []:
        parts = b.split(":")
        mounts.append({"Type": "bind", "Source": parts[0], "Destination": parts[1] if len(parts) > 1 else "",
                       "Mode": parts[2] if len(parts) > 2 else "", "RW": not (len(parts) > 2 and "ro" in parts[2].split(",")),
                       "Propagation": "rprivate"})
    from pinnace.network import public_settings

    return {
        "Id": st.get("Id"),
        "Created": st.get("Created", ""),
        "Path": st.get("Path", ""),
        "Args": st.get("Args", []),
        "State": {
            "Status": s.get("Status", ""), "Running": bool(s.get("Running")), "Paused": False,
            "Restarting": False, "OOMKilled": bool(s.get("OOMKilled")), "Dead": False, "Pid": s.get("Pid", 0),
            "ExitCode": s.get("ExitCode", 0), "Error": s.get("Error", ""), "StartedAt": s.get("StartedAt", ""),
            "FinishedAt": s.get("FinishedAt", ""),
        },
        "Image": st.get("ImageID") or st.get("Image", ""),
        "LogPath": st.get("LogPath", ""),
        "Name": st.get("Name", ""),
        "RestartCount": st.get("RestartCount", 0),
        "Driver": "overlay",
        "HostConfig": host,
        "GraphDriver": st.get("GraphDriver") or {"Name": "overlay", "Data": {}},
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.get("Hostname", ""), "User": cfg.get("User", ""), "Env": cfg.get("Env", []),
            "Cmd": cfg.get("Cmd"), "Image": cfg.get("Image", st.get("Image", "")),
            "WorkingDir": cfg.get("WorkingDir", ""), "Entrypoint": cfg.get("Entrypoint"),
            "Labels": cfg.get("Labels") or {}, "ExposedPorts": cfg.get("ExposedPorts") or {},
            "StopSignal": cfg.get("StopSignal", "SIGTERM"), "Tty": bool(cfg.get("Tty")),
            "OpenStdin": bool(cfg.get("OpenStdin")),
        },
        "NetworkSettings": public_settings(st.get("NetworkSettings"), bool(s.get("Running"))),
        "CgroupPath": st.get("CgroupPath", ""),
    }


@click.command()
@click.option("--type", "kind", type=click.Choice(["container", "image"]), default=None, help="Only this kind of object")
@click.option("-f", "--format", "fmt", default=None, help="'json' (default) or a {{.Field.Sub}} path to print")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(obj, kind: str | None, fmt: str | None, names: tuple[str, ...]) -> int:
    """Show containers or images as docker-shaped JSON."""
    from pinnace.errors import ContainerNotFound, ImageNotFound
    from pinnace.images.store import ImageStore

    store = obj.store()
    out, missing = [], []
    for name in names:
        found = None
        if kind in (None, "container"):
            try:
                found = inspect_container(store.state(store.resolve(name)) or {})
            except ContainerNotFound:
                found = None
        if found is None and kind in (None, "image"):
            rec = ImageStore(obj.root).lookup(name)
            if rec is not None:
                from pinnace.cli.images import inspect_image

                found = inspect_image(ImageStore(obj.root), rec)
        if found is None:
            missing.append(name)
        else:
            out.append(found)
    echo_inspected(out, fmt)
    if missing:
        cls = ImageNotFound if kind == "image" else ContainerNotFound
        raise cls(f"no such object: {missing[0]}")
    return 0


def echo_inspected(out: list[dict], fmt: str | None) -> None:
    """Print inspect's objects: a JSON list, or each through a ``{{.Path}}`` template."""
    if fmt and fmt != "json":
        for o in out:
            click.echo(_template(fmt, o))
    else:
        click.echo(json.dumps(out, indent=4))


def _template(fmt: str, obj: dict) -> str:
    """The subset of Go templates people use with inspect: ``{{.State.Pid}}``,
    ``{{json .Config}}``, text around them."""
    import re

    def repl(m):
        as_json, path = m.group(1), m.group(2)
        v = obj
        for key in filter(None, path.split(".")):
            v = v.get(key) if isinstance(v, dict) else None
        if as_json:
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "<no value>"
        return json.dumps(v) if isinstance(v, (dict, list)) else str(v)

    return re.sub(r"\{\{\s*(json\s+)?\.([\w.]*)\s*\}\}", repl, fmt)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def start(obj, containers: tuple[str, ...]) -> int:
    """Start stopped containers again (in the background, as they were run with -d)."""
    from pinnace.containers.detached import restart_detached

    store = obj.store()
    return _each(containers, lambda ref: (restart_detached(store, store.resolve(ref)), click.echo(ref)))


@click.command()
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing (default 10)")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def restart(obj, timeout: float | None, containers: tuple[str, ...]) -> int:
    """Stop, then start containers again."""
    from pinnace.containers import control
    from pinnace.containers.detached import restart_detached

    store = obj.store()

    def one(ref: str) -> None:
        control.stop(store, ref, timeout)
        restart_detached(store, store.resolve(ref))
        click.echo(ref)

    return _each(containers, one)
