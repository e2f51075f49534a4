"""User options + image config -> one OCI runtime spec (config.json shape).

Everything a user can ask of ``run`` is checked here, before anything is
created on disk, so bad input fails with one line and leaves nothing behind.
"""

from __future__ import annotations

import os

from pinnace.containers import cgroup_path
from pinnace.errors import UsageError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: docker's default capability set (CapEff 0x00000000a80425fb)
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    # the container's own cgroups, read-only: programs size themselves by them
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]

RLIMITS = {
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack", "as",
}

#: where --init's process lives in the container (docker: /sbin/docker-init; /run
#: rather than /sbin, which may be a read-only bind, as in the host image)
INIT_PATH = "/run/pinnace-init"
#: with ``init``: the init alone, idle (a sandbox waiting for execs): it
#: reaps orphans and exits 0 at SIGTERM, so a stop takes no grace period
IDLE_COMMAND = [INIT_PATH, "--pause"]


class RunOptions:
    """What ``pinnace run`` and ``pinnace.run`` accept; names follow the CLI flags.

    A plain class rather than a dataclass: importing dataclasses costs the
    CLI's fast path more than running a container does.
    """

    DEFAULTS: dict = {
        "command": None, "entrypoint": None, "name": None, "env": (), "env_file": (), "workdir": None,
        "user": None, "hostname": None, "network": "bridge", "volumes": (), "tmpfs": (), "read_only": False,
        "remove": False, "cap_add": (), "cap_drop": (), "ulimits": (), "cgroupns": None,
        "interactive": False, "memory": None, "memory_swap": None, "memory_reservation": None, "cpus": None,
        "cpu_shares": None, "cpuset_cpus": None, "pids_limit": None, "blkio_weight": None,
        "device_read_bps": (), "device_write_bps": (), "group_add": (), "labels": (), "tty": False, "init": False,
        "publish": (), "publish_all": False, "ip": None, "add_host": (), "dns": (), "dns_search": (),
        "dns_option": (), "network_alias": (), "volatile": False,
    }

    command: list[str] | None
    entrypoint: list[str] | None
    name: str | None
    env: list[str]
    env_file: list[str]
    workdir: str | None
    user: str | None
    hostname: str | None
    network: str
    volumes: list[str]
    tmpfs: list[str]
    read_only: bool
    remove: bool
    cap_add: list[str]
    cap_drop: list[str]
    ulimits: list[str]
    cgroupns: str | None
    memory: str | int | None
    memory_swap: str | int | None
    memory_reservation: str | int | None
    cpus: str | float | None
    cpu_shares: str | int | None
    cpuset_cpus: str | None
    pids_limit: str | int | None
    blkio_weight: str | int | None
    device_read_bps: list[str]
    device_write_bps: list[str]
    group_add: list[str]
    labels: list[str] | dict[str, str]
    interactive: bool
    tty: bool
    init: bool
    publish: list[str]
    publish_all: bool
    ip: str | None
    add_host: list[str]
    dns: list[str]
    dns_search: list[str]
    dns_option: list[str]
    network_alias: list[str]
    #: the root filesystem's writes need not outlive a crash of the host (an
    #: overlay ``volatile`` mount: no disk flush when it is unmounted), as an
    #: auto-removed container's; the pytest plugin's sandboxes are
    volatile: bool

    def __init__(self, **values):
        unknown = set(values) - set(self.DEFAULTS)
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
        for k, default in self.DEFAULTS.items():
            v = values.get(k, default)
            setattr(self, k, list(v) if isinstance(v, tuple) else v)


TYPE_CHECKING = False  # typing and collections.abc cost the CLI's fast path milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


