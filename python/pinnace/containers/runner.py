"""Run one container in the foreground: record, set up, run, clean up.

Shared by the CLI (stdio passed through, signals forwarded) and the Python
API (output captured). Everything that can be checked is checked before the
first directory is made; everything made is removed on every way out.
"""

from __future__ import annotations

import os
import sys

from pinnace import _core
from pinnace._jsonenc import dumps
from pinnace.config import RunOptions, build_spec, container_labels
from pinnace.containers import Store, in_background, new_id, now
from pinnace.images import Image
from pinnace.network import setup as netsetup


class Outcome:
    __slots__ = ("id", "name", "pid", "exit_code", "signal", "stdout", "stderr", "timed_out", "oom_killed",
                 "stats", "warnings")

    def __init__(self, *values):
        for k, v in zip(self.__slots__, values):
            setattr(self, k, v)


def _etc_files(p_dir: str, mode: str) -> dict[str, str]:
    """Per-container /etc files bound over the image's, as docker does
    (``mode`` is the network request's: host, none or bridge)."""
    files = {"/etc/hostname": os.path.join(p_dir, "hostname")}
    if mode == "host":
        for f in ("/etc/hosts", "/etc/resolv.conf"):
            if os.path.exists(f):
                files[f] = f
    else:
        files["/etc/hosts"] = os.path.join(p_dir, "hosts")
        if mode == "bridge":
            files["/etc/resolv.conf"] = os.path.join(p_dir, "resolv.conf")
    return files


def join_netns(spec: dict, path: str) -> None:
    """Point the spec's network namespace at one made beforehand."""
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = path


def shim_binary(store: Store) -> str:
    """The static pinnace-shim binary (written out of the extension under
    ``root/bin`` once): detached containers' supervisor, and --init's process."""
    return _core.shim_path(os.path.join(store.root, "bin"))


def prepare(store: Store, p, hostname: str, opts: RunOptions) -> int:
    """The container's directory (locked: returns the lock fd), its hostname
    file (``network.setup.up`` writes hosts and resolv.conf), and missing
    bind sources made as directories, as docker makes them."""
    lock_fd = store.create_dirs(p)
    with open(os.path.join(p.dir, "hostname"), "w") as f:
        f.write(hostname + "\n")
    for v in opts.volumes:
        src = v.split(":")[0]
        if not os.path.lexists(src):
            os.makedirs(src, exist_ok=True)
    return lock_fd


def initial_record(cid: str, name: str, image: Image, opts: RunOptions, spec: dict, p, hostname: str,
                   labels: dict) -> dict:
    """The docker-shaped record of a container about to start."""
    return {
        "Id": cid,
        "Name": "/" + name,
        "Created": now(),
        "Image": image.name,
        "ImageID": image.id,
        "Path": spec["process"]["args"][0],
        "Args": spec["process"]["args"][1:],
        "State": {"Status": "running", "Running": True, "Pid": 0, "ExitCode": 0, "OOMKilled": False,
                  "StartedAt": now(), "FinishedAt": "", "Error": ""},
        "Config": {"Tty": bool(opts.tty), "OpenStdin": bool(opts.interactive), "Hostname": hostname,
                   "Env": spec["process"]["env"],
                   "Cmd": opts.command if opts.command else (image.config.get("Cmd") if opts.entrypoint is None else None),
                   "StopSignal": image.config.get("StopSignal") or "SIGTERM",
                   "WorkingDir": spec["process"]["cwd"], "User": opts.user or image.config.get("User") or "",
                   "Image": image.name,
                   "Labels": labels, "ExposedPorts": image.config.get("ExposedPorts") or {},
                   "Entrypoint": opts.entrypoint if opts.entrypoint is not None else image.config.get("Entrypoint")},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(image.layers), "UpperDir": p.upper,
                                                     "WorkDir": p.work, "MergedDir": p.merged}},
        "HostConfig": {"AutoRemove": opts.remove, "NetworkMode": opts.network, "ReadonlyRootfs": opts.read_only,
                       "PortBindings": _port_bindings(opts), "PublishAllPorts": bool(opts.publish_all),
                       "Dns": list(opts.dns), "DnsSearch": list(opts.dns_search), "DnsOptions": list(opts.dns_option),
                       "ExtraHosts": list(opts.add_host) or None,
                       "Binds": list(opts.volumes), "CgroupParent": spec["linux"]["cgroupsPath"].rpartition("/")[0],
                       "CapAdd": list(opts.cap_add), "CapDrop": list(opts.cap_drop)},
        "CgroupPath": spec["linux"]["cgroupsPath"],
    }


