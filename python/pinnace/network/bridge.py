"""A container's bridge networks: addresses, links, ports, /etc files.

``up()`` makes a network namespace (the Rust core, over netlink), leases an
address on each network, attaches a veth to each network's bridge,
publishes ports and writes the container's ``hosts`` and ``resolv.conf``;
the container then joins that namespace by path. ``release()`` gives back
what ``up()`` took; the kernel removes the veths with the namespace. The
request itself is checked by :mod:`pinnace.network.setup`.
"""

from __future__ import annotations

import os

from pinnace import _core
from pinnace._files import write_atomic
from pinnace._jsonenc import dumps, loads
from pinnace.errors import Conflict, SetupError
from pinnace.network import parse_cidr
from pinnace.network.setup import DOWN_FILES, DOWN_SCRIPT, LOCALHOST, Attached, Request, settings_for
from pinnace.network.store import Locked, Networks, bridge_of, subnet_of

MTU = 1500


def _fw():
    from pinnace.network import firewall

    return firewall


# -- up -----------------------------------------------------------------------


def _host_if(cid: str, net: dict) -> str:
    # 14 of the 15 bytes a name may have; both ids are random hex
    return f"pv{cid[:7]}{net['Id'][:5]}"


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


def _ensure_bridge(nets: Networks, net: dict, force: bool = False) -> None:
    """The network's bridge, addresses, forwarding and firewall elements in
    this network namespace; once (a marker per namespace), or again with ``force``."""
    marker = os.path.join(nets.rundir, f".ready-{os.stat('/proc/self/ns/net').st_ino}-{net['Id'][:16]}")
    if not force and os.path.exists(marker):
        return
    subnet, gateway = subnet_of(net)
    _, prefix = parse_cidr(subnet)
    bridge = bridge_of(net)
    with Locked(os.path.join(nets.rundir, ".setup.lock")):
        _core.net_bridge(bridge, [f"{gateway}/{prefix}"], MTU)
        _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        # published ports answer on 127.0.0.1 too: let 127/8 be routed to the bridge
        _sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")
        if not _fw().setup_network(subnet, bridge):
            import sys

            sys.stderr.write("WARNING: nftables' nft program not found: containers on bridge networks get no "
                             "outbound NAT and cannot publish ports (apt-get install nftables)\n")
        with open(marker, "w"):
            pass


def _attach(nets: Networks, store, fd: int, cid: str, name: str, hosts_path: str, net: dict, ifname: str,
            aliases: list[str], want: str | None, default_route: bool) -> dict:
    host_if = _host_if(cid, net)
    with Locked(nets._lease_lock(net)):
        info = {"Name": name, "Aliases": aliases, "Hosts": hosts_path, "HostIf": host_if, "Interface": ifname}
        addr, prefix, gateway = nets.lease(net, store, cid, info, want)
        try:
            try:
                _ensure_bridge(nets, net)
                try:
                    mac = _core.net_attach(fd, bridge_of(net), host_if, ifname, [f"{addr}/{prefix}"],
                                           gateway if default_route else None, MTU)
                except Conflict:
                    # the host end (named after this container) of its last
                    # run: the kernel tears a dead namespace down a little
                    # after its last process, so it may be there still
                    _core.net_link_delete(host_if)
                    mac = _core.net_attach(fd, bridge_of(net), host_if, ifname, [f"{addr}/{prefix}"],
                                           gateway if default_route else None, MTU)
            except SetupError:
                # the bridge or the table may have gone (deleted by hand, or a
                # new namespace that reuses an old one's inode): make them again
                if _core.net_link_exists(host_if):
                    raise
                _ensure_bridge(nets, net, force=True)
                mac = _core.net_attach(fd, bridge_of(net), host_if, ifname, [f"{addr}/{prefix}"],
                                       gateway if default_route else None, MTU)
        except BaseException:
            nets.release(net, cid)
            raise
        lease_path = os.path.join(nets._lease_dir(net), addr)
        lease = dict(info, Id=cid, IPAddress=addr, IPPrefixLen=prefix, Gateway=gateway, MacAddress=mac)
        write_atomic(lease_path, dumps(lease))
        if net.get("DNSEnabled"):
            _refresh_peers(nets, store, net, skip=cid)
    short = cid[:12]
    return {"IPAMConfig": {"IPv4Address": want} if want else None, "Links": None, "Aliases": aliases or None,
            "MacAddress": mac, "NetworkID": net["Id"], "EndpointID": host_if, "Gateway": gateway,
            "IPAddress": addr, "IPPrefixLen": prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": [name, short] + aliases if net.get("DNSEnabled") else None,
            "Interface": ifname, "LeasePath": lease_path}