def env_list(env: Iterable[str] | Mapping[str, str] | None) -> list[str]:
    if env is None:
        return []
    from collections.abc import Mapping

    if isinstance(env, Mapping):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def parse_env(items: Iterable[str]) -> list[str]:
    """``K=V`` as given; a bare ``K`` takes the caller's value, as docker does."""
    out = []
    for item in items:
        key, eq, _ = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable: {item!r}")
        if eq:
            out.append(item)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def read_env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"env file {path}: {e.strerror.lower()}") from None
    return parse_env(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def merge_env(*layers: Iterable[str]) -> list[str]:
    """Later layers win; order of first appearance is kept."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            k, _, v = item.partition("=")
            merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


def container_labels(image_labels: Mapping[str, str] | None, labels: Iterable[str] | Mapping[str, str]) -> dict:
    """The image's labels overlaid with the user's (KEY=VALUE, or KEY for an empty value)."""
    out = dict(image_labels or {})
    if isinstance(labels, dict):
        out.update({str(k): str(v) for k, v in labels.items()})
        return out
    for item in labels:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_volume(spec: str) -> dict:
    """``SRC:DST[:ro|rw]`` with an absolute host SRC (created when missing, like docker)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume specification: {spec!r}")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    opts = [o for o in mode.split(",") if o]
    if not set(opts) <= {"ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave"}:
        raise UsageError(f"invalid volume specification: {spec!r}: unknown mode {mode!r}")
    if not os.path.isabs(src):
        raise UsageError(f"invalid volume specification: {spec!r}: source must be an absolute host path (named volumes are not supported yet)")
    if not os.path.isabs(dst):
        raise UsageError(f"invalid volume specification: {spec!r}: destination must be an absolute path")
    if ".." in dst.split("/"):
        raise UsageError(f"invalid volume specification: {spec!r}: destination must not contain '..'")
    options = ["rbind", "ro" if "ro" in opts else "rw"]
    options += [o for o in opts if o not in ("ro", "rw", "z", "Z")] or ["rprivate"]
    return {"destination": os.path.normpath(dst), "type": "bind", "source": os.path.normpath(src), "options": options}


def parse_tmpfs(spec: str) -> dict:
    dst, _, opts = spec.partition(":")
    if not os.path.isabs(dst):
        raise UsageError(f"invalid tmpfs specification: {spec!r}: destination must be an absolute path")
    options = ["nosuid", "nodev", "noexec", "size=65536k"] if not opts else []
    options += [o for o in opts.split(",") if o]
    return {"destination": os.path.normpath(dst), "type": "tmpfs", "source": "tmpfs", "options": options}


def parse_ulimit(spec: str) -> dict:
    name, eq, value = spec.partition("=")
    soft, _, hard = value.partition(":")
    try:
        if not eq or name not in RLIMITS:
            raise ValueError
        s = -1 if soft in ("-1", "unlimited") else int(soft)
        h = s if not hard else (-1 if hard in ("-1", "unlimited") else int(hard))
    except ValueError:
        raise UsageError(f"invalid ulimit: {spec!r} (want NAME=SOFT[:HARD], e.g. nofile=1024:2048)") from None
    big = 2**64 - 1
    s, h = (big if s < 0 else s), (big if h < 0 else h)
    if s > h:
        raise UsageError(f"invalid ulimit: {spec!r}: soft limit is above the hard limit")
    return {"type": f"RLIMIT_{name.upper()}", "soft": s, "hard": h}


def _lookup(layers: list[str], file: str, key: str, field_no: int) -> tuple[int, int] | None:
    """Find ``key`` (a name or number) in /etc/passwd or /etc/group of the topmost layer that has it."""
    for layer in layers:
        try:
            with open(os.path.join(layer, "etc", file)) as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) > field_no and (parts[0] == key or parts[2] == key):
                        return int(parts[2]), int(parts[3]) if file == "passwd" else int(parts[2])
        except (OSError, ValueError):
            continue
        return None
    return None


def parse_user(spec: str, layers: list[str]) -> dict:
    """``uid[:gid]`` or ``name[:group]``, names looked up in the image's /etc files."""
    user, _, group = spec.partition(":")
    if not user:
        raise UsageError(f"invalid user {spec!r}")
    found = _lookup(layers, "passwd", user, 3)
    if user.isdigit():
        uid, gid = int(user), (found[1] if found else 0)
    elif found:
        uid, gid = found
    else:
        raise UsageError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = _lookup(layers, "group", group, 2)
            if not g:
                raise UsageError(f"unable to find group {group}: no matching entries in group file")
            gid = g[0]
    return {"uid": uid, "gid": gid}


def _etc_lines(layers: list[str], file: str) -> list[list[str]]:
    """The fields of each line of /etc/FILE in the topmost layer that has it."""
    for layer in layers:
        try:
            with open(os.path.join(layer, "etc", file)) as f:
                return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
        except OSError:
            continue
    return []


def supplementary_groups(uid: int, gid: int, group_add: Iterable[str], layers: list[str]) -> list[int]:
    """The user's groups from the image's /etc/group, plus --group-add, as docker sets them."""
    names = [p[0] for p in _etc_lines(layers, "passwd") if len(p) > 2 and p[2] == str(uid)]
    groups = _etc_lines(layers, "group")
    out: list[int] = []
    for g in groups:
        if len(g) > 3 and names and names[0] in g[3].split(",") and g[2].isdigit():
            out.append(int(g[2]))
    for want in group_add:
        if want.isdigit():
            out.append(int(want))
            continue
        match = [int(g[2]) for g in groups if len(g) > 2 and g[0] == want and g[2].isdigit()]
        if not match:
            raise UsageError(f"unable to find group {want}: no matching entries in group file")
        out.append(match[0])
    return sorted({g for g in out if g != gid})


