#!/usr/bin/env python3
"""What the pytest plugin's ``sandbox`` fixture costs a test.

    python3 benches/sandbox_fixture.py [--tests N] [--exec] [--sync-teardown] [--pool N]

Generates N tests that each take a fresh ``sandbox`` (with ``--exec``: and
run ``true`` in it; with ``--work MS``: and sleep that long, as a test
doing its own work), and the same N tests without the fixture, runs both
suites with this interpreter's pytest against a temporary store, and prints
per test: the median setup and teardown of the fixture (timed by a
conftest hook around pytest's setup and teardown phases) and the wall time
per test of each suite, whose difference is the overhead a test pays.
``--sync-teardown`` removes each sandbox in the teardown itself instead of
on the plugin's cleanup worker, for comparison; ``--pool N`` runs the
fixture suite with ``--pinnace-pool N`` (sandboxes started ahead).
Needs root; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFTEST = '''
import json, os, time
import pytest

TIMES = {"setup": [], "teardown": []}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    t = time.perf_counter()
    yield
    TIMES["setup"].append(time.perf_counter() - t)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    t = time.perf_counter()
    yield
    TIMES["teardown"].append(time.perf_counter() - t)


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump(TIMES, f)
'''


SYNC_TEARDOWN = '''
import pinnace.pytest_plugin as plugin


def _remove_now(containers):
    for c in containers:
        c.remove(force=True)


plugin._remove_all = _remove_now
'''


def suite(d: str, n: int, fixture: bool, run: bool, sync_teardown: bool = False, work: float = 0) -> None:
    os.makedirs(d)
    with open(os.path.join(d, "conftest.py"), "w") as f:
        f.write(CONFTEST + (SYNC_TEARDOWN if sync_teardown else ""))
    body = "    sandbox.exec_run(['true'])\n" if run and fixture else "    pass\n"
    if work:
        body += f"    __import__('time').sleep({work / 1000})\n"
    with open(os.path.join(d, "test_many.py"), "w") as f:
        for i in range(n):
            f.write(f"def test_{i}({'sandbox' if fixture else ''}):\n{body}\n")


def run_suite(d: str, env: dict, *args: str) -> tuple[float, dict]:
    out = os.path.join(d, "times.json")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "pinnace.pytest_plugin", "-p", "no:cacheprovider",
                        *args, d], env=dict(env, BENCH_OUT=out), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(r.stdout + r.stderr)
    with open(out) as f:
        return wall, json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=100)
    ap.add_argument("--exec", action="store_true", help="each test runs `true` in its sandbox")
    ap.add_argument("--sync-teardown", action="store_true", help="remove each sandbox in its teardown")
    ap.add_argument("--work", type=float, default=0, help="each test also sleeps this many ms (its own work)")
    ap.add_argument("--pool", type=int, default=0, help="--pinnace-pool N: sandboxes started ahead")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="pinnace-bench-fixture-", dir="/var/tmp")
    os.chmod(base, 0o711)
    env = dict(os.environ, PINNACE_ROOT=os.path.join(base, "root"), PINNACE_RUNROOT=os.path.join(base, "run"))
    suite(os.path.join(base, "with"), args.tests, True, args.exec, args.sync_teardown, args.work)
    suite(os.path.join(base, "without"), args.tests, False, args.exec, work=args.work)
    pool = ("--pinnace-pool", str(args.pool))
    run_suite(os.path.join(base, "with"), env, *pool)  # warm: the host image, the shim binary, the page cache
    wall_with, times = run_suite(os.path.join(base, "with"), env, *pool)
    wall_without, base_times = run_suite(os.path.join(base, "without"), env)
    ms = lambda v: f"{v * 1e3:7.2f} ms"  # noqa: E731
    n = args.tests
    print(f"{n} tests{' (each: exec true)' if args.exec else ''}{' (sync teardown)' if args.sync_teardown else ''}"
          f"{f' (pool {args.pool})' if args.pool else ''}{f' (each sleeps {args.work:g} ms)' if args.work else ''}")
    print(f"  sandbox setup     median {ms(statistics.median(times['setup']))}   "
          f"(no fixture: {ms(statistics.median(base_times['setup']))})")
    print(f"  sandbox teardown  median {ms(statistics.median(times['teardown']))}   "
          f"(no fixture: {ms(statistics.median(base_times['teardown']))})")
    print(f"  wall per test     with {ms(wall_with / n)}   without {ms(wall_without / n)}   "
          f"overhead {ms((wall_with - wall_without) / n)}")
    subprocess.run(["pinnace", "--root", env["PINNACE_ROOT"], "--runroot", env["PINNACE_RUNROOT"], "system", "prune",
                    "-f"], capture_output=True)
    import shutil

    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