def _free_host_port(proto: str, host_ip: str, taken: set[int]) -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    for _ in range(200):
        port = lo + int.from_bytes(os.urandom(4), "big") % (hi - lo + 1)
        if port not in taken and _bindable(proto, host_ip, port):
            return port
    raise Conflict(f"no free host port found for {proto}")


def _bindable(proto: str, host_ip: str, port: int) -> bool:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _port_file(p: dict) -> str:
    return f"{p['Proto']}-{p['HostPort']}-{p['HostIp']}"


def _read_json(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except (OSError, ValueError):
        return None


def _publish(nets: Networks, store, cid: str, addr: str, ports: list[dict]) -> list[dict]:
    """Host ports for ``ports`` (leased, checked free on the host) and their
    firewall elements; returns the leases."""
    if not ports:
        return []
    if _fw().nft_binary() is None:
        raise SetupError("publishing ports needs nftables' nft program (apt-get install nftables)")
    made: list[dict] = []
    with Locked(os.path.join(nets.ports_dir, ".lock")):
        live: list[dict] = []
        for f in os.listdir(nets.ports_dir):
            if f.startswith("."):
                continue
            lease = _read_json(os.path.join(nets.ports_dir, f))
            if lease is not None and lease["Id"] != cid and store.owner_alive(store.paths(lease["Id"])):
                live.append(lease)
            else:
                # its container ended without giving it back: take its element out
                if lease is not None:
                    _fw().remove_ports([lease])
                _unlink(os.path.join(nets.ports_dir, f))
        try:
            for want in ports:
                same = [l for l in live + made if l["Proto"] == want["Proto"]
                        and (l["HostIp"] == want["HostIp"] or "0.0.0.0" in (l["HostIp"], want["HostIp"]))]
                port = want["HostPort"]
                if port == 0:
                    port = _free_host_port(want["Proto"], want["HostIp"], {l["HostPort"] for l in same})
                elif any(l["HostPort"] == port for l in same):
                    raise Conflict(f"Bind for {want['HostIp']}:{port} failed: port is already allocated")
                elif not _bindable(want["Proto"], want["HostIp"], port):
                    raise Conflict(f"Bind for {want['HostIp']}:{port} failed: address already in use on the host")
                lease = dict(want, HostPort=port, Id=cid, IP=addr)
                write_atomic(os.path.join(nets.ports_dir, _port_file(lease)), dumps(lease))
                made.append(lease)
            _fw().run_nft(_fw().ports_up(made))
        except BaseException:
            for lease in made:
                _unlink(os.path.join(nets.ports_dir, _port_file(lease)))
            raise
    return made


def up(req: Request, nets: Networks, store, cid: str, name: str, hostname: str, p_dir: str,
       exposed: dict | None = None) -> Attached:
    """The bridge networks of ``req`` (see ``setup.up``); on failure nothing of them is left."""
    hosts_path = os.path.join(p_dir, "hosts")
    fd = _core.net_namespace()
    endpoints: dict = {}
    try:
        for i, (net, aliases, want) in enumerate(req.nets):
            endpoints[net["Name"]] = _attach(nets, store, fd, cid, name, hosts_path, net, f"eth{i}", aliases,
                                             want, default_route=(i == 0))
        first = next(iter(endpoints.values()))
        ports = _publish(nets, store, cid, first["IPAddress"], req.ports)
        own = [(e["IPAddress"], aliases) for (net, aliases, _), e in zip(req.nets, endpoints.values())]
        _write_hosts_base(p_dir, hostname, name, own, req, gateway=first["Gateway"])
        _write_hosts(nets, store, cid, p_dir)
        _write_resolv(p_dir, req)
        write_down_script(nets, p_dir, cid, [e["LeasePath"] for e in endpoints.values()], ports)
    except BaseException:
        os.close(fd)
        release(nets, store, cid)
        raise
    return Attached(fd, settings_for(req, endpoints, ports, exposed or {}), ports)


def attach_running(req_net: tuple[dict, list[str], str | None], nets: Networks, store, cid: str, name: str,
                   pid: int, p_dir: str, ifname: str) -> dict:
    """``network connect``: one more network for a running container."""
    net, aliases, want = req_net
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        e = _attach(nets, store, fd, cid, name, os.path.join(p_dir, "hosts"), net, ifname, aliases, want,
                    default_route=False)
    finally:
        os.close(fd)
    base = _read_json(os.path.join(p_dir, "hosts.json")) or {}
    base.setdefault("own", []).append([e["IPAddress"], aliases])
    write_atomic(os.path.join(p_dir, "hosts.json"), dumps(base))
    _write_hosts(nets, store, cid, p_dir)
    return e


def detach_running(net: dict, nets: Networks, store, cid: str, pid: int, p_dir: str, ifname: str) -> None:
    """``network disconnect``: take the container off ``net``."""
    if pid > 0:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                _core.net_detach(fd, ifname)
            finally:
                os.close(fd)
    with Locked(nets._lease_lock(net)):
        gone = [l["IPAddress"] for l in nets.leases(net, store) if l["Id"] == cid]
        nets.release(net, cid)
        if net.get("DNSEnabled"):
            _refresh_peers(nets, store, net, skip=cid)
    base = _read_json(os.path.join(p_dir, "hosts.json")) or {}
    base["own"] = [o for o in base.get("own", []) if o[0] not in gone]
    write_atomic(os.path.join(p_dir, "hosts.json"), dumps(base))
    _write_hosts(nets, store, cid, p_dir)


# -- /etc files -----------------------------------------------------------------


def _write_hosts_base(p_dir: str, hostname: str, name: str, own: list, req: Request, gateway: str = "") -> None:
    extra = [[n, gateway if ip == "host-gateway" else ip] for n, ip in req.extra_hosts]
    write_atomic(os.path.join(p_dir, "hosts.json"),
                 dumps({"hostname": hostname, "name": name, "own": [[ip, a] for ip, a in own], "extra": extra}))


def _hosts_text(nets: Networks, store, cid: str, p_dir: str, live_cache: dict | None = None) -> str:
    base = _read_json(os.path.join(p_dir, "hosts.json")) or {}
    hostname, name = base.get("hostname", cid[:12]), base.get("name", "")
    lines = [LOCALHOST]
    own = base.get("own") or []
    if not own:
        lines.append(f"127.0.1.1\t{hostname}\n")
    for ip, aliases in own:
        names = [hostname] + [n for n in [name] + list(aliases) if n and n != hostname]
        lines.append(f"{ip}\t{' '.join(names)}\n")
    for n, ip in base.get("extra") or []:
        lines.append(f"{ip}\t{n}\n")
    peers = []
    for net in nets.networks_of(cid) if own else []:
        if not net.get("DNSEnabled"):
            continue
        live = live_cache.get(net["Id"]) if live_cache is not None else None
        if live is None:
            live = nets.leases(net, store)
            if live_cache is not None:
                live_cache[net["Id"]] = live
        for l in live:
            if l["Id"] != cid:
                peers.append(f"{l['IPAddress']}\t{' '.join([l['Name'], l['Id'][:12]] + list(l.get('Aliases') or []))}\n")
    if peers:
        lines.append("# other containers on this container's networks\n")
        lines += sorted(set(peers))
    return "".join(lines)


def _write_hosts(nets: Networks, store, cid: str, p_dir: str, live_cache: dict | None = None) -> None:
    """Rewrite ``p_dir/hosts`` in place: it is bind-mounted into the container
    by inode, so it is truncated and rewritten, never replaced."""
    text = _hosts_text(nets, store, cid, p_dir, live_cache).encode()
    path = os.path.join(p_dir, "hosts")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text)
    finally:
        os.close(fd)


