"""The pytest plugin, run as a subprocess on generated test files: fixtures,
the marker, xdist, and a killed pytest leaving nothing after the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pinnace
from conftest import container_dirs
from pinnace.errors import ContainerNotFound
from pinnace.pytest_plugin import OWNER_LABEL, WORKER_LABEL, ensure_image, owner_alive, owner_token

TESTS = '''
import json, os, pytest

OUT = os.environ["SANDBOX_OUT"]


def record(key, c):
    with open(os.path.join(OUT, key + ".json"), "w") as f:
        json.dump({"id": c.id, "name": c.name, "labels": c.labels}, f)


def test_fresh(sandbox, pinnace_image):
    record("fresh", sandbox)
    assert pinnace_image == "host" and sandbox.status == "running"
    sandbox.write_file("/tmp/mark", "1")


def test_isolated(sandbox):
    record("isolated", sandbox)
    assert sandbox.exec_run("test -e /tmp/mark").exit_code == 1


@pytest.mark.sandbox(memory="64m", environment={"K": "v"})
def test_marker(sandbox):
    record("marker", sandbox)
    assert sandbox.exec_run("echo $K").output == b"v\\n"
    assert sandbox.stats(interval=0)["memory_limit"] == 64 << 20


def test_factory(sandbox_factory):
    a = sandbox_factory()
    b = sandbox_factory(command=["sh", "-c", "echo hello; sleep infinity"], labels={"role": "b"})
    record("factory-a", a)
    record("factory-b", b)
    assert b.wait_for_log("hello", timeout=10) == "hello" and b.labels["role"] == "b"


def test_fails(sandbox):
    record("fails", sandbox)
    assert False, "fails on purpose"
'''


def _pytest(path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "pinnace.pytest_plugin", "-p", "no:cacheprovider",
                           "-q", *args, str(path)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=path)


def _suite(tmp_path, body: str = TESTS):
    d = tmp_path / "suite"
    out = tmp_path / "out"
    d.mkdir()
    out.mkdir()
    (d / "test_generated.py").write_text(textwrap.dedent(body))
    (d / "pytest.ini").write_text("[pytest]\npinnace_image = host\n")
    return d, out


def _records(out) -> dict:
    return {p.name[:-5]: json.loads(p.read_text()) for p in out.iterdir() if p.suffix == ".json"}


def _gone(cid: str) -> bool:
    try:
        pinnace.from_env().containers.get(cid)
    except ContainerNotFound:
        return True
    return False


@pytest.mark.parametrize("workers, pool", [(None, None), ("2", None), (None, "2"), ("2", "1")])
def test_fixtures_marker_and_cleanup(tmp_path, store, workers, pool):
    d, out = _suite(tmp_path)
    args = (["-n", workers] if workers else []) + (["--pinnace-pool", pool] if pool else [])
    r = _pytest(d, *args, env={"SANDBOX_OUT": str(out)})
    assert "1 failed, 4 passed" in r.stdout, r.stdout + r.stderr
    assert "fails on purpose" in r.stdout
    recs = _records(out)
    assert sorted(recs) == ["factory-a", "factory-b", "fails", "fresh", "isolated", "marker"]
    if pool:
        # pooled sandboxes are used again, each reset in between (test_isolated
        # passed: the file test_fresh wrote was gone): as many as the pool holds
        pooled = {recs[k]["id"] for k in ("fresh", "isolated", "fails")}
        assert len(pooled) <= int(pool) * (int(workers) if workers else 1)
        assert len({rec["id"] for rec in recs.values()}) == 3 + len(pooled)
    else:
        assert len({rec["id"] for rec in recs.values()}) == 6
    workers_seen = set()
    for rec in recs.values():
        worker = rec["labels"][WORKER_LABEL]
        workers_seen.add(worker)
        assert rec["name"].startswith(f"pytest-{worker}-")
        assert not owner_alive(rec["labels"][OWNER_LABEL])  # that pytest has ended
        assert _gone(rec["id"]), rec  # removed at teardown, the failing test's too
    assert workers_seen == ({"master"} if not workers else workers_seen & {"gw0", "gw1"})
    if workers:
        assert workers_seen  # names and labels carry the xdist worker
    assert not container_dirs(store)


def test_killed_pytest_takes_its_sandbox_along_and_the_next_run_sweeps_it(tmp_path, store):
    d, out = _suite(tmp_path, '''
        import os, time

        def test_hangs(sandbox):
            with open(os.path.join(os.environ["SANDBOX_OUT"], "id.tmp"), "w") as f:
                f.write(sandbox.id)
            os.rename(f.name, f.name[:-4])
            time.sleep(120)
        ''')
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "pinnace.pytest_plugin", "-p", "no:cacheprovider",
                             "-q", str(d)], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, SANDBOX_OUT=str(out)))
    deadline = time.monotonic() + 60
    while not (out / "id").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the generated test never started"
        time.sleep(0.02)
    cid = (out / "id").read_text()
    c = pinnace.from_env().containers.get(cid)
    assert c.status == "running" and owner_alive(c.labels[OWNER_LABEL])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # its supervisor saw the pytest process go: the sandbox died with it
    assert c.wait(timeout=5)["StatusCode"] == 137
    assert not owner_alive(c.labels[OWNER_LABEL])
    # the next session's first sandbox sweeps what is left
    (d / "test_generated.py").write_text("def test_next(sandbox):\n    assert sandbox.status == 'running'\n")
    r = _pytest(d)
    assert "1 passed" in r.stdout, r.stdout + r.stderr
    assert _gone(cid)
    assert not container_dirs(store)


def test_owner_token_names_one_process():
    token = owner_token()
    assert token.startswith(f"{os.getpid()}:") and owner_alive(token)
    pid, _, start = token.partition(":")
    assert not owner_alive(f"{pid}:{int(start) + 1}")  # a reused pid is another process
    assert not owner_alive("garbage")


def test_an_image_is_pulled_once_however_many_workers_ask(tmp_path, store):
    # two processes at once, each with a client whose pull takes a while
    script = textwrap.dedent('''
        import os, sys, time
        from pinnace.errors import ImageNotFound
        from pinnace.pytest_plugin import ensure_image
        marker, log = sys.argv[1], sys.argv[2]

        class Images:
            def get(self, name):
                if not os.path.exists(marker):
                    raise ImageNotFound(name)
            def pull(self, name):
                with open(log, "a") as f:
                    f.write("pull\\n")
                time.sleep(0.3)
                open(marker, "w").close()

        class Client:
            runroot = os.environ["PINNACE_RUNROOT"]
            images = Images()

        ensure_image(Client(), "registry.example/app:1")
        ''')
    args = [sys.executable, "-c", script, str(tmp_path / "pulled"), str(tmp_path / "log")]
    procs = [subprocess.Popen(args) for _ in range(3)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0]
    assert (tmp_path / "log").read_text() == "pull\n"
    assert ensure_image(None, "host") == "host"  # built in: nothing to pull


def test_command_line_options_pick_image_and_store(tmp_path):
    d, out = _suite(tmp_path, '''
        def test_uses_the_image(sandbox):
            pass
        ''')
    root, runroot = tmp_path / "root", tmp_path / "run"
    r = _pytest(d, "--pinnace-image", "127.0.0.1:1/nosuch:1", "--pinnace-root", str(root),
                "--pinnace-runroot", str(runroot))
    # the image asked for is pulled (here: from a registry that is not there), under the store given
    assert "1 error" in r.stdout and "cannot reach registry 127.0.0.1:1" in r.stdout, r.stdout + r.stderr
    assert (runroot / "pytest").is_dir() and not (root / "containers").exists()
