"""``pinnace.run`` in-process: the same container, no CLI subprocess."""

from __future__ import annotations

import os
import threading

import pytest

import pinnace
from pinnace.errors import ExecError, PinnaceError, UsageError
from conftest import container_dirs


def test_run_returns_exit_code_stdout_stderr(store):
    r = pinnace.run("host", ["sh", "-c", "echo hi; echo oops >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr) == (7, b"hi\n", b"oops\n")
    assert len(r.id) == 64 and r.name
    assert container_dirs(store) == []


def test_string_command_input_env_and_options(tmp_path):
    (tmp_path / "f").write_text("vol\n")
    r = pinnace.run("host", "cat; echo $A; cat /v/f; pwd; hostname", input=b"in\n", env={"A": "1"},
                    volumes=[f"{tmp_path}:/v:ro"], workdir="/w", hostname="apihost")
    assert r.output.splitlines() == ["in", "1", "vol", "/w", "apihost"]


def test_missing_command_raises_exec_error_with_127():
    with pytest.raises(ExecError) as e:
        pinnace.run("host", ["definitely-not-a-command"])
    assert e.value.exit_code == 127
    assert str(e.value) == 'exec: "definitely-not-a-command": executable file not found in $PATH'


def test_timeout_kills_with_sigkill():
    r = pinnace.run("host", ["sleep", "30"], timeout=0.3)
    assert r.timed_out and r.exit_code == 137 and r.signal == 9


def test_bad_options_raise_before_anything_is_made(store):
    with pytest.raises(UsageError):
        pinnace.run("host", ["true"], volumes=["nope"])
    with pytest.raises(UsageError):
        pinnace.run("host", ["true"], no_such_option=1)
    with pytest.raises(PinnaceError):
        pinnace.run("no-such-image", ["true"])
    assert container_dirs(store) == []


def test_kept_container_and_rootfs(busybox_rootfs, store):
    r = pinnace.run(rootfs=str(busybox_rootfs), command=["sh", "-c", "echo $$"], remove=False)
    assert r.stdout == b"1\n"
    assert r.id in container_dirs(store)
    from pinnace.containers import Store

    s = Store(store["root"], store["runroot"])
    assert s.state(r.id)["State"]["ExitCode"] == 0
    s.remove(r.id)
    assert container_dirs(store) == []


def test_concurrent_runs_from_threads_never_deadlock():
    """The child is cloned from a multi-threaded interpreter: it must not
    take any lock another thread held (glibc's setxid broadcast did)."""
    for _ in range(10):
        results = []

        def worker():
            results.append(pinnace.run("host", ["echo", "ok"], user="1000").stdout)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert results == [b"ok\n"] * 4


def test_runs_release_the_gil_and_run_in_parallel():
    results = []

    def worker():
        results.append(pinnace.run("host", ["sh", "-c", "sleep 0.3; echo done"]).stdout)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    # the interpreter stays responsive while containers run
    ticks = 0
    while any(t.is_alive() for t in threads):
        ticks += 1
        threads[0].join(0.01)
    for t in threads:
        t.join()
    assert results == [b"done\n"] * 4
    assert ticks > 5


def test_create_then_start_split(busybox_rootfs):
    """The core's two steps: created (parked before exec), then started."""
    import json

    from pinnace import _core

    rootfs = str(busybox_rootfs)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh", "-c", "echo started"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                                "env": ["PATH=/bin"]},
        "root": {"path": rootfs, "readonly": True},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]},
    }
    p = _core.create(json.dumps(spec))
    with open(f"/proc/{p.pid}/comm") as f:
        # parked: still our own image, not yet sh
        assert f.read().strip() != "sh"
    p.start()
    code, sig, out, err, *_ = p.wait()
    assert (code, out) == (0, b"started\n")
    assert not os.path.exists(f"/proc/{p.pid}")


def test_removal_is_immediate_for_names_and_ps_and_finishes_on_disk(store):
    r = pinnace.run("host", ["true"], name="quick-gone")
    # the name is free and ps forgets it at once
    assert pinnace.run("host", ["true"], name="quick-gone").exit_code == 0
    from pinnace.containers import Store

    assert r.id not in Store(store["root"], store["runroot"]).ids()
    assert container_dirs(store) == []


def test_interpreter_exit_waits_for_background_removal(store, tmp_path):
    import subprocess
    import sys

    code = "import pinnace\nfor _ in range(5): pinnace.run('host', ['sh', '-c', 'head -c 1000000 /dev/zero > /big'])\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert container_dirs(store) == []
    d = os.path.join(store["root"], "containers")
    assert not [x for x in os.listdir(d) if x.startswith(".")]


def test_public_names_import_both_ways():
    from pinnace import errors, images, pull, run, stats  # noqa: F401

    assert pinnace.errors.LayerError is errors.LayerError
    assert callable(pinnace.images) and callable(pinnace.pull)
