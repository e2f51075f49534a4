"""pinnace's own nftables table: outbound NAT, published ports, isolation.

Only the table ``ip pinnace`` is ever written; other software's tables are
never listed, flushed or changed. The table's rules are fixed and made once
per network namespace; networks and published ports are elements of its
sets and maps, so starting a container never adds or deletes a rule:

- ``subnets``/``bridges``: traffic from a pinnace subnet leaving by anything
  but a pinnace bridge is masqueraded (containers reach the outside);
- ``same_bridge``: routed traffic between two different pinnace bridges is
  dropped (one network cannot reach another) unless it was published (DNAT);
- ``tcp_any``/``udp_any`` (host port -> container address . port) and
  ``tcp_addr``/``udp_addr`` (host address . host port -> ...): published
  ports, for traffic arriving from outside (prerouting) and from the host
  itself (output), 127.0.0.1 included (``route_localnet`` on the bridge
  plus a masquerade, as netavark does).

Everything goes through the ``nft`` program (as netavark does): without it,
containers still get their bridge and addresses, but no NAT and no ports.
"""

from __future__ import annotations

import os

from pinnace.errors import SetupError

TABLE = "ip pinnace"

RULESET = """
table ip pinnace {
  set subnets { type ipv4_addr; flags interval; }
  set bridges { type ifname; }
  set same_bridge { type ifname . ifname; }
  map tcp_any { type inet_service : ipv4_addr . inet_service; }
  map tcp_addr { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  map udp_any { type inet_service : ipv4_addr . inet_service; }
  map udp_addr { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  chain publish {
    dnat ip addr . port to ip daddr . tcp dport map @tcp_addr
    dnat ip addr . port to tcp dport map @tcp_any
    dnat ip addr . port to ip daddr . udp dport map @udp_addr
    dnat ip addr . port to udp dport map @udp_any
  }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; fib daddr type local jump publish; }
  chain output { type nat hook output priority -100; policy accept; fib daddr type local jump publish; }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    ct status dnat ip saddr @subnets oifname @bridges masquerade
    ip saddr @subnets oifname != @bridges masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname . oifname @same_bridge accept
    ct status dnat accept
    iifname @bridges oifname @bridges drop
  }
}
"""


def nft_binary() -> str | None:
    # by hand: shutil imports re, which costs the CLI's start path ~10 ms
    dirs = os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]
    return next((f"{d}/nft" for d in dirs if d and os.access(f"{d}/nft", os.X_OK)), None)


def run_nft(script: str, check: bool = True) -> bool:
    nft = nft_binary()
    if nft is None:
        if check:
            raise SetupError("publishing ports needs nftables' nft program (apt-get install nftables)")
        return False
    import subprocess

    r = subprocess.run([nft, "-f", "-"], input=script.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0 and check:
        lines = [l for l in r.stderr.decode(errors="replace").splitlines() if l.strip()]
        raise SetupError(f"nft: {lines[0] if lines else 'failed with status ' + str(r.returncode)}")
    return r.returncode == 0


def network_elements(subnet: str, bridge: str) -> str:
    return (f"add element {TABLE} subnets {{ {subnet} }}\n"
            f"add element {TABLE} bridges {{ \"{bridge}\" }}\n"
            f"add element {TABLE} same_bridge {{ \"{bridge}\" . \"{bridge}\" }}\n")


def setup_network(subnet: str, bridge: str) -> bool:
    """The table (when this namespace has none yet) and one network's
    elements; False when there is no nft program (no NAT, no ports)."""
    if nft_binary() is None:
        return False
    # "add table/chain/set" are idempotent, rules are not: the rules are
    # made only with the table, in one transaction
    if not run_nft(f"list table {TABLE}\n", check=False):
        run_nft(RULESET + network_elements(subnet, bridge))
    else:
        run_nft(network_elements(subnet, bridge))
    return True


def forget_network(subnet: str, bridge: str) -> None:
    for line in network_elements(subnet, bridge).splitlines():
        run_nft(line.replace("add element", "delete element", 1) + "\n", check=False)


def _port_key(p: dict) -> str:
    any_host = p["HostIp"] in ("", "0.0.0.0")
    m = f"{p['Proto']}_{'any' if any_host else 'addr'}"
    key = str(p["HostPort"]) if any_host else f"{p['HostIp']} . {p['HostPort']}"
    return f"{TABLE} {m} {{ {key}"


def ports_up(ports: list[dict]) -> str:
    return "".join(f"add element {_port_key(p)} : {p['IP']} . {p['Port']} }}\n" for p in ports)


def ports_down(ports: list[dict]) -> str:
    return "".join(f"delete element {_port_key(p)} }}\n" for p in ports)


def remove_ports(ports: list[dict]) -> None:
    """Delete published ports' elements one by one (some may be gone already)."""
    for line in ports_down(ports).splitlines():
        run_nft(line + "\n", check=False)
