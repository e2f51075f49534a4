#!/usr/bin/env python3
"""A generated test suite where each test takes a fresh sandbox and runs one
command in it: pinnace's pytest plugin (pool off and on) beside the same
suite calling `podman run --rm` and `bwrap` per test, all in one run.

    python3 benches/sandbox_suite.py [--tests 1000] [--peer-tests 100] [--pool 4] [--no-podman]

Each suite is a generated ``test_many.py`` run by this interpreter's pytest:

- baseline: each test runs ``true`` on the host (``subprocess.run``);
- pinnace: each test takes the ``sandbox`` fixture (default image ``host``
  on the default bridge network) and runs ``sandbox.exec_run(["true"])``;
  once without a pool, once with ``--pinnace-pool N``;
- podman: each test runs ``podman run --rm --rootfs DIR true`` (its default
  bridge network; ``--runtime runc`` and the ulimits this host needs);
- bwrap: each test runs ``bwrap --unshare-all`` on the same busybox rootfs.

A conftest hook stamps the start of every test's setup; a test's time is
the distance to the next test's start (so work a fixture leaves on a
background thread between tests counts). The overhead of a suite is its
median test time minus the baseline's median; setup, call and teardown
are the medians of pytest's three phases (for pinnace: taking the sandbox,
the test, giving it back). Peers are slow, so they run
``--peer-tests`` tests (a median is stable long before 1000).

Runs in a network namespace of its own (re-executed under ``unshare
--net``), so the bridges and firewall rules live and die there. Needs root,
pytest, busybox-static, bwrap; podman optional. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from start import busybox_rootfs  # noqa: E402

CONFTEST = '''
import json, os, time
import pytest

STAMPS = []
PHASES = {"setup": [], "call": [], "teardown": []}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    t = time.perf_counter()
    STAMPS.append(t)
    yield
    PHASES["setup"].append(time.perf_counter() - t)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    t = time.perf_counter()
    yield
    PHASES["call"].append(time.perf_counter() - t)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    t = time.perf_counter()
    yield
    PHASES["teardown"].append(time.perf_counter() - t)


def pytest_sessionfinish(session):
    STAMPS.append(time.perf_counter())
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump(dict(PHASES, stamps=STAMPS), f)
'''

PODMAN = ("podman --root {d}/r --runroot {d}/rr --tmpdir {d}/t --network-config-dir {d}/n run --rm --runtime runc "
          "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --rootfs {rootfs} /bin/true")
BWRAP = "bwrap --unshare-all --die-with-parent --ro-bind {rootfs} / --proc /proc --dev /dev /bin/true"


def suite(d: str, n: int, kind: str, argv: list[str] | None = None) -> str:
    os.makedirs(d)
    with open(os.path.join(d, "conftest.py"), "w") as f:
        f.write(CONFTEST)
    with open(os.path.join(d, "test_many.py"), "w") as f:
        f.write("import subprocess\n\n")
        if argv is not None:
            f.write(f"ARGV = {argv!r}\n\n")
        for i in range(n):
            if kind == "pinnace":
                f.write(f"def test_{i}(sandbox):\n    assert sandbox.exec_run(['true']).exit_code == 0\n\n")
            else:
                f.write(f"def test_{i}():\n    subprocess.run(ARGV, check=True)\n\n")
    return d


def run_suite(d: str, env: dict, *args: str) -> tuple[list[float], dict]:
    out = os.path.join(d, "stamps.json")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "pinnace.pytest_plugin", "-p", "no:cacheprovider",
                        *args, d], env=dict(env, BENCH_OUT=out), capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"suite {d} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    with open(out) as f:
        got = json.load(f)
    stamps = got["stamps"]
    return [b - a for a, b in zip(stamps, stamps[1:])], got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--peer-tests", type=int, default=100, help="tests in the podman and bwrap suites")
    ap.add_argument("--pool", type=int, default=4, help="--pinnace-pool N for the pooled run")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.in_netns:
        os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                              sys.executable, *sys.argv, "--in-netns"])
    base = tempfile.mkdtemp(prefix="pinnace-bench-suite-", dir="/var/tmp")
    os.chmod(base, 0o711)
    rootfs = busybox_rootfs(os.path.join(base, "rootfs"))
    env = dict(os.environ, PINNACE_ROOT=os.path.join(base, "root"), PINNACE_RUNROOT=os.path.join(base, "run"))
    podman_dir = tempfile.mkdtemp(prefix="pn", dir="/run")
    results: dict[str, tuple[int, tuple[list[float], dict]]] = {}
    try:
        d = suite(os.path.join(base, "baseline"), a.tests, "plain", ["true"])
        run_suite(d, env)  # warm the page cache and pytest's imports
        results["baseline: subprocess.run(['true'])"] = (a.tests, run_suite(d, env))
        d = suite(os.path.join(base, "pinnace"), a.tests, "pinnace")
        run_suite(d, env, "--pinnace-pool", "0", "-k", "test_1 or test_2")  # warm: the shim binary, the bridge
        results["pinnace sandbox + exec_run, no pool"] = (a.tests, run_suite(d, env, "--pinnace-pool", "0"))
        results[f"pinnace sandbox + exec_run, pool {a.pool}"] = (a.tests, run_suite(d, env, "--pinnace-pool",
                                                                                     str(a.pool)))
        if shutil.which("bwrap"):
            d = suite(os.path.join(base, "bwrap"), a.peer_tests, "plain", BWRAP.format(rootfs=rootfs).split())
            results["bwrap --unshare-all ... true"] = (a.peer_tests, run_suite(d, env))
        if not a.no_podman and shutil.which("podman"):
            d = suite(os.path.join(base, "podman"), a.peer_tests, "plain",
                      PODMAN.format(d=podman_dir, rootfs=rootfs).split())
            run_suite(d, env, "-k", "test_1 or test_2")  # podman's first run sets up its store and network
            results["podman run --rm --rootfs DIR true"] = (a.peer_tests, run_suite(d, env))
    finally:
        subprocess.run([shutil.which("pinnace") or "pinnace", "--root", env["PINNACE_ROOT"], "--runroot",
                        env["PINNACE_RUNROOT"], "system", "prune", "-f"], capture_output=True)
        shutil.rmtree(podman_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    base_median = statistics.median(next(iter(results.values()))[1][0])
    print(f"per-test time of a generated suite, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} cpus, kernel {os.uname().release}")
    print(f"{'':44} {'tests':>6} {'median':>9} {'p90':>9} {'overhead':>9} {'setup':>9} {'call':>9} "
          f"{'teardown':>9}")
    overheads = {}
    for label, (n, (times, phases)) in results.items():
        med = statistics.median(times)
        p90 = sorted(times)[int(len(times) * 0.9)]
        overheads[label] = med - base_median
        print(f"{label:44} {n:6d} {med * 1e3:7.2f}ms {p90 * 1e3:7.2f}ms {(med - base_median) * 1e3:7.2f}ms " +
              " ".join(f"{statistics.median(phases[k]) * 1e3:7.2f}ms" for k in ("setup", "call", "teardown")))
    for peer in [k for k in overheads if k.startswith(("podman", "bwrap"))]:
        for label in [k for k in overheads if k.startswith("pinnace") and overheads[k] > 0]:
            print(f"  {peer.split()[0]}'s overhead / pinnace's ({label.split(', ')[1]}): "
                  f"{overheads[peer] / overheads[label]:.1f}x")


if __name__ == "__main__":
    main()
