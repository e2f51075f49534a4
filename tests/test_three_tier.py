"""The founding brief's three-tier example through the real CLI: a web server,
a database and a cache (images made from Debian packages by
tests/three_tier.py), the web container answering with what it fetched from
the other two at request time.

* ``test_three_tier_on_a_network``: as examples/three-tier/run.sh does it, on
  a user-defined network with a published port and the names ``db`` and
  ``cache`` resolved by the network.
* ``test_three_tier_in_a_network_namespace``: without pinnace networks: the three
  with ``--network host`` inside a network namespace made for the test, the
  web container told to find the others at 127.0.0.1.

Readiness: each tier in turn is polled until it serves (``pinnace exec NAME
ready``, the check each image carries; for the web tier, GET / answering 200,
which it does only once both others answered), within one deadline. A tier
whose container stops, or that is not ready by the deadline, fails the test
with its name and every container's state and ``pinnace logs``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

import pytest

import three_tier
from conftest import PINNACE, pn
from registry import Layout, free_port

pytestmark = pytest.mark.registry  # every test here pushes to and pulls from the registry

NAMES = {"db": "db", "cache": "cache", "web": "web"}
READY_WITHIN = 60.0


@pytest.fixture(scope="session")
def tiers(images):
    """tier -> reference: the three images (built once per host, cached), pushed
    to the session registry and pulled."""
    try:
        layout = three_tier.build()
    except three_tier.BuildError as e:
        pytest.fail(str(e))
    refs = {}
    for tier in three_tier.TIERS:
        repo = three_tier.REPO.format(tier=tier)
        images.registry.push(Layout(layout), tier, repo, "latest", "--format", "oci")
        refs[tier] = images.record(f"three-tier-{tier}", repo).ref
        pn("pull", "-q", refs[tier], timeout=180, check=True)
    return refs


def curl(url: str, prefix: tuple[str, ...] = ()) -> tuple[bool, str]:
    """(answered 2xx, body or curl's error), run under ``prefix`` (e.g. nsenter)."""
    r = subprocess.run([*prefix, "curl", "-sS", "-m", "5", "-w", "\n%{http_code}", url], capture_output=True,
                       text=True)
    body, _, code = r.stdout.rpartition("\n")
    if r.returncode != 0:
        return False, r.stderr.strip() or f"curl exited {r.returncode}"
    return code.startswith("2"), body if code.startswith("2") else f"HTTP {code}: {body}"


class Stack:
    """The three containers, started by ``pinnace run -d`` under ``prefix``."""

    def __init__(self, tiers: dict[str, str], prefix: tuple[str, ...] = ()):
        self.tiers, self.prefix = tiers, prefix

    def start(self, tier: str, *args: str) -> None:
        r = subprocess.run([*self.prefix, PINNACE, "run", "-d", "--name", NAMES[tier], *args, self.tiers[tier]],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"pinnace run -d --name {NAMES[tier]} ({tier}) exited {r.returncode}: {r.stderr}"

    def status(self, name: str) -> str:
        r = pn("inspect", "-f", "{{.State.Status}} (exit code {{.State.ExitCode}})", name)
        return r.out.strip() if r.returncode == 0 else f"unknown ({r.err.strip()})"

    def report(self) -> str:
        out = []
        for name in NAMES.values():
            logs = pn("logs", name)
            out.append(f"--- {name}: {self.status(name)}; pinnace logs:\n{logs.out}{logs.err}".rstrip())
        return "\n".join(out)

    def wait_ready(self, web) -> None:
        """Each tier in turn until it serves; ``web()`` -> (ok, detail) for the web tier."""
        def exec_ready(name):
            r = pn("exec", name, "ready", timeout=30)
            return r.returncode == 0, f"'pinnace exec {name} ready' exited {r.returncode} {r.err.strip()}".strip()

        checks = [("db", lambda: exec_ready(NAMES["db"])), ("cache", lambda: exec_ready(NAMES["cache"])),
                  ("web", web)]
        t0 = time.monotonic()
        for tier, check in checks:
            while True:
                ok, detail = check()
                if ok:
                    break
                state = self.status(NAMES[tier])
                late = time.monotonic() - t0 > READY_WITHIN
                if late or not state.startswith("running"):
                    why = f"not ready after {READY_WITHIN:.0f}s" if late else f"stopped: {state}"
                    pytest.fail(f"the {tier} tier (container {NAMES[tier]}) never got ready, {why}; last check: "
                                f"{detail}\n{self.report()}")
                time.sleep(0.1)

    def remove(self) -> subprocess.CompletedProcess:
        return pn("rm", "-f", *NAMES.values())


def assert_page(page: str, db_host: str, cache_host: str) -> None:
    assert f"database ({db_host}): {three_tier.DB_ROW}" in page, page
    assert f"cache ({cache_host}): {three_tier.CACHE_VALUE}" in page, page


def assert_no_containers() -> None:
    ps = [c["Names"] for c in json.loads(pn("ps", "-a", "--format", "json", check=True).out)]
    assert not set(ps) & set(NAMES.values()), ps


def links() -> set[str]:
    r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()}


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_three_tier_on_a_network(tiers):
    """run.sh's steps: a network, db and cache on it, web on it with a port
    published on the host; GET / shows the row and the value, fetched by name."""
    port, net = free_port(), "threetier"
    links_before = links()
    stack = Stack(tiers)
    try:
        pn("network", "create", net, check=True)
        stack.start("db", "--network", net)
        stack.start("cache", "--network", net)
        stack.start("web", "--network", net, "-p", f"127.0.0.1:{port}:80")
        stack.wait_ready(lambda: curl(f"http://127.0.0.1:{port}/"))
        ok, page = curl(f"http://127.0.0.1:{port}/")
        assert ok, page
        assert_page(page, "db", "cache")
    finally:
        removed = stack.remove()
        net_removed = pn("network", "rm", net)
    assert removed.returncode == 0, removed.err
    assert net_removed.returncode == 0, net_removed.err
    assert_no_containers()
    assert net not in pn("network", "ls", check=True).out
    assert links() - links_before == set(), "network interfaces left on the host"
    assert port_free(port), f"127.0.0.1:{port} is still taken after the containers are gone"


def test_three_tier_in_a_network_namespace(tiers):
    """Today's networking: the three share a network namespace made for the
    test (--network host there), the web tier finds the others at 127.0.0.1."""
    ns = f"pinnace-3t-{uuid.uuid4().hex[:8]}"
    # nsenter rather than ip netns exec: that one also remounts /sys, hiding
    # /sys/fs/cgroup, and pinnace would make containers without their cgroups
    subprocess.run(["ip", "netns", "add", ns], check=True)
    inside = ("nsenter", f"--net=/run/netns/{ns}")
    stack = Stack(tiers, inside)
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        stack.start("db", "--network", "host")
        stack.start("cache", "--network", "host")
        stack.start("web", "--network", "host", "-e", "DB_HOST=127.0.0.1", "-e", "CACHE_HOST=127.0.0.1")
        stack.wait_ready(lambda: curl("http://127.0.0.1:80/", inside))
        ok, page = curl("http://127.0.0.1:80/", inside)
        assert ok, page
        assert_page(page, "127.0.0.1", "127.0.0.1")
        # the servers' users are the images': postgres and redis, httpd's CGI as www-data
        for name, user in (("db", "postgres"), ("cache", "redis")):
            assert pn("exec", name, "id", "-un", check=True).out == f"{user}\n"
    finally:
        removed = stack.remove()
        left = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert removed.returncode == 0, removed.err
    assert_no_containers()
    assert left == [], f"processes still in the namespace after rm -f: {left}"


def test_publish_all_publishes_the_images_exposed_ports(tiers):
    """-P: each port the image exposes (the cache image: 6379/tcp) on a free
    host port, which answers from the host."""
    name = f"cache-p-{uuid.uuid4().hex[:6]}"
    pn("run", "-d", "-P", "--name", name, tiers["cache"], check=True)
    try:
        binds = json.loads(pn("inspect", name, check=True).out)[0]["NetworkSettings"]["Ports"]["6379/tcp"]
        port = int(binds[0]["HostPort"])
        assert pn("port", name, "6379", check=True).out.strip() == f"0.0.0.0:{port}"
        deadline = time.monotonic() + READY_WITHIN
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(100).startswith(b"+PONG"):
                        break
            except OSError as e:
                assert time.monotonic() < deadline, f"redis on the -P port {port} never answered: {e}"
            time.sleep(0.1)
    finally:
        pn("rm", "-f", name)


def test_the_record_keeps_the_images_cmd_and_stop_signal(tiers):
    """inspect shows the Cmd the image gave and the StopSignal stop uses (the
    database image's: SIGINT, PostgreSQL's fast shutdown)."""
    image = json.loads(pn("image", "inspect", tiers["db"], check=True).out)[0]["Config"]
    name = f"db-rec-{uuid.uuid4().hex[:6]}"
    pn("run", "-d", "--network", "none", "--name", name, tiers["db"], check=True)
    try:
        cfg = json.loads(pn("inspect", name, check=True).out)[0]["Config"]
        assert cfg["StopSignal"] == image["StopSignal"] == "SIGINT"
        assert cfg["Cmd"] == image.get("Cmd")
        pn("stop", name, check=True)
        assert pn("inspect", "-f", "{{.State.ExitCode}}", name, check=True).out.strip() == "0"
    finally:
        pn("rm", "-f", name)


def test_the_builder_names_a_missing_host_package():
    with pytest.raises(three_tier.BuildError) as e:
        three_tier.package_versions(["busybox-static", "pinnace-no-such-package"])
    assert str(e.value) == ("three-tier images: Debian package(s) pinnace-no-such-package not installed on this "
                            "host (apt-get install -y pinnace-no-such-package)")
