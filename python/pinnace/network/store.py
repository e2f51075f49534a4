"""Network definitions (root/networks) and address leases (runroot/net),
under flocks: see :mod:`pinnace.network` for the layout."""

from __future__ import annotations

import fcntl
import os

from pinnace._files import write_atomic
from pinnace._jsonenc import dumps, loads
from pinnace.errors import Conflict, NetworkNotFound, UsageError
from pinnace.network import DEFAULT, DEFAULT_BRIDGE, DEFAULT_SUBNET, MODES, USER_POOL, _mask, int_ip, ip_int, overlaps, parse_cidr


def _routes() -> list[tuple[int, int, str]]:
    """This network namespace's IPv4 routes (but the default): (net, prefix, device)."""
    out = []
    try:
        with open("/proc/self/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                dest, mask = int(fields[1], 16), int(fields[7], 16)
                if mask == 0:
                    continue
                # little-endian hex in /proc
                dest = int.from_bytes(dest.to_bytes(4, "little"), "big")
                mask = int.from_bytes(mask.to_bytes(4, "little"), "big")
                out.append((dest, bin(mask).count("1"), fields[0]))
    except OSError:
        pass
    return out


def _lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class Locked:
    """``with Locked(path):`` an exclusive flock on a lock file."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        self.fd = _lock(self.path)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _now() -> str:
    from pinnace.containers import now

    return now()


def _definition(name: str, nid: str, subnet: str, gateway: str, bridge: str, labels: dict, internal: bool,
                dns: bool) -> dict:
    return {
        "Name": name, "Id": nid, "Created": _now(), "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": subnet, "Gateway": gateway}]},
        "Internal": internal, "Attachable": True, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Options": {"com.docker.network.bridge.name": bridge},
        "Labels": labels, "DNSEnabled": dns,
    }


def subnet_of(net: dict) -> tuple[str, str]:
    cfg = net["IPAM"]["Config"][0]
    return cfg["Subnet"], cfg["Gateway"]


def bridge_of(net: dict) -> str:
    return net["Options"]["com.docker.network.bridge.name"]


class Networks:
    """Network definitions and their leases, for one (root, runroot)."""

    def __init__(self, root: str, runroot: str):
        self.dir = os.path.join(root, "networks")
        self.rundir = os.path.join(runroot, "net")
        self.ports_dir = os.path.join(self.rundir, "ports")

    # -- definitions ------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name + ".json")

    def _read(self, name: str) -> dict | None:
        try:
            with open(self._path(name), "rb") as f:
                return loads(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def default(self) -> dict:
        net = self._read(DEFAULT)
        if net is None:
            with Locked(os.path.join(self.dir, ".lock")):
                net = self._read(DEFAULT)
                if net is None:
                    net = _definition(DEFAULT, os.urandom(32).hex(), DEFAULT_SUBNET, "10.87.0.1", DEFAULT_BRIDGE,
                                      {}, False, False)
                    write_atomic(self._path(DEFAULT), dumps(net))
        return net

    def get(self, ref: str) -> dict:
        if ref == DEFAULT:
            return self.default()
        if ref in MODES:
            return {"Name": ref, "Id": ref, "Driver": "host" if ref == "host" else "null"}
        if _valid(ref):
            net = self._read(ref)
            if net is not None:
                return net
        matches = [n for n in self.all() if n["Id"].startswith(ref)] if len(ref) >= 3 else []
        if len(matches) == 1:
            return matches[0]
        raise NetworkNotFound(f"network {ref} not found")

    def all(self) -> list[dict]:
        out = [self.default()]
        try:
            names = sorted(f[:-5] for f in os.listdir(self.dir) if f.endswith(".json") and f != DEFAULT + ".json")
        except FileNotFoundError:
            names = []
        for n in names:
            net = self._read(n)
            if net is not None:
                out.append(net)
        return out

    def create(self, name: str, subnet: str | None = None, gateway: str | None = None,
               labels: dict | None = None, internal: bool = False) -> dict:
        if not _valid(name):
            raise UsageError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if name in MODES or name == DEFAULT:
            raise Conflict(f"network {name} is pre-defined and cannot be created")
        self.default()  # made first: it takes the lock below itself
        with Locked(os.path.join(self.dir, ".lock")):
            if self._read(name) is not None:
                raise Conflict(f"network with name {name} already exists")
            taken = [parse_cidr(subnet_of(n)[0]) for n in self.all()]
            if subnet:
                want = parse_cidr(subnet)
                for n in self.all():
                    if overlaps(want, parse_cidr(subnet_of(n)[0])):
                        raise Conflict(f"subnet {subnet} overlaps network {n['Name']} ({subnet_of(n)[0]})")
            else:
                want = self._free_subnet(taken)
            net_int, prefix = want
            if gateway:
                g = ip_int(gateway)
                if not _inside(g, want) or g in (net_int, net_int | ~_mask(prefix) & 0xFFFFFFFF):
                    raise UsageError(f"gateway {gateway} is not a host address of subnet {int_ip(net_int)}/{prefix}")
            else:
                g = net_int + 1
            nid = os.urandom(32).hex()
            net = _definition(name, nid, f"{int_ip(net_int)}/{prefix}", int_ip(g), "pn-" + nid[:12],
                              dict(labels or {}), internal, True)
            write_atomic(self._path(name), dumps(net))
            return net

    def _free_subnet(self, taken: list[tuple[int, int]]) -> tuple[int, int]:
        base, prefix, count = USER_POOL
        start = ip_int(base)
        routes = [(n, p) for n, p, dev in _routes() if not dev.startswith("pn-") and dev != DEFAULT_BRIDGE]
        for i in range(count):
            cand = (start + (i << (32 - prefix)), prefix)
            if not any(overlaps(cand, t) for t in taken) and not any(overlaps(cand, r) for r in routes):
                return cand
        raise Conflict("no free subnet left in pinnace's pool: give one with --subnet")

    def remove(self, ref: str, store) -> str:
        net = self.get(ref)
        if net["Name"] in MODES or net["Name"] == DEFAULT:
            raise Conflict(f"{net['Name']} is a pre-defined network and cannot be removed")
        with Locked(self._lease_lock(net)):
            live = self.leases(net, store)
            if live:
                names = ", ".join(sorted(l["Name"] for l in live))
                raise Conflict(f"network {net['Name']} has active endpoints ({names}): "
                               "stop or disconnect them first")
            from pinnace import _core

            _core.net_link_delete(bridge_of(net))
            from pinnace.network import firewall

            firewall.forget_network(subnet_of(net)[0], bridge_of(net))
            try:
                os.unlink(self._path(net["Name"]))
            except FileNotFoundError:
                pass
        _rmtree(os.path.join(self.rundir, net["Id"]))
        return net["Name"]

    # -- leases -----------------------------------------------------------------

    def _lease_dir(self, net: dict) -> str:
        return os.path.join(self.rundir, net["Id"])

    def _lease_lock(self, net: dict) -> str:
        return os.path.join(self._lease_dir(net), ".lock")

    def _lease_files(self, net: dict) -> list[str]:
        try:
            return [f for f in os.listdir(self._lease_dir(net)) if not f.startswith(".")]
        except FileNotFoundError:
            return []

    def _read_lease(self, net: dict, f: str) -> dict | None:
        try:
            with open(os.path.join(self._lease_dir(net), f), "rb") as fh:
                return loads(fh.read())
        except (OSError, ValueError):
            return None

    def leases(self, net: dict, store, reclaim: bool = False) -> list[dict]:
        """The live leases of ``net``; with ``reclaim`` (lock held) the dead are removed."""
        live = []
        for f in self._lease_files(net):
            lease = self._read_lease(net, f)
            if lease is not None and store.owner_alive(store.paths(lease["Id"])):
                live.append(lease)
            elif reclaim:
                _unlink(os.path.join(self._lease_dir(net), f))
        return live

    def lease(self, net: dict, store, cid: str, info: dict, want: str | None = None) -> tuple[str, int, str]:
        """An address of ``net`` for ``cid`` (``want`` if given and free):
        (address, prefix, gateway). Call with the lease lock held."""
        subnet, gateway = subnet_of(net)
        net_int, prefix = parse_cidr(subnet)
        g = ip_int(gateway)
        held = {ip_int(l["IPAddress"]) for l in self.leases(net, store, reclaim=True)}
        first, last = net_int + 1, (net_int | (~_mask(prefix) & 0xFFFFFFFF)) - 1
        if want:
            w = ip_int(want)
            if not first <= w <= last or w == g:
                raise UsageError(f"address {want} is not a free host address of network {net['Name']} ({subnet})")
            if w in held:
                raise Conflict(f"address {want} is already in use on network {net['Name']}")
            pick = w
        else:
            # round robin from the last address handed out, so an address
            # just freed is not at once someone else's (ARP caches forget slowly)
            try:
                with open(os.path.join(self._lease_dir(net), ".last")) as f:
                    after = int(f.read() or 0)
            except (OSError, ValueError):
                after = 0
            size = last - first + 1
            start = (after - first + 1) % size if first <= after <= last else 0
            pick = None
            for i in range(size):
                c = first + (start + i) % size
                if c != g and c not in held:
                    pick = c
                    break
            if pick is None:
                raise Conflict(f"no free address left on network {net['Name']} ({subnet})")
            with open(os.path.join(self._lease_dir(net), ".last"), "w") as f:
                f.write(str(pick))
        addr = int_ip(pick)
        lease = dict(info, Id=cid, IPAddress=addr, IPPrefixLen=prefix, Gateway=gateway)
        write_atomic(os.path.join(self._lease_dir(net), addr), dumps(lease))
        return addr, prefix, gateway

    def release(self, net: dict, cid: str) -> None:
        for f in self._lease_files(net):
            lease = self._read_lease(net, f)
            if lease is not None and lease["Id"] == cid:
                _unlink(os.path.join(self._lease_dir(net), f))

    def networks_of(self, cid: str) -> list[dict]:
        """The networks that hold a lease (live or not) for ``cid``."""
        out = []
        for net in self.all():
            for f in self._lease_files(net):
                lease = self._read_lease(net, f)
                if lease is not None and lease["Id"] == cid:
                    out.append(net)
                    break
        return out


def _inside(ip: int, net: tuple[int, int]) -> bool:
    return (ip & _mask(net[1])) == net[0]


def _valid(name: str) -> bool:
    from pinnace.containers import _valid_name

    return _valid_name(name)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["Networks", "Locked", "NetworkNotFound", "bridge_of", "subnet_of"]
