"""Usage of running containers, read from their cgroups, in docker's terms."""

from __future__ import annotations

import time

from pinnace import _core
from pinnace.containers import Store, cgroup_path


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def human(n: float, binary: bool = True) -> str:
    base, units = (1024.0, ("B", "KiB", "MiB", "GiB", "TiB")) if binary else (1000.0, ("B", "kB", "MB", "GB", "TB"))
    for u in units:
        if abs(n) < base or u == units[-1]:
            return f"{n:.0f}{u}" if u == "B" else f"{n:.3g}{u}"
        n /= base
    return f"{n}"


def sample(store: Store, cid: str) -> tuple[float, dict] | None:
    st = store.state(cid) or {}
    raw = _core.cgroup_stats(st.get("CgroupPath") or cgroup_path(cid))
    return (time.monotonic(), raw) if raw is not None else None


def summarize(cid: str, name: str, first: tuple[float, dict] | None, last: tuple[float, dict]) -> dict:
    """One container's line, as `docker stats` computes it: memory usage
    without inactive page cache, CPU % over the interval between samples
    (100% = one CPU busy), the host's memory as the limit when unlimited."""
    t1, s = last
    cpu = 0.0
    if first is not None and t1 > first[0]:
        cpu = (s["cpu_usage_ns"] - first[1]["cpu_usage_ns"]) / ((t1 - first[0]) * 1e9) * 100
    usage = max(0, s["memory_usage"] - s["memory_inactive_file"])
    limit = s["memory_limit"] or host_memory()
    return {
        "id": cid,
        "name": name,
        "cpu_percent": round(max(cpu, 0.0), 2),
        "memory_usage": usage,
        "memory_limit": limit,
        "memory_percent": round(usage / limit * 100, 2) if limit else 0.0,
        "pids": s["pids_current"],
        "block_read": s["io_read_bytes"],
        "block_write": s["io_write_bytes"],
        "raw": s,
    }


def stats(store: Store, ids: list[str], interval: float = 0.5) -> list[dict]:
    """One reading per container, CPU % measured over ``interval`` seconds."""
    names = {cid: (store.state(cid) or {}).get("Name", "").lstrip("/") for cid in ids}
    first = {cid: sample(store, cid) for cid in ids}
    if interval > 0:
        time.sleep(interval)
    out = []
    for cid in ids:
        last = sample(store, cid)
        if last is not None:
            out.append(summarize(cid, names[cid], first[cid], last))
    return out


def docker_json(s: dict) -> dict:
    """The shape of `docker stats --format json`, plus the raw counters."""
    return {
        "BlockIO": f"{human(s['block_read'], False)} / {human(s['block_write'], False)}",
        "CPUPerc": f"{s['cpu_percent']:.2f}%",
        "Container": s["id"][:12],
        "ID": s["id"][:12],
        "MemPerc": f"{s['memory_percent']:.2f}%",
        "MemUsage": f"{human(s['memory_usage'])} / {human(s['memory_limit'])}",
        "Name": s["name"],
        "NetIO": "0B / 0B",
        "PIDs": str(s["pids"]),
        "Raw": s["raw"],
    }
