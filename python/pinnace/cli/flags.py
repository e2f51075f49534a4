"""The flags of ``pinnace run``, declared once.

Both the click command (help, errors, completion) and the fast path that
runs containers without importing click read this table, so they cannot
drift apart.
"""

from __future__ import annotations

# (flag names, destination, kind, help); kind is "bool", "one" or "many"
RUN_FLAGS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("--rm",), "remove", "bool", "Remove the container when it exits"),
    (("--name",), "name", "one", "Name the container"),
    (("-e", "--env"), "env", "many", "Set an environment variable (K=V, or K to copy it from here)"),
    (("--env-file",), "env_file", "many", "Read environment variables from a file"),
    (("-w", "--workdir"), "workdir", "one", "Working directory inside the container"),
    (("-u", "--user"), "user", "one", "User to run as: UID[:GID] or NAME[:GROUP]"),
    (("--group-add",), "group_add", "many", "Add an additional group to join"),
    (("-h", "--hostname"), "hostname", "one", "Container host name"),
    (("--network", "--net"), "network", "one", "Network: bridge (the default), a network's name, host or none"),
    (("-p", "--publish"), "publish", "many", "Publish a port: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"),
    (("-P", "--publish-all"), "publish_all", "bool", "Publish every port the image exposes on a free host port"),
    (("--ip",), "ip", "one", "IPv4 address on the network (user-defined networks)"),
    (("--network-alias",), "network_alias", "many", "Another name for the container on its network"),
    (("--add-host",), "add_host", "many", "Add a line to /etc/hosts: NAME:IP (IP may be host-gateway)"),
    (("--dns",), "dns", "many", "Set a DNS server"),
    (("--dns-search",), "dns_search", "many", "Set a DNS search domain"),
    (("--dns-option",), "dns_option", "many", "Set a DNS option"),
    (("-v", "--volume"), "volumes", "many", "Bind mount a host path: SRC:DST[:ro]"),
    (("--tmpfs",), "tmpfs", "many", "Mount a tmpfs: DST[:OPTIONS]"),
    (("--read-only",), "read_only", "bool", "Mount the container's root filesystem read-only"),
    (("-i", "--interactive"), "interactive", "bool", "Keep stdin attached"),
    (("-t", "--tty"), "tty", "bool", "Allocate a pseudo-terminal"),
    (("--init",), "init", "bool", "Run an init inside that forwards signals and reaps zombies"),
    (("-d", "--detach"), "detach", "bool", "Run in the background under its own supervisor; print its id"),
    (("--entrypoint",), "entrypoint", "one", "Override the image's entrypoint"),
    (("--cap-add",), "cap_add", "many", "Add a Linux capability"),
    (("--cap-drop",), "cap_drop", "many", "Drop a Linux capability"),
    (("--ulimit",), "ulimits", "many", "Set a resource limit: NAME=SOFT[:HARD]"),
    (("--cgroupns",), "cgroupns", "one", "Cgroup namespace: host or private"),
    (("--rootfs",), "rootfs", "one", "Run from an unpacked root filesystem instead of an image"),
    (("--pull",), "pull", "one", "Pull the image before running: missing (default), always or never"),
    (("--platform",), "platform", "one", "Platform to pull if the image is missing: OS/ARCH[/VARIANT]"),
    (("-l", "--label"), "labels", "many", "Set a label on the container: KEY=VALUE"),
    (("--root",), "root", "one", "Directory for persistent state (a global option, allowed here too)"),
    (("--runroot",), "runroot", "one", "Directory for runtime state (a global option, allowed here too)"),
    (("-m", "--memory"), "memory", "one", "Memory limit (e.g. 512m, 2g)"),
    (("--memory-swap",), "memory_swap", "one", "Memory plus swap limit; -1 for unlimited swap"),
    (("--memory-reservation",), "memory_reservation", "one", "Memory soft limit"),
    (("--cpus",), "cpus", "one", "Number of CPUs (e.g. 0.5)"),
    (("-c", "--cpu-shares"), "cpu_shares", "one", "CPU shares (relative weight)"),
    (("--cpuset-cpus",), "cpuset_cpus", "one", "CPUs in which to allow execution (0-3, 0,1)"),
    (("--pids-limit",), "pids_limit", "one", "Tune container pids limit (-1 for unlimited)"),
    (("--blkio-weight",), "blkio_weight", "one", "Block IO relative weight, from 10 to 1000, or 0 to disable"),
    (("--device-read-bps",), "device_read_bps", "many", "Limit read rate from a device (DEVICE:RATE)"),
    (("--device-write-bps",), "device_write_bps", "many", "Limit write rate to a device (DEVICE:RATE)"),
)

GLOBAL_FLAGS = (("--root", "root"), ("--runroot", "runroot"))

def hoist_globals(argv: list[str]) -> list[str]:
    """Let --root/--runroot follow the subcommand too, as podman's global
    flags may: move them to the front (up to a `--`). `run` takes them as
    its own flags instead, since after its image everything is the command."""
    names = {n for n, _ in GLOBAL_FLAGS}
    front: list[str] = []
    rest: list[str] = []
    i = 0
    seen_command = False
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        name = a.partition("=")[0]
        if name in names:
            take = 1 if "=" in a else 2
            front += argv[i:i + take]
            i += take
            continue
        if not seen_command and not a.startswith("-"):
            seen_command = True
            if a == "run":
                rest += argv[i:]
                break
        rest.append(a)
        i += 1
    return front + rest


_BY_NAME = {name: (dest, kind) for names, dest, kind, _ in RUN_FLAGS for name in names}


def fast_parse(argv: list[str]) -> tuple[dict, list[str]] | None:
    """Parse ``run``'s arguments; None when click must handle them (help, errors)."""
    values: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            spec = _BY_NAME.get(name)
            if spec is None:
                return None
            dest, kind = spec
            if kind == "bool":
                if eq:
                    if value not in ("true", "false"):
                        return None
                    values[dest] = value == "true"
                else:
                    values[dest] = True
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            i += 1
        else:
            # -abc: bool flags bundled, or -eVALUE / -e VALUE
            j = 1
            value = None
            dest = kind = None
            while j < len(arg):
                spec = _BY_NAME.get("-" + arg[j])
                if spec is None:
                    return None
                dest, kind = spec
                if kind == "bool":
                    values[dest] = True
                    j += 1
                    continue
                value = arg[j + 1:]
                break
            i += 1
            if kind == "bool" or dest is None:
                continue
            if not value:
                if i >= len(argv):
                    return None
                value = argv[i]
                i += 1
        if kind == "many":
            values.setdefault(dest, []).append(value)
        else:
            values[dest] = value
    return values, argv[i:]
