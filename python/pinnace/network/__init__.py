"""Container networks, daemonless: definitions on disk, leases under locks.

Layout::

    root/networks/NAME.json           a network's definition (docker's inspect shape)
    runroot/net/ID/.lock               flock: address allocation and /etc/hosts refresh
    runroot/net/ID/ADDRESS             a lease: which container holds the address
    runroot/net/ports/.lock            flock: host port allocation
    runroot/net/ports/PROTO-PORT-HOSTIP   a published port: which container holds it

A lease is live while its container's owner (the process holding the
container directory's flock: a foreground ``pinnace run`` or a shim) lives.
Leases of dead owners are reclaimed by whoever next allocates, and by
``rm``/``system prune``; the kernel removes a dead container's veth with
its network namespace. Leases live under runroot, so a reboot (which also
empties the bridge and the firewall) forgets them all.

``bridge`` is the default network (bridge device ``pinnace0``); ``host`` and
``none`` are modes, not networks with addresses. Firewall rules live in
pinnace's own nftables table (``firewall``); links and addresses are made by
the Rust core over netlink.

This package's front is light, as ``pinnace run --network none`` loads it:
``setup`` checks a container's request and makes host/none networks;
``store`` (definitions, leases, locks) and ``bridge`` (namespaces, links,
ports, /etc files) are loaded only for bridge networks.
"""

from __future__ import annotations

from pinnace.errors import UsageError

DEFAULT = "bridge"
DEFAULT_BRIDGE = "pinnace0"
DEFAULT_SUBNET = "10.87.0.0/16"
#: user networks get the first free /24 from here on (10.86.0.0/24, 10.86.1.0/24...)
USER_POOL = ("10.86.0.0", 24, 512)
MODES = ("host", "none")


# -- IPv4 arithmetic (ipaddress costs the CLI's start-up more than all of this) --

def ip_int(s: str) -> int:
    parts = s.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise UsageError(f"invalid IPv4 address {s!r}")
    a, b, c, d = (int(p) for p in parts)
    return (a << 24) | (b << 16) | (c << 8) | d


def int_ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def parse_cidr(s: str) -> tuple[int, int]:
    """'10.1.0.0/16' -> (network as int, prefix); host bits must be zero."""
    addr, sep, plen = s.partition("/")
    if not sep or not plen.isdigit() or not 8 <= int(plen) <= 30:
        raise UsageError(f"invalid subnet {s!r}: want an IPv4 CIDR such as 10.1.0.0/24 (prefix 8 to 30)")
    prefix = int(plen)
    net = ip_int(addr)
    if net & ((1 << (32 - prefix)) - 1):
        raise UsageError(f"invalid subnet {s!r}: host bits are set (did you mean {int_ip(net & _mask(prefix))}/{prefix}?)")
    return net, prefix


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    p = min(a[1], b[1])
    return (a[0] & _mask(p)) == (b[0] & _mask(p))


def port_strings(settings: dict | None) -> list[str]:
    """docker ps's PORTS: '0.0.0.0:8080->80/tcp', '443/tcp' (exposed only)."""
    out = []
    for key, binds in ((settings or {}).get("Ports") or {}).items():
        if not binds:
            out.append(key)
        for b in binds or []:
            out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{key}")
    return out


def public_settings(settings: dict | None, running: bool) -> dict:
    """NetworkSettings as inspect shows them: no internal keys, and (as
    docker) no addresses or ports once the container is not running."""
    s = dict(settings or {"Networks": {}, "Ports": {}, "IPAddress": "", "Gateway": "", "MacAddress": ""})
    nets = {}
    for name, e in (s.get("Networks") or {}).items():
        e = {k: v for k, v in e.items() if k not in ("LeasePath", "Interface")}
        if not running:
            e.update({k: "" for k in ("IPAddress", "Gateway", "MacAddress", "EndpointID") if k in e})
            if "IPPrefixLen" in e:
                e["IPPrefixLen"] = 0
        nets[name] = e
    s["Networks"] = nets
    if not running:
        s.update(IPAddress="", Gateway="", MacAddress="", IPPrefixLen=0,
                 Ports={k: None for k in (s.get("Ports") or {})})
    return s


__all__ = ["DEFAULT", "DEFAULT_BRIDGE", "MODES", "ip_int", "parse_cidr", "port_strings", "public_settings"]
