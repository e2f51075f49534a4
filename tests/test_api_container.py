"""The Container object: the lifecycle verbs from Python."""

from __future__ import annotations

import subprocess
import time

import pytest

import pinnace
from conftest import PINNACE, pn
from pinnace.errors import Conflict, ContainerNotFound, ExecTimeout


@pytest.fixture
def running():
    proc = subprocess.Popen([PINNACE, "run", "--rm", "--name", "apictr", "host", "sh", "-c",
                             'trap "exit 9" TERM; echo ready > /tmp/r; while :; do sleep 0.05; done'])
    deadline = time.monotonic() + 20
    while True:
        try:
            c = pinnace.container("apictr")
            if c.status == "running" and c.exec_run(["cat", "/tmp/r"]).exit_code == 0:
                break
        except (ContainerNotFound, Conflict):
            pass
        assert time.monotonic() < deadline, "container did not start"
        time.sleep(0.05)
    yield c, proc
    pn("kill", "apictr")  # the run then removes it (killing the run itself would orphan it)
    proc.wait(timeout=20)


def test_exec_run_unpacks_like_docker_py_and_demuxes(running):
    c, _ = running
    code, out = c.exec_run("echo out; echo err >&2; exit 3")
    assert code == 3 and out == b"out\nerr\n"
    r = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert r.output == (b"out\n", b"err\n")
    assert c.exec_run(["cat"], input=b"piped").output == b"piped"
    with pytest.raises(ExecTimeout):
        c.exec_run(["sleep", "10"], timeout=0.3)


def test_attrs_top_list_and_stop(running):
    c, proc = running
    assert c.name == "apictr" and c.attrs["State"]["Pid"] > 0
    assert any("sleep" in row[-1] or "sh -c" in row[-1] for row in c.top()[1:])
    assert c.id in [x.id for x in pinnace.list_containers()]
    c.stop(timeout=5)
    assert proc.wait(timeout=20) == 9
    with pytest.raises(ContainerNotFound):
        c.status  # noqa: B018 - auto-removed


def test_wait_times_out_then_returns_the_exit_code():
    proc = subprocess.Popen([PINNACE, "run", "--name", "apiwait", "host", "sh", "-c", "sleep 1; exit 6"])
    try:
        deadline = time.monotonic() + 20
        while pn("inspect", "-f", "{{.State.Running}}", "apiwait").out.strip() != "true":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pinnace.container("apiwait") as c:
            with pytest.raises(TimeoutError):
                c.wait(timeout=0.1)
            assert c.wait()["StatusCode"] == 6
        # the with block removed it
        assert pn("inspect", "apiwait").returncode != 0
    finally:
        proc.wait(timeout=20)
