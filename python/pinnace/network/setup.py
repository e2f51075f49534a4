"""One container's network: the checked request, and host/none networks.

``request()`` checks every network option before anything exists. ``up()``
makes what the container's network needs: for ``none`` its ``hosts`` file,
for ``host`` nothing; a bridge network is made by :mod:`pinnace.network.bridge`
(loaded only then: ``pinnace run --network none`` pays for none of it).
"""

from __future__ import annotations

import os

from pinnace.errors import UsageError
from pinnace.network import DEFAULT, MODES, ip_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pinnace.network.store import Networks

DOWN_SCRIPT = "net-down.sh"
#: the files a detached container's shim deletes when it ends (its leases)
DOWN_FILES = "net-down.files"
LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class Request:
    """What a container asked for, checked."""

    __slots__ = ("mode", "nets", "ports", "dns", "dns_search", "dns_options", "extra_hosts", "warnings")

    def __init__(self, mode: str):
        self.mode = mode            # "bridge" (any bridge network), "host" or "none"
        self.nets: list[tuple[dict, list[str], str | None]] = []   # (network, aliases, wanted address)
        self.ports: list[dict] = []  # {"Proto", "HostIp", "HostPort" (0: any free), "Port"}
        self.dns: list[str] = []
        self.dns_search: list[str] = []
        self.dns_options: list[str] = []
        self.extra_hosts: list[tuple[str, str]] = []
        self.warnings: list[str] = []


def _port(s: str, what: str) -> tuple[int, int]:
    lo, dash, hi = s.partition("-")
    try:
        a, b = int(lo), int(hi) if dash else int(lo)
    except ValueError:
        raise UsageError(f"invalid {what} {s!r}") from None
    if not (0 < a <= b <= 65535):
        raise UsageError(f"invalid {what} {s!r}: ports are 1 to 65535")
    return a, b


