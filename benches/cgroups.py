#!/usr/bin/env python3
"""What limits cost at start: in-process `pinnace.run('host', ['true'])`
without limits and with memory, cpu and pids limits, side by side in one run.

    python3 benches/cgroups.py [--runs N]

Every pinnace container has its own cgroup; the difference measured here is
the limit files written on top. Needs root. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def median_ms(runs: int, **opts) -> float:
    import pinnace

    for _ in range(10):
        pinnace.run("host", ["true"], network="none", **opts)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = pinnace.run("host", ["true"], network="none", **opts)
        times.append((time.perf_counter() - t) * 1000)
        assert r.exit_code == 0
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    a = ap.parse_args()
    store = tempfile.mkdtemp(prefix="pinnace-bench-cg-", dir="/var/tmp")
    os.environ["PINNACE_ROOT"] = os.path.join(store, "root")
    os.environ["PINNACE_RUNROOT"] = os.path.join(store, "run")
    from pinnace import _core

    limits = {"memory": "256m", "cpus": 1, "pids_limit": 100}
    try:
        # interleave the two so that drift on the machine hits both alike
        plain, limited = [], []
        for _ in range(3):
            plain.append(median_ms(a.runs // 3))
            limited.append(median_ms(a.runs // 3, **limits))
    finally:
        from pinnace.containers import Store, drain_background_removals

        drain_background_removals()
        Store(os.environ["PINNACE_ROOT"], os.environ["PINNACE_RUNROOT"]).prune()
        shutil.rmtree(store, ignore_errors=True)
    p, l = statistics.median(plain), statistics.median(limited)
    print(f"in-process start-to-exit of `true`, cgroups {_core.cgroup_mode()}, {a.runs} runs each, "
          f"{time.strftime('%Y-%m-%d')}, kernel {os.uname().release}")
    print(f"{'no limits':40} {p:8.2f} ms")
    print(f"{'--memory 256m --cpus 1 --pids-limit 100':40} {l:8.2f} ms")
    print(f"{'difference':40} {l - p:8.2f} ms")


if __name__ == "__main__":
    main()