def _refresh_peers(nets: Networks, store, net: dict, skip: str) -> None:
    cache: dict = {}
    for l in nets.leases(net, store):
        if l["Id"] != skip and l.get("Hosts"):
            _write_hosts(nets, store, l["Id"], os.path.dirname(l["Hosts"]), cache)


def _host_resolv() -> tuple[list[str], list[str], list[str]]:
    ns, search, options = [], [], []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                w = line.split()
                if not w or w[0].startswith(("#", ";")):
                    continue
                if w[0] == "nameserver" and len(w) > 1:
                    ns.append(w[1])
                elif w[0] in ("search", "domain"):
                    search = w[1:]
                elif w[0] == "options":
                    options += w[1:]
    except OSError:
        pass
    return ns, search, options


def _write_resolv(p_dir: str, req: Request) -> None:
    """docker's rules: the host's resolvers but those on loopback (unreachable
    from the container's namespace), Google's when none is left; --dns,
    --dns-search and --dns-option replace theirs."""
    ns, search, options = _host_resolv()
    if req.dns:
        ns = list(req.dns)
    else:
        ns = [n for n in ns if not n.startswith("127.") and n != "::1"] or ["8.8.8.8", "8.8.4.4"]
    search = req.dns_search or search
    options = req.dns_options or options
    text = "".join(f"nameserver {n}\n" for n in ns)
    if search:
        text += "search " + " ".join(search) + "\n"
    if options:
        text += "options " + " ".join(options) + "\n"
    with open(os.path.join(p_dir, "resolv.conf"), "w") as f:
        f.write(text)