def parse_publish(spec: str) -> list[dict]:
    """docker's -p: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO], ranges allowed."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid protocol {proto!r} in -p {spec}: want tcp or udp")
    if body.startswith("["):
        raise UsageError(f"-p {spec}: IPv6 host addresses are not supported")
    parts = body.split(":")
    if len(parts) == 1:
        host_ip, host, ctr = "", "", parts[0]
    elif len(parts) == 2:
        host_ip, host, ctr = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host, ctr = parts
    else:
        raise UsageError(f"invalid -p {spec!r}: want [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]")
    if host_ip:
        ip_int(host_ip)
    c0, c1 = _port(ctr, "container port")
    if host:
        h0, h1 = _port(host, "host port")
        if h1 - h0 != c1 - c0 and h0 != h1:
            raise UsageError(f"invalid -p {spec!r}: host and container port ranges differ in size")
    else:
        h0 = h1 = 0
    out = []
    for i, c in enumerate(range(c0, c1 + 1)):
        hp = 0 if not host else (h0 + i if h1 > h0 else h0)
        out.append({"Proto": proto, "HostIp": host_ip or "0.0.0.0", "HostPort": hp, "Port": c})
    return out


def _is_ip(s: str) -> bool:
    import socket

    try:
        socket.inet_pton(socket.AF_INET6 if ":" in s else socket.AF_INET, s)
        return True
    except OSError:
        return False


def _parse_add_host(s: str) -> tuple[str, str]:
    name, sep, ip = s.partition(":") if "=" not in s else s.partition("=")
    if not sep or not name or not ip or not _valid_hostname(name):
        raise UsageError(f"invalid --add-host {s!r}: want NAME:IP")
    if ip != "host-gateway" and not _is_ip(ip):
        raise UsageError(f"invalid --add-host {s!r}: {ip!r} is not an IP address")
    return name, ip


def _valid_hostname(name: str) -> bool:
    """A name that may go into /etc/hosts: letters, digits, '.', '-', '_'."""
    return bool(name) and len(name) <= 253 and name[0].isalnum() and all(
        c.isascii() and (c.isalnum() or c in "._-") for c in name)


def mode_of(opts) -> str:
    """"host", "none" or "bridge" (any bridge network) for ``opts.network``."""
    mode = opts.network or DEFAULT
    return mode if mode in MODES else "bridge"


def request(opts, image_config: dict, nets: Networks | None) -> Request:
    """``nets`` is needed (and so only made by the caller) for bridge networks."""
    mode = opts.network or DEFAULT
    for alias in opts.network_alias:
        if not _valid_hostname(alias):
            raise UsageError(f"invalid --network-alias {alias!r}: letters, digits, '.', '-' and '_' only")
    r = Request(mode_of(opts))
    r.extra_hosts = [_parse_add_host(h) for h in opts.add_host]
    for d in opts.dns:
        if not _is_ip(d):
            raise UsageError(f"invalid --dns {d!r}: not an IP address")
    r.dns, r.dns_search, r.dns_options = list(opts.dns), list(opts.dns_search), list(opts.dns_option)
    ports = [p for spec in opts.publish for p in parse_publish(spec)]
    if opts.publish_all:
        for key in (image_config or {}).get("ExposedPorts") or {}:
            num, _, proto = key.partition("/")
            if not any(p["Port"] == int(num) and p["Proto"] == (proto or "tcp") for p in ports):
                ports.append({"Proto": proto or "tcp", "HostIp": "0.0.0.0", "HostPort": 0, "Port": int(num)})
    if r.mode != "bridge":
        if ports:
            r.warnings.append(f"published ports are discarded when using {r.mode} network mode")
        if opts.ip or opts.network_alias:
            raise UsageError(f"--ip and --network-alias need a bridge network, not --network {r.mode}")
        return r
    assert nets is not None, "a bridge network needs the caller's Networks"
    net = nets.get(mode)
    if (opts.ip or opts.network_alias) and net["Name"] == DEFAULT:
        raise UsageError("--ip and --network-alias are supported only on user-defined networks "
                         "(pinnace network create NAME)")
    r.nets.append((net, list(opts.network_alias), opts.ip or None))
    r.ports = ports
    return r


# -- up -----------------------------------------------------------------------


class Attached:
    """A container's network as made by ``up``: the namespace fd (or -1),
    docker's NetworkSettings, the published ports."""

    def __init__(self, fd: int, settings: dict, ports: list[dict]):
        self.fd = fd
        self.settings = settings
        self.ports = ports

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def settings_for(req: Request, endpoints: dict, ports: list[dict], exposed: dict) -> dict:
    port_map: dict = {k: None for k in exposed or {}}
    for p in ports:
        port_map.setdefault(f"{p['Port']}/{p['Proto']}", None)
        if port_map[f"{p['Port']}/{p['Proto']}"] is None:
            port_map[f"{p['Port']}/{p['Proto']}"] = []
        port_map[f"{p['Port']}/{p['Proto']}"].append({"HostIp": p["HostIp"], "HostPort": str(p["HostPort"])})
    s = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": port_map, "IPAddress": "", "IPPrefixLen": 0,
         "Gateway": "", "MacAddress": "", "Networks": endpoints}
    if req.mode == "host":
        s["Networks"] = {"host": {"NetworkID": "host"}}
    elif req.mode == "none":
        s["Networks"] = {"none": {"NetworkID": "none"}}
    elif DEFAULT in endpoints:
        e = endpoints[DEFAULT]
        s.update(IPAddress=e["IPAddress"], IPPrefixLen=e["IPPrefixLen"], Gateway=e["Gateway"],
                 MacAddress=e["MacAddress"])
    return s


def up(req: Request, nets: Networks | None, store, cid: str, name: str, hostname: str, p_dir: str,
       exposed: dict | None = None) -> Attached:
    """Make the container's network; on failure nothing of it is left."""
    if req.mode == "bridge":
        from pinnace.network import bridge

        assert nets is not None, "a bridge network needs the caller's Networks"
        return bridge.up(req, nets, store, cid, name, hostname, p_dir, exposed)
    if req.mode == "none":
        # no peers and no connect later: the file alone
        extra = "".join(f"{ip}\t{n}\n" for n, ip in req.extra_hosts if ip != "host-gateway")
        with open(os.path.join(p_dir, "hosts"), "w") as f:
            f.write(f"{LOCALHOST}127.0.1.1\t{hostname}\n{extra}")
    return Attached(-1, settings_for(req, {}, [], exposed or {}), [])


__all__ = ["Request", "request", "mode_of", "up", "Attached", "parse_publish", "settings_for"]