def _port_bindings(opts: RunOptions) -> dict:
    from pinnace.network.setup import parse_publish

    out: dict = {}
    for spec in opts.publish:
        for p in parse_publish(spec):
            out.setdefault(f"{p['Port']}/{p['Proto']}", []).append(
                {"HostIp": "" if p["HostIp"] == "0.0.0.0" else p["HostIp"], "HostPort": str(p["HostPort"] or "")})
    return out


def net_request_options(opts: RunOptions) -> dict:
    """The options a network is made from, kept so ``start`` can make it again."""
    return {k: getattr(opts, k) for k in ("network", "publish", "publish_all", "ip", "add_host", "dns",
                                          "dns_search", "dns_option", "network_alias")}


def run(
    store: Store,
    image: Image,
    opts: RunOptions,
    *,
    stdin: int = _core.DEVNULL,
    stdout: int = _core.PIPE,
    stderr: int = _core.PIPE,
    input: bytes | None = None,
    forward_signals: bool = False,
    timeout: float | None = None,
    background_removal: bool = False,
    print_warnings: bool = False,
    on_started=None,
) -> Outcome:
    cid = new_id()
    p = store.paths(cid)
    # an in-process caller need not wait while the disk and the cgroup
    # hierarchy forget an auto-removed container
    background = background_removal and opts.remove
    hostname = opts.hostname or cid[:12]
    # The whole spec is built (and so validated) before anything exists on disk.
    # bridge networks only: none and host need no network store (nor its imports)
    nets = store.networks() if netsetup.mode_of(opts) == "bridge" else None
    netreq = netsetup.request(opts, image.config, nets)
    spec = build_spec(opts, image.config, image.layers, image.mounts, container_id=cid, rootfs=p.merged,
                      upper=p.upper, work=p.work, etc_files=_etc_files(p.dir, netreq.mode),
                      init_binary=shim_binary(store) if opts.init else None)
    labels = container_labels(image.config.get("Labels"), opts.labels)
    name = store.reserve_name(opts.name, cid)
    lock_fd = -1
    net = None
    try:
        lock_fd = prepare(store, p, hostname, opts)
        net = netsetup.up(netreq, nets, store, cid, name, hostname, p.dir, image.config.get("ExposedPorts"))
        if net.fd >= 0:
            join_netns(spec, f"/proc/self/fd/{net.fd}")
        state = initial_record(cid, name, image, opts, spec, p, hostname, labels)
        state["NetworkSettings"] = net.settings
        if print_warnings:
            for w in netreq.warnings:
                sys.stderr.write(f"WARNING: {w}\n")

        if not opts.remove:
            store.write_state(p, state)

        def record_pid(pid: int, warnings: list[str]) -> None:
            # Runs while the child is still setting up: the record appears
            # with its pid at no extra latency.
            if print_warnings:
                for w in warnings:
                    sys.stderr.write(f"WARNING: {w}\n")
            state["State"]["Pid"] = pid
            store.write_runtime(p, state)
            if on_started is not None:
                on_started()

        try:
            pid, (code, sig, out, err, timed_out, oom_killed, stats, warnings) = _core.run(
                dumps(spec), stdin, stdout, stderr,
                input=input, forward_signals=forward_signals, timeout=timeout, on_spawn=record_pid,
                keep_cgroup=background,
            )
        except Exception as e:
            if not opts.remove:
                state["State"].update(Status="exited", Running=False, ExitCode=getattr(e, "exit_code", 125),
                                      FinishedAt=now(), Error=str(e))
                store.write_state(p, state)
                store.clear_runtime(p)
            raise
        if not opts.remove:
            state["State"].update(Status="exited", Running=False, Pid=0, ExitCode=code, FinishedAt=now(),
                                  OOMKilled=oom_killed)
            store.write_state(p, state)
            store.clear_runtime(p)
        return Outcome(cid, name, pid, code, sig, out, err, timed_out, oom_killed, stats, warnings)
    finally:
        if net is not None:
            net.close()
            if netreq.mode == "bridge":
                from pinnace.network.bridge import release

                release(nets, store, cid)
        if opts.remove or not os.path.exists(p.state_file):
            store.release_name(name, cid)
            store.remove_dirs(p, background=background)
            if background:
                in_background(_core.cgroup_destroy, spec["linux"]["cgroupsPath"])
        if lock_fd >= 0:
            os.close(lock_fd)