# -- release ------------------------------------------------------------------


def write_down_script(nets: Networks, p_dir: str, cid: str, lease_paths: list[str], ports: list[dict]) -> None:
    """What the shim does when a detached container ends: deletes the files
    ``net-down.files`` lists (its leases, its ports'), and only when it
    published ports runs ``net-down.sh`` (their firewall elements out)."""
    files = lease_paths + [os.path.join(nets.ports_dir, _port_file(p)) for p in ports]
    write_atomic(os.path.join(p_dir, DOWN_FILES), "".join(f + "\n" for f in files))
    nft = _fw().nft_binary() if ports else None
    script = os.path.join(p_dir, DOWN_SCRIPT)
    if nft:
        write_atomic(script, f"#!/bin/sh\n{nft} -f - <<'EOF'\n{_fw().ports_down(ports)}EOF\n")
    else:
        try:
            os.unlink(script)
        except FileNotFoundError:
            pass


def release(nets: Networks, store, cid: str, settings: dict | None = None) -> None:
    """Give back everything ``cid`` holds: addresses (refreshing its peers'
    /etc/hosts), published ports and their firewall elements. ``settings``
    (the container's NetworkSettings) names its networks, sparing a scan of all."""
    if settings is not None:
        ids = {e.get("NetworkID") for e in (settings.get("Networks") or {}).values()}
        held = [n for n in nets.all() if n["Id"] in ids]
    else:
        held = nets.networks_of(cid)
    for net in held:
        with Locked(nets._lease_lock(net)):
            nets.release(net, cid)
            if net.get("DNSEnabled"):
                _refresh_peers(nets, store, net, skip=cid)
    try:
        files = os.listdir(nets.ports_dir)
    except FileNotFoundError:
        return
    mine = []
    for f in files:
        lease = _read_json(os.path.join(nets.ports_dir, f)) if not f.startswith(".") else None
        if lease is not None and lease["Id"] == cid:
            mine.append((f, lease))
    if mine:
        with Locked(os.path.join(nets.ports_dir, ".lock")):
            _fw().remove_ports([l for _, l in mine])
            for f, _ in mine:
                _unlink(os.path.join(nets.ports_dir, f))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass




def sweep(nets: Networks, store) -> None:
    """``system prune``: every lease and published port whose container's
    owner is gone (a killed shim, a killed ``pinnace run``)."""
    for net in nets.all():
        if nets._lease_files(net):
            with Locked(nets._lease_lock(net)):
                nets.leases(net, store, reclaim=True)
    try:
        files = [f for f in os.listdir(nets.ports_dir) if not f.startswith(".")]
    except FileNotFoundError:
        return
    if not files:
        return
    with Locked(os.path.join(nets.ports_dir, ".lock")):
        for f in files:
            lease = _read_json(os.path.join(nets.ports_dir, f))
            if lease is not None and store.owner_alive(store.paths(lease["Id"])):
                continue
            if lease is not None:
                _fw().remove_ports([lease])
            _unlink(os.path.join(nets.ports_dir, f))


__all__ = ["up", "release", "sweep", "attach_running", "detach_running", "write_down_script"]
