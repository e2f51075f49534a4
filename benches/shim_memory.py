"""Memory of idle shims: start N detached `sleep` containers, read each
shim's PSS/RSS from /proc/PID/smaps_rollup, then remove them all.

    python benches/shim_memory.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def rollup(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def main() -> None:
    from pinnace import images
    from pinnace.config import RunOptions
    from pinnace.containers import Store
    from pinnace.containers.detached import start_detached

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    base = tempfile.mkdtemp(prefix="pinnace-shim-mem-", dir="/var/tmp")
    store = Store(os.path.join(base, "root"), os.path.join(base, "run"))
    img = images.for_run("host", store.root)
    started = []
    shims: list[int] = []
    try:
        t = time.monotonic()
        for _ in range(n):
            started.append(start_detached(store, img, RunOptions(command=["sleep", "1000"], remove=True, network="none")))
        per = (time.monotonic() - t) / n * 1000
        time.sleep(1)
        rows = []
        for cid, pid in started:
            # the shim is the container's parent
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            shims.append(ppid)
            rows.append(rollup(ppid))
        pss = [r["Pss"] for r in rows]
        rss = [r["Rss"] for r in rows]
        anon = [r.get("Pss_Anon", 0) for r in rows]
        print(f"{n} idle shims: start {per:.1f} ms each; PSS avg {sum(pss) / n:.0f} kB "
              f"(min {min(pss)}, max {max(pss)}; anon {sum(anon) / n:.0f} kB); RSS avg {sum(rss) / n:.0f} kB")
    finally:
        from pinnace import _core

        for cid, pid in started:
            _core.cgroup_kill(f"pinnace/{cid}")
        deadline = time.monotonic() + 10
        # the shims remove their containers (remove=True), then exit (init
        # reaps them)
        while any(os.path.exists(f"/proc/{p}") for p in shims + [p for _, p in started]) and time.monotonic() < deadline:
            time.sleep(0.05)
        while any(os.path.isdir(store.paths(c).dir) for c, _ in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        store.prune()
        _core.remove_tree(base)


if __name__ == "__main__":
    main()
