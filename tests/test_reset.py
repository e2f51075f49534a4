"""Container.reset: a sandbox back to its image's state, same identity and
network, started again by its own supervisor (or as ``start`` for a stopped
one). That a reset sandbox still dies with its owner: test_sdk.py."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import pinnace
from conftest import pn

IDLE = ["sleep", "infinity"]


@pytest.fixture(scope="module")
def client():
    with pinnace.from_env() as c:
        yield c


def test_reset_brings_back_the_image_and_keeps_identity_and_network(client):
    pn("network", "create", "reset-net", check=True)
    try:
        with client.containers.run("host", IDLE, detach=True, name="reset-me", network="reset-net",
                                   labels={"k": "v"}) as c:
            ip = c.attrs["NetworkSettings"]["Networks"]["reset-net"]["IPAddress"]
            pid = c.attrs["State"]["Pid"]
            c.write_file("/tmp/left-by-test", "x")
            assert c.exec_run("rm /etc/passwd").exit_code == 0
            c.exec_run("sleep 1000", detach=True)
            assert os.path.exists(os.path.join(c._store.paths(c.id).dir, "upper", "tmp", "left-by-test"))
            c.reset()
            c.reload()
            assert c.status == "running" and c.attrs["State"]["Pid"] not in (0, pid)
            assert (c.name, c.labels["k"]) == ("reset-me", "v")
            assert c.attrs["NetworkSettings"]["Networks"]["reset-net"]["IPAddress"] == ip
            r = c.exec_run("sh -c 'ls /tmp; test -f /etc/passwd && echo passwd-back; ip -4 -o addr show eth0; "
                           "ps -eo args | grep -c \"^sleep 1000\"; true'")
            out = r.output.decode()
            assert r.exit_code == 0, out
            assert "left-by-test" not in out and "passwd-back" in out
            assert ip in out  # the same interface, kept with its namespace
            assert out.strip().endswith("\n0")  # the old processes are gone
            assert not os.path.exists(os.path.join(c._store.paths(c.id).dir, "upper", "tmp", "left-by-test"))
            # a peer on the network still reaches it by name
            ping = pn("run", "--rm", "--network", "reset-net", "host", "busybox", "ping", "-c1", "-W2", "reset-me")
            assert ping.returncode == 0, ping.err
            # reset again: the supervisor keeps answering
            c.reset()
            assert c.exec_run("true").exit_code == 0
        assert pn("ps", "-a", "--filter", "name=reset-me", "-q").out.strip() == ""
    finally:
        pn("network", "rm", "reset-net")


def test_reset_keeps_published_ports(client):
    with client.containers.run("host", ["busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"], detach=True,
                               ports={"8080/tcp": None}) as c:
        port = int(c.ports["8080/tcp"][0]["HostPort"])
        c.wait_for_port(8080, timeout=10)
        c.reset()
        c.reload()
        assert int(c.ports["8080/tcp"][0]["HostPort"]) == port
        c.wait_for_port(8080, timeout=10)
        out = subprocess.run(["busybox", "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/hostname"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and out.stdout.strip() == c.attrs["Config"]["Hostname"]


def test_reset_of_a_stopped_container_starts_it_on_the_image(client):
    with client.containers.run("host", ["sh", "-c", "echo ran >> /marker; cat /marker; exit 3"], detach=True) as c:
        assert c.wait(timeout=10)["StatusCode"] == 3
        c.reset()  # stopped: a fresh filesystem, started again
        assert c.wait(timeout=10)["StatusCode"] == 3
        c.start()  # a plain start keeps the filesystem
        c.wait(timeout=10)
        assert c.logs() == b"ran\n" + b"ran\n" + b"ran\nran\n"


def test_reset_of_a_running_container_gives_its_command_a_fresh_filesystem(client):
    with client.containers.run("host", ["sh", "-c", "echo ran >> /marker; cat /marker; sleep infinity"],
                               detach=True) as c:
        c.wait_for_log("ran", timeout=10)
        c.reset()
        r = c.exec_run(["sh", "-c", "while ! test -s /marker; do sleep 0.05; done; cat /marker"], timeout=10)
        assert r.output == b"ran\n"
        c.wait_for_log("ran", timeout=10)
        deadline = time.monotonic() + 10
        while c.logs() != b"ran\nran\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.logs() == b"ran\nran\n"  # the log is kept across the reset, as across a restart


def test_the_idle_init_reaps_orphans_and_stops_at_sigterm(client):
    from pinnace.config import IDLE_COMMAND

    with client.containers.run("host", IDLE_COMMAND, init=True, detach=True) as c:
        # an exec that leaves a child behind: orphaned to the container's PID 1
        assert c.exec_run(["sh", "-c", "sleep 0.2 & exit 0"]).exit_code == 0
        deadline = time.monotonic() + 10
        while True:
            states = c.exec_run(["ps", "-eo", "stat="]).output.split()
            if len(states) <= 2 or time.monotonic() > deadline:  # the init and ps itself
                break
            time.sleep(0.1)
        assert not [s for s in states if s.startswith(b"Z")], states
        c.stop(timeout=30)
        c.reload()
        # SIGTERM ended it (0), not the SIGKILL after the grace period (137)
        assert c.attrs["State"]["ExitCode"] == 0 and c.status == "exited"


@pytest.mark.parametrize("kind", ["remove", "volatile"])
def test_a_volatile_root_is_reset_and_started_again(client, kind):
    # a volatile overlay (auto-removed containers', sandboxes') marks its work
    # directory so that a plain second mount is refused: both need a fresh one
    with client.containers.run("host", ["sh", "-c", "echo x >> /f; cat /f; sleep infinity"], detach=True,
                               **{kind: True}) as c:
        c.wait_for_log("x", timeout=10)
        c.reset()
        r = c.exec_run(["sh", "-c", "while ! test -s /f; do sleep 0.05; done; cat /f"], timeout=10)
        assert r.output == b"x\n"
        if kind == "volatile":
            c.stop(timeout=0)
            c.start()  # keeps its files: the second line
            r = c.exec_run(["sh", "-c", "while ! grep -c x /f | grep -q 2; do sleep 0.05; done; cat /f"], timeout=10)
            assert r.output == b"x\nx\n"
