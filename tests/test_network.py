"""Container networks through the real CLI: the default bridge, user networks
with names, published ports, isolation, cleanup.

The whole session runs in a network namespace of its own (conftest), so the
bridges, addresses and nftables table made here never reach the host's.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import pn, sh

SERVE = "busybox nc -ll -p {port} -e echo {text}"
# python3 (from the host image) resolves through /etc/hosts as any program would
FETCH = ("python3 -c \"import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
         "print(s.recv(100).decode().strip())\" {host} {port}")


def _until(pred, timeout: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _inspect(name: str) -> dict:
    r = pn("inspect", name, check=True)
    return json.loads(r.out)[0]


def _fetch_from_host(addr: str, port: int, timeout: float = 3) -> str:
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.settimeout(timeout)
        return s.recv(100).decode().strip()


def _answers(addr: str, port: int, text: str) -> bool:
    try:
        return _fetch_from_host(addr, port, 1) == text
    except OSError:
        return False


@pytest.fixture
def net():
    """A user network, removed (with whatever still uses it) afterwards."""
    made = []

    def make(name: str, *args: str) -> str:
        pn("network", "create", *args, name, check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        ids = pn("ps", "-aq", "--no-trunc").out.split()
        for cid in ids:
            st = _inspect(cid)
            if name in (st["NetworkSettings"]["Networks"] or {}) or st["HostConfig"].get("NetworkMode") == name:
                pn("rm", "-f", cid)
        pn("network", "rm", name)


def test_default_bridge_gives_an_address_a_route_and_etc_files():
    r = sh("ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf; cat /etc/hosts; hostname", check=True)
    out = r.out
    assert "inet 10.87." in out and "/16" in out
    assert "default via 10.87.0.1 dev eth0" in out
    assert "nameserver" in out
    addr = out.split("inet ")[1].split("/")[0]
    host = out.strip().splitlines()[-1]
    assert f"{addr}\t{host}" in out
    # and outbound: the gateway (the bridge on the host side) answers
    assert sh("busybox ping -c1 -W2 10.87.0.1 >/dev/null && echo ok", check=True).out.strip() == "ok"


def test_network_none_has_only_lo():
    out = sh("ls /sys/class/net; ip -o link", "--network", "none", check=True).out
    assert out.split()[0] == "lo" and "eth0" not in out


def test_two_containers_on_a_user_network_reach_each_other_by_name_and_alias(net):
    n = net("nt-app")
    pn("run", "-d", "--name", "nt-web", "--network", n, "--network-alias", "frontend", "host",
       "sh", "-c", SERVE.format(port=80, text="hello-web"), check=True)
    try:
        for target in ("nt-web", "frontend"):
            r = pn("run", "--rm", "--network", n, "host", "sh", "-c", FETCH.format(host=target, port=80))
            assert r.returncode == 0, r.err
            assert r.out.strip() == "hello-web"
        # and the other way: the server's /etc/hosts learnt of a container started after it
        pn("run", "-d", "--name", "nt-db", "--network", n, "host", "sleep", "60", check=True)
        hosts = pn("exec", "nt-web", "cat", "/etc/hosts", check=True).out
        db_ip = _inspect("nt-db")["NetworkSettings"]["Networks"][n]["IPAddress"]
        assert any(line.split()[:2] == [db_ip, "nt-db"] for line in hosts.splitlines() if line.strip())
        pn("rm", "-f", "nt-db", check=True)
        hosts = pn("exec", "nt-web", "cat", "/etc/hosts", check=True).out
        assert "nt-db" not in hosts
    finally:
        pn("rm", "-f", "nt-web")


def test_published_port_answers_on_loopback_and_the_hosts_addresses():
    # an address of "the host" (this session's namespace) that is not loopback
    subprocess.run(["ip", "link", "add", "pn-test-a", "type", "veth", "peer", "name", "pn-test-b"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "192.0.2.10/24", "dev", "pn-test-a"], check=True)
        subprocess.run(["ip", "link", "set", "pn-test-a", "up"], check=True)
        subprocess.run(["ip", "link", "set", "pn-test-b", "up"], check=True)
        cid = pn("run", "-d", "-p", "18080:80", "-p", "127.0.0.1:18081:80", "host", "sh", "-c",
                 SERVE.format(port=80, text="published"), check=True).out.strip()
        try:
            _until(lambda: _answers("127.0.0.1", 18080, "published"), what="the published port")
            assert _fetch_from_host("192.0.2.10", 18080) == "published"
            assert _fetch_from_host("127.0.0.1", 18081) == "published"
            # from inside, through the host's address, back to itself (hairpin)
            back = pn("exec", cid, "sh", "-c", FETCH.format(host="10.87.0.1", port=18080))
            assert back.out.strip() == "published", back.err
            # bound to 127.0.0.1 only: not on the other address
            with pytest.raises(OSError):
                _fetch_from_host("192.0.2.10", 18081, timeout=1)
            assert sorted(pn("port", cid, check=True).out.splitlines()) == [
                "80/tcp -> 0.0.0.0:18080", "80/tcp -> 127.0.0.1:18081"]
            assert pn("port", cid, "80", check=True).out.split() == ["0.0.0.0:18080", "127.0.0.1:18081"]
            st = _inspect(cid)
            assert st["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "18080"},
                                                                {"HostIp": "127.0.0.1", "HostPort": "18081"}]
            assert "0.0.0.0:18080->80/tcp" in pn("ps", check=True).out
            # the same host port for a second container: docker's error, nothing left
            r = pn("run", "-d", "-p", "18080:80", "host", "true")
            assert r.returncode == 125 and "port is already allocated" in r.err
            assert len(r.err.strip().splitlines()) == 1
        finally:
            pn("rm", "-f", cid, check=True)
        # freed: the port no longer answers, and can be published again
        assert not _answers("127.0.0.1", 18080, "published")
        cid = pn("run", "-d", "-p", "18080:80", "host", "sh", "-c", SERVE.format(port=80, text="again"),
                 check=True).out.strip()
        try:
            _until(lambda: _answers("127.0.0.1", 18080, "again"), what="the port published again")
        finally:
            pn("rm", "-f", cid, check=True)
    finally:
        subprocess.run(["ip", "link", "del", "pn-test-a"])


def test_publish_all_uses_free_host_ports_for_exposed_ports(tmp_path):
    # -P with the image's ExposedPorts: the host image exposes none, so -p with
    # no host port (a free one picked) shows the same machinery
    cid = pn("run", "-d", "-p", "80", "-p", "127.0.0.1::81/udp", "host", "sh", "-c",
             SERVE.format(port=80, text="anyport"), check=True).out.strip()
    try:
        ports = _inspect(cid)["NetworkSettings"]["Ports"]
        host_port = int(ports["80/tcp"][0]["HostPort"])
        lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        assert lo <= host_port <= hi
        assert ports["81/udp"][0]["HostIp"] == "127.0.0.1"
        _until(lambda: _answers("127.0.0.1", host_port, "anyport"), what="the picked port")
    finally:
        pn("rm", "-f", cid, check=True)


def test_a_container_on_another_network_cannot_reach_them(net):
    a, b = net("nt-a"), net("nt-b")
    pn("run", "-d", "--name", "nt-srv", "--network", a, "host", "sh", "-c", SERVE.format(port=80, text="secret"),
       check=True)
    try:
        ip = _inspect("nt-srv")["NetworkSettings"]["Networks"][a]["IPAddress"]
        same = pn("run", "--rm", "--network", a, "host", "sh", "-c", FETCH.format(host=ip, port=80))
        assert same.out.strip() == "secret", same.err
        other = pn("run", "--rm", "--network", b, "host", "sh", "-c", FETCH.format(host=ip, port=80))
        assert other.returncode != 0 and "secret" not in other.out
        # nor by name: names are per network
        other = pn("run", "--rm", "--network", b, "host", "sh", "-c", FETCH.format(host="nt-srv", port=80))
        assert other.returncode != 0
    finally:
        pn("rm", "-f", "nt-srv")


def test_network_commands_create_ls_inspect_connect_disconnect_rm(net):
    n = net("nt-cmd", "--subnet", "10.99.7.0/24", "--label", "team=blue")
    ls = pn("network", "ls", check=True).out
    assert "nt-cmd" in ls and "10.99.7.0/24" in ls and "bridge" in ls and "none" in ls
    info = json.loads(pn("network", "inspect", n, check=True).out)[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.99.7.0/24", "Gateway": "10.99.7.1"}]
    assert info["Labels"] == {"team": "blue"}
    r = pn("network", "create", "nt-cmd")
    assert r.returncode != 0 and "already exists" in r.err
    r = pn("network", "create", "--subnet", "10.99.7.128/25", "nt-overlap")
    assert r.returncode != 0 and "overlaps" in r.err
    pn("run", "-d", "--name", "nt-box", "--ip", "10.99.7.50", "--network", n, "host", "sleep", "60", check=True)
    try:
        info = json.loads(pn("network", "inspect", n, check=True).out)[0]
        assert [c["IPv4Address"] for c in info["Containers"].values()] == ["10.99.7.50/24"]
        r = pn("network", "rm", n)
        assert r.returncode != 0 and "active endpoints" in r.err
        # connect a second network: a second interface, live
        m = net("nt-cmd2", "--subnet", "10.99.8.0/24")
        pn("network", "connect", "--alias", "boxy", m, "nt-box", check=True)
        links = pn("exec", "nt-box", "ip", "-4", "-o", "addr", check=True).out
        assert "10.99.7.50/24" in links and "10.99.8." in links
        st = _inspect("nt-box")
        assert set(st["NetworkSettings"]["Networks"]) == {n, m}
        peer = pn("run", "--rm", "--network", m, "host", "sh", "-c", "getent hosts boxy nt-box", check=True).out
        assert "10.99.8." in peer
        pn("network", "disconnect", m, "nt-box", check=True)
        links = pn("exec", "nt-box", "ip", "-4", "-o", "addr", check=True).out
        assert "10.99.8." not in links
        assert set(_inspect("nt-box")["NetworkSettings"]["Networks"]) == {n}
    finally:
        pn("rm", "-f", "nt-box")
    info = json.loads(pn("network", "inspect", n, check=True).out)[0]
    assert info["Containers"] == {}
    assert pn("network", "rm", n, check=True).out.strip() == n
    assert pn("network", "inspect", n).returncode != 0


def test_ip_add_host_and_dns_options(net):
    n = net("nt-opts", "--subnet", "10.99.9.0/24")
    out = pn("run", "--rm", "--network", n, "--ip", "10.99.9.9", "--add-host", "db.example:10.1.2.3",
             "--add-host", "gw:host-gateway", "--dns", "10.0.0.53", "--dns-search", "example.org",
             "host", "sh", "-c", "ip -4 -o addr show eth0; cat /etc/hosts /etc/resolv.conf", check=True).out
    assert "10.99.9.9/24" in out
    assert "10.1.2.3\tdb.example" in out and "10.99.9.1\tgw" in out
    assert "nameserver 10.0.0.53" in out and "search example.org" in out
    r = pn("run", "--rm", "--network", n, "--ip", "10.99.10.1", "host", "true")
    assert r.returncode == 125 and "10.99.10.1" in r.err
    r = pn("run", "--rm", "--ip", "10.87.0.9", "host", "true")
    assert r.returncode == 125 and "user-defined" in r.err


@pytest.mark.parametrize("args, message", [
    (["--network", "nosuchnet"], "network nosuchnet not found"),
    (["-p", "99999:80"], "ports are 1 to 65535"),
    (["-p", "80/sctp"], "invalid protocol"),
    (["--add-host", "nocolon"], "invalid --add-host"),
    (["--dns", "not-an-ip"], "invalid --dns"),
    # names end up in other containers' /etc/hosts: no line breaks or spaces
    (["--network-alias", "a\n6.6.6.6 evil"], "invalid --network-alias"),
    (["--add-host", "x y:1.2.3.4"], "invalid --add-host"),
])
def test_bad_network_options_give_one_line_and_leave_nothing(args, message, store):
    before = set(os.listdir(os.path.join(store["root"], "containers")))
    r = pn("run", "--rm", *args, "host", "true")
    assert r.returncode == 125
    assert r.err.strip().splitlines() == [r.err.strip()] and message in r.err
    assert set(os.listdir(os.path.join(store["root"], "containers"))) == before


def test_fifty_containers_started_at_once_get_fifty_addresses(net, store):
    n = net("nt-many")
    names = [f"nt-m{i}" for i in range(50)]
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            results = list(ex.map(lambda name: pn("run", "-d", "--name", name, "--network", n, "host", "sleep", "120"),
                                  names))
        assert all(r.returncode == 0 for r in results), [r.err for r in results if r.returncode]
        info = json.loads(pn("network", "inspect", n, check=True).out)[0]
        addrs = [c["IPv4Address"] for c in info["Containers"].values()]
        assert len(addrs) == 50 and len(set(addrs)) == 50
        inside = {pn("exec", name, "sh", "-c", "ip -4 -o addr show eth0", check=True).out.split()[3]
                  for name in names[:5]}
        assert inside <= set(addrs)
    finally:
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda name: pn("rm", "-f", name), names))
    info = json.loads(pn("network", "inspect", n, check=True).out)[0]
    assert info["Containers"] == {}


def test_a_killed_shim_frees_its_address_and_port_on_prune(store):
    cid = pn("run", "-d", "-p", "18090:80", "host", "sh", "-c", SERVE.format(port=80, text="x"),
             check=True).out.strip()
    st = _inspect(cid)
    pid = st["State"]["Pid"]
    # the shim is the container's parent
    shim = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    os.kill(shim, 9)
    _until(lambda: _inspect(cid)["State"]["Status"] == "exited", what="the container to be seen exited")
    pn("system", "prune", "-f", check=True)
    assert not os.listdir(os.path.join(store["runroot"], "net", "ports")) or all(
        f.startswith(".") for f in os.listdir(os.path.join(store["runroot"], "net", "ports")))
    nft = subprocess.run(["nft", "list", "map", "ip", "pinnace", "tcp_any"], capture_output=True, text=True).stdout
    assert "18090" not in nft
    # and the port is free for another container
    cid = pn("run", "-d", "-p", "18090:80", "host", "sleep", "30", check=True).out.strip()
    pn("rm", "-f", cid, check=True)


def test_only_pinnaces_own_nftables_table_is_touched():
    subprocess.run(["nft", "-f", "-"], input=b"table inet someone_else {\n chain c {\n"
                   b"  type filter hook input priority 0; policy accept;\n  tcp dport 9 counter\n }\n}\n", check=True)
    try:
        before = subprocess.run(["nft", "list", "table", "inet", "someone_else"], capture_output=True, text=True).stdout
        cid = pn("run", "-d", "-p", "18095:80", "host", "sleep", "30", check=True).out.strip()
        pn("rm", "-f", cid, check=True)
        after = subprocess.run(["nft", "list", "table", "inet", "someone_else"], capture_output=True, text=True).stdout
        assert before == after
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split("\n")
        assert {t.strip() for t in tables if t.strip()} == {"table inet someone_else", "table ip pinnace"}
    finally:
        subprocess.run(["nft", "delete", "table", "inet", "someone_else"])


def test_stop_and_start_lease_again_and_keep_publishing():
    cid = pn("run", "-d", "-p", "18097:80", "host", "sh", "-c", SERVE.format(port=80, text="restarted"),
             check=True).out.strip()
    try:
        _until(lambda: _answers("127.0.0.1", 18097, "restarted"), what="the port")
        pn("stop", "-t", "0", cid, check=True)
        assert not _answers("127.0.0.1", 18097, "restarted")
        # its shim gave back the port's lease and firewall element, and the address
        runroot = os.environ["PINNACE_RUNROOT"]
        assert not [f for f in os.listdir(os.path.join(runroot, "net", "ports")) if "18097" in f]
        assert "18097" not in subprocess.run(["nft", "list", "table", "ip", "pinnace"], capture_output=True,
                                             text=True).stdout
        leases = subprocess.run(["grep", "-rl", cid, os.path.join(runroot, "net")], capture_output=True,
                                text=True).stdout
        assert leases == "", leases
        st = _inspect(cid)
        assert st["NetworkSettings"]["IPAddress"] == ""
        pn("start", cid, check=True)
        _until(lambda: _answers("127.0.0.1", 18097, "restarted"), what="the port after start")
        assert _inspect(cid)["NetworkSettings"]["IPAddress"].startswith("10.87.")
    finally:
        pn("rm", "-f", cid, check=True)


PEER_ECHO = ("import socket\n"
             "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('198.51.100.1', 7007)); s.listen()\n"
             "while True:\n"
             "    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()\n")


def test_outbound_traffic_is_masqueraded_behind_the_hosts_address():
    """An 'outside' network namespace stands for the world: the host reaches
    it through a veth; a container's connection arrives from the host's
    address there, not from the container's."""
    outside = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    server = None
    try:
        _until(lambda: os.readlink(f"/proc/{outside.pid}/ns/net") != os.readlink("/proc/self/ns/net"),
               what="the outside namespace")
        subprocess.run(["ip", "link", "add", "pn-up", "type", "veth", "peer", "name", "pn-world",
                        "netns", f"/proc/{outside.pid}/ns/net"], check=True)
        subprocess.run(["ip", "addr", "add", "198.51.100.2/24", "dev", "pn-up"], check=True)
        subprocess.run(["ip", "link", "set", "pn-up", "up"], check=True)
        enter = ["nsenter", f"--net=/proc/{outside.pid}/ns/net"]
        subprocess.run(enter + ["ip", "addr", "add", "198.51.100.1/24", "dev", "pn-world"], check=True)
        subprocess.run(enter + ["ip", "link", "set", "pn-world", "up"], check=True)
        subprocess.run(enter + ["ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(enter + ["python3", "-c", PEER_ECHO])
        r = sh(f"for i in 1 2 3 4 5 6 7 8 9 10; do {FETCH.format(host='198.51.100.1', port=7007)} && break; "
               "sleep 0.2; done", check=True)
        assert r.out.strip().splitlines()[-1] == "198.51.100.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        outside.kill()
        outside.wait()
        subprocess.run(["ip", "link", "del", "pn-up"], stderr=subprocess.DEVNULL)


UDP_ECHO = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 53))\n"
            "while True:\n"
            "    data, peer = s.recvfrom(100); s.sendto(b'udp:' + data, peer)\n")


def test_a_published_udp_port_answers():
    cid = pn("run", "-d", "-p", "127.0.0.1:15353:53/udp", "host", "python3", "-c", UDP_ECHO,
             check=True).out.strip()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)

        def ask():
            try:
                s.sendto(b"ping", ("127.0.0.1", 15353))
                return s.recvfrom(100)[0]
            except OSError:
                return None

        assert _until(ask, what="the UDP echo") == b"udp:ping"
        s.close()
        assert pn("port", cid, "53/udp", check=True).out.strip() == "127.0.0.1:15353"
    finally:
        pn("rm", "-f", cid, check=True)
