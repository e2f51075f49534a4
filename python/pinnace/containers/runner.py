"""Run one container in the foreground: record, set up, run, clean up.

Shared by the CLI (stdio passed through, signals forwarded) and the Python
API (output captured). Everything that can be checked is checked before the
first directory is made; everything made is removed on every way out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pinnace import _core
from pinnace.config import RunOptions, build_spec
from pinnace.containers import Store, new_id, now
from pinnace.images import Image


@dataclass
class Outcome:
    id: str
    name: str
    pid: int
    exit_code: int
    signal: int | None
    stdout: bytes | None
    stderr: bytes | None
    timed_out: bool


def _etc_files(p_dir: str, hostname: str, network: str) -> dict[str, str]:
    """Per-container /etc files, bound over the image's, as docker does."""
    if network == "host":
        files = {"/etc/hostname": os.path.join(p_dir, "hostname")}
        with open(files["/etc/hostname"], "w") as f:
            f.write(hostname + "\n")
        if os.path.exists("/etc/hosts"):
            files["/etc/hosts"] = "/etc/hosts"
        if os.path.exists("/etc/resolv.conf"):
            files["/etc/resolv.conf"] = "/etc/resolv.conf"
        return files
    files = {"/etc/hostname": os.path.join(p_dir, "hostname"), "/etc/hosts": os.path.join(p_dir, "hosts")}
    with open(files["/etc/hostname"], "w") as f:
        f.write(hostname + "\n")
    with open(files["/etc/hosts"], "w") as f:
        f.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
    return files


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
) -> Outcome:
    cid = new_id()
    p = store.paths(cid)
    hostname = opts.hostname or cid[:12]
    # Validate the whole spec before anything exists on disk.
    spec = build_spec(opts, image.config, image.layers, image.mounts, container_id=cid, rootfs=p.merged,
                      upper=p.upper, work=p.work, etc_files={})
    name = store.reserve_name(opts.name, cid)
    lock_fd = -1
    try:
        store.create_dirs(p)
        etc = _etc_files(p.dir, hostname, opts.network)
        spec = build_spec(opts, image.config, image.layers, image.mounts, container_id=cid, rootfs=p.merged,
                          upper=p.upper, work=p.work, etc_files=etc)
        for v in opts.volumes:
            # docker creates a missing bind source as a directory
            src = v.split(":")[0]
            if not os.path.lexists(src):
                os.makedirs(src, exist_ok=True)
        lock_fd = store.lock(p)
        state = {
            "Id": cid,
            "Name": "/" + name,
            "Created": now(),
            "Image": image.name,
            "Path": spec["process"]["args"][0],
            "Args": spec["process"]["args"][1:],
            "State": {"Status": "running", "Running": True, "Pid": 0, "ExitCode": 0,
                      "StartedAt": now(), "FinishedAt": "", "Error": ""},
            "Config": {"Hostname": hostname, "Env": spec["process"]["env"], "Cmd": opts.command,
                       "WorkingDir": spec["process"]["cwd"], "User": opts.user or "", "Image": image.name},
            "HostConfig": {"AutoRemove": opts.remove, "NetworkMode": opts.network, "ReadonlyRootfs": opts.read_only,
                           "Binds": list(opts.volumes)},
        }
        store.write_state(p, state)

        def record_pid(pid: int) -> None:
            state["State"]["Pid"] = pid
            store.write_state(p, state)

        try:
            pid, (code, sig, out, err, timed_out) = _core.run(
                json.dumps(spec), stdin, stdout, stderr,
                input=input, forward_signals=forward_signals, timeout=timeout, on_spawn=record_pid,
            )
        except Exception as e:
            if not opts.remove:
                state["State"].update(Status="exited", Running=False, ExitCode=getattr(e, "exit_code", 125),
                                      FinishedAt=now(), Error=str(e))
                store.write_state(p, state)
            raise
        if not opts.remove:
            state["State"].update(Status="exited", Running=False, Pid=0, ExitCode=code, FinishedAt=now())
            store.write_state(p, state)
        return Outcome(cid, name, pid, code, sig, out, err, timed_out)
    finally:
        if opts.remove or not os.path.exists(p.state_file):
            store.release_name(name, cid)
            store.remove_dirs(p)
        if lock_fd >= 0:
            os.close(lock_fd)