def home_of(uid: int, layers: list[str]) -> str:
    for layer in layers:
        try:
            with open(os.path.join(layer, "etc", "passwd")) as f:
                for line in f:
                    parts = line.split(":")
                    if len(parts) > 5 and parts[2] == str(uid):
                        return parts[5]
        except OSError:
            continue
        break
    return "/root" if uid == 0 else "/"


def capabilities(add: Iterable[str], drop: Iterable[str]) -> list[str]:
    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") else "CAP_" + c

    caps = list(DEFAULT_CAPS)
    drop = [norm(c) for c in drop]
    if "CAP_ALL" in drop:
        caps = []
    caps = [c for c in caps if c not in drop]
    for c in map(norm, add):
        if c == "CAP_ALL":
            caps = list(ALL_CAPS)
        elif c not in ALL_CAPS:
            raise UsageError(f"unknown capability: {c}")
        elif c not in caps:
            caps.append(c)
    return caps


_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: str | int, flag: str) -> int:
    """docker's sizes: a number with an optional b, k, m or g (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        v = str(value).strip().lower()
        if v.endswith("b") and len(v) > 1 and v[-2] in _UNITS:
            v = v[:-1]  # "100mb"
        unit = _UNITS.get(v[-1:], None) if v else None
        num = v[:-1] if unit else v
        try:
            n = int(float(num) * (unit or 1))
            if not num or float(num) < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"invalid value {value!r} for {flag}: want a size like 512m or 2g") from None
    if n < 0:
        raise UsageError(f"invalid value {value!r} for {flag}: must not be negative")
    return n


def _int(value, flag: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"invalid value {value!r} for {flag}: want a whole number") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
        raise UsageError(f"invalid value {value!r} for {flag}: must be {rng}")
    return n


def _cpu_list(value: str, flag: str) -> str:
    ok = bool(value)
    for part in value.split(","):
        a, _, b = part.partition("-")
        ok = ok and a.isdigit() and (not b or (b.isdigit() and int(b) >= int(a)))
    if not ok:
        raise UsageError(f"invalid value {value!r} for {flag}: want a list like 0-2,4")
    return value


def _throttle(spec: str, flag: str) -> dict:
    dev, sep, rate = spec.rpartition(":")
    if not sep or not dev:
        raise UsageError(f"invalid value {spec!r} for {flag}: want DEVICE:RATE, e.g. /dev/sda:10mb")
    try:
        st = os.stat(dev)
    except OSError as e:
        raise UsageError(f"invalid value {spec!r} for {flag}: {dev}: {e.strerror.lower()}") from None
    import stat as stat_mod

    if not stat_mod.S_ISBLK(st.st_mode):
        raise UsageError(f"invalid value {spec!r} for {flag}: {dev} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "rate": parse_bytes(rate, flag)}


def resources(opts: RunOptions) -> dict:
    """docker's resource flags -> the runtime spec's linux.resources."""
    r: dict = {}
    mem: dict = {}
    if opts.memory is not None:
        mem["limit"] = parse_bytes(opts.memory, "--memory")
        if mem["limit"] < 6 << 20:
            raise UsageError("minimum memory limit allowed is 6MB (--memory)")
    if opts.memory_swap is not None:
        swap = -1 if str(opts.memory_swap).strip() == "-1" else parse_bytes(opts.memory_swap, "--memory-swap")
        if "limit" not in mem:
            raise UsageError("you should always set --memory with --memory-swap")
        if swap != -1 and swap < mem["limit"]:
            raise UsageError("--memory-swap must be at least --memory (it counts memory plus swap)")
        mem["swap"] = swap
    elif "limit" in mem:
        mem["swap"] = mem["limit"] * 2  # docker: as much swap as memory
    if opts.memory_reservation is not None:
        mem["reservation"] = parse_bytes(opts.memory_reservation, "--memory-reservation")
        if "limit" in mem and mem["reservation"] > mem["limit"]:
            raise UsageError("--memory-reservation must be below --memory")
    if mem:
        r["memory"] = mem
    cpu: dict = {}
    if opts.cpus is not None:
        try:
            cpus = float(opts.cpus)
        except (TypeError, ValueError):
            cpus = -1.0
        ncpu = os.cpu_count() or 1
        if not 0.01 <= cpus <= ncpu:
            raise UsageError(f"invalid value {opts.cpus!r} for --cpus: the range of CPUs is from 0.01 to {ncpu}")
        cpu.update(period=100000, quota=int(round(cpus * 100000)))
    if opts.cpu_shares is not None:
        cpu["shares"] = _int(opts.cpu_shares, "--cpu-shares", 2, 262144)
    if opts.cpuset_cpus is not None:
        cpu["cpus"] = _cpu_list(str(opts.cpuset_cpus), "--cpuset-cpus")
    if cpu:
        r["cpu"] = cpu
    if opts.pids_limit is not None:
        r["pids"] = {"limit": _int(opts.pids_limit, "--pids-limit", -1)}
    blkio: dict = {}
    if opts.blkio_weight is not None:
        w = _int(opts.blkio_weight, "--blkio-weight", 0, 1000)
        if 0 < w < 10:
            raise UsageError(f"invalid value {opts.blkio_weight!r} for --blkio-weight: must be 0 or from 10 to 1000")
        if w:
            blkio["weight"] = w
    if opts.device_read_bps:
        blkio["throttleReadBpsDevice"] = [_throttle(d, "--device-read-bps") for d in opts.device_read_bps]
    if opts.device_write_bps:
        blkio["throttleWriteBpsDevice"] = [_throttle(d, "--device-write-bps") for d in opts.device_write_bps]
    if blkio:
        r["blockIO"] = blkio
    return r


def _sort_mounts(mounts: list[dict]) -> list[dict]:
    """Parents before children, as docker orders them; stable otherwise."""
    return sorted(mounts, key=lambda m: m["destination"].rstrip("/").count("/"))


def build_spec(
    opts: RunOptions,
    image_config: dict,
    layers: list[str],
    image_mounts: list[dict],
    *,
    container_id: str,
    rootfs: str,
    upper: str,
    work: str,
    etc_files: dict[str, str],
    init_binary: str | None = None,
) -> dict:
    """The runtime spec for one container. ``init_binary`` (with ``opts.init``)
    is bound into it as ``INIT_PATH`` and runs the command."""
    cfg = image_config or {}
    entrypoint = opts.entrypoint if opts.entrypoint is not None else (cfg.get("Entrypoint") or [])
    if opts.command:
        cmd = list(opts.command)
    elif opts.entrypoint is not None:
        cmd = []
    else:
        cmd = cfg.get("Cmd") or []
    args = list(entrypoint) + cmd
    if not args:
        raise UsageError("no command specified")
    if opts.init:
        if not init_binary:
            raise UsageError("--init is not available here")
        if args != IDLE_COMMAND:
            args = [INIT_PATH, "--"] + args

    user = parse_user(opts.user, layers) if opts.user else (parse_user(cfg["User"], layers) if cfg.get("User") else {"uid": 0, "gid": 0})
    hostname = opts.hostname or container_id[:12]
    # docker reads --env-file first and lets -e override it
    user_env = [e for f in opts.env_file for e in read_env_file(f)] + parse_env(opts.env)
    env = merge_env(
        [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if opts.tty else []),
        cfg.get("Env") or [],
        [f"HOME={home_of(user['uid'], layers)}"] if not any(e.startswith("HOME=") for e in (cfg.get("Env") or []) + user_env) else [],
        user_env,
    )
    cwd = opts.workdir or cfg.get("WorkingDir") or "/"
    if not os.path.isabs(cwd):
        raise UsageError(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")

    caps = capabilities(opts.cap_add, opts.cap_drop)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if opts.network != "host":
        namespaces.append({"type": "network"})
    cgroupns = opts.cgroupns
    if cgroupns is None:
        # docker's default: a private cgroup namespace on cgroup v2 hosts
        from pinnace import _core

        cgroupns = "private" if _core.cgroup_mode() == "v2" else "host"
    if cgroupns == "private":
        namespaces.append({"type": "cgroup"})
    elif cgroupns != "host":
        raise UsageError(f"invalid --cgroupns {opts.cgroupns!r} (want host or private)")

    mounts = [{
        "destination": "/", "type": "overlay", "source": "overlay",
        "options": [f"lowerdir={':'.join(layers)}", f"upperdir={upper}", f"workdir={work}"]
        # An auto-removed container's writes are thrown away: skip the
        # upper filesystem sync at unmount, which costs a disk flush.
        + (["volatile"] if opts.remove or opts.volatile else []),
    }]
    mounts += DEFAULT_MOUNTS
    mounts += image_mounts
    extra = [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro" if dst == "/etc/resolv.conf" and opts.network == "host" else "rw"]}
             for dst, src in etc_files.items()]
    user_mounts = [parse_volume(v) for v in opts.volumes] + [parse_tmpfs(t) for t in opts.tmpfs]
    if opts.init:
        extra.append({"destination": INIT_PATH, "type": "bind", "source": init_binary, "options": ["rbind", "ro"]})
    mounts += _sort_mounts(extra + user_mounts)

    linux: dict = {
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "cgroupsPath": cgroup_path(container_id),
        "resources": resources(opts),
    }
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(opts.tty),
            "user": {**user, "additionalGids": supplementary_groups(user["uid"], user["gid"], opts.group_add, layers)},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [parse_ulimit(u) for u in opts.ulimits],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": bool(opts.read_only)},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
