#!/usr/bin/env python3
"""Detached containers: start N `sleep 600` containers one after another with
`pinnace run -d --rm` (CLI), with `start_detached` (Python API, one process)
and with `podman run -d --rm` (runc), interleaved in one run; then the memory
of the idle supervisors (pinnace-shim against podman's conmon); then remove
everything and check that nothing is left.

    python3 benches/detached.py [--count N] [--no-podman] [--pinnace PATH]

Needs root, busybox-static, podman (optional), runc. pinnace is this checkout
built into a clean virtualenv of its own under /var/tmp/pinnace-bench, as
benches/start.py does (--pinnace PATH uses that command instead); the API
runs in a worker process of that virtualenv's Python, which starts one
container per request and times `start_detached` alone (the image is
resolved once, as a program would). Stores are temporary: pinnace's --root
under /var/tmp/pinnace-bench, its --runroot under /run; podman's --root,
--runroot and --tmpdir under /run (short paths: podman refuses long
runroots), `--rootfs` of a busybox directory, `--network none`, the ulimits
this host needs. Each round starts one container with each tool, the rounds
going through every order of the tools in turn, after a few warm-up
containers each (removed before the measured ones); `python -c pass` of the
venv is timed among them as a reference (what the interpreter's start costs
any Python CLI). Times are wall time around each CLI call (subprocess start
included, the same for both CLIs) or around the API call.

Memory: with all containers idle, PSS, USS (private) and RSS from
/proc/PID/smaps_rollup of each pinnace-shim and each conmon: the extra
process each tool keeps per detached container. PSS of shared pages
depends on how many copies run, so the supervisors are compared N against
N (after the API's containers are removed); the figure with all 2N shims
is shown too. Prints medians, ratios and the issue 5 targets (10x faster
than podman per container; at most 0.5 MB PSS per idle container); nothing
is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from pull import machine, mounts_under, out, unmount_all_under  # noqa: E402
from start import WORK, busybox_rootfs, clean_venv_pinnace  # noqa: E402

TARGET_SPEEDUP = 10.0  # issue 5: 10x faster than podman per container
TARGET_PSS = 500_000  # issue 5: at most 0.5 MB PSS per idle container (bytes; 488 KiB)
WARMUP = 3
SLEEP = ["sleep", "600"]
PODMAN_FLAGS = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
                "--ulimit", "nproc=1024:1024"]


# --- the API worker (runs in the venv's Python) ---------------------------------------


def api_worker(root: str, runroot: str) -> None:
    """One container per line read: `start` -> {"ms", "id", "pid"} (or {"error"})."""
    import pinnace
    from pinnace import images
    from pinnace.config import RunOptions
    from pinnace.containers import Store
    from pinnace.containers.detached import start_detached

    store = Store(root, runroot)
    img = images.resolve("host", root)
    print(json.dumps({"ready": True, "pinnace": pinnace.__file__}), flush=True)
    for line in sys.stdin:
        if line.strip() != "start":
            break
        t = time.perf_counter()
        try:
            cid, pid = start_detached(store, img, RunOptions(command=list(SLEEP), remove=True, network="none"))
        except Exception as e:  # reported, the run goes on
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
            continue
        ms = (time.perf_counter() - t) * 1000
        print(json.dumps({"ms": ms, "id": cid, "pid": pid}), flush=True)


# --- the tools ---------------------------------------------------------------------------


class Tool:
    name = ""
    short = ""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.ids: list[str] = []  # measured containers
        self.warm_ids: list[str] = []
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def start_one(self) -> tuple[float, str] | None:
        raise NotImplementedError

    def once(self, record: bool = True) -> None:
        r = self.start_one()
        if r is None:
            return
        ms, cid = r
        if record:
            self.times.append(ms)
            self.ids.append(cid)
        else:
            self.warm_ids.append(cid)


class Cli(Tool):
    """A CLI timed around the subprocess; stdout to a file (a detached
    supervisor that kept a pipe open would otherwise be waited for)."""

    def __init__(self, argv: list[str], scratch: str) -> None:
        super().__init__()
        self.argv = argv
        self.out = open(os.path.join(scratch, f"{self.short}.out"), "w+")

    def start_one(self):
        self.out.seek(0)
        self.out.truncate()
        t = time.perf_counter()
        r = subprocess.run(self.argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.PIPE,
                           text=True)
        ms = (time.perf_counter() - t) * 1000
        self.out.seek(0)
        cid = self.out.read().strip()
        if r.returncode != 0 or len(cid) != 64:
            self.error(f"$ {' '.join(self.argv)}\nexit {r.returncode}: {r.stderr.strip()[-1000:]} {cid[:200]}")
            return None
        return ms, cid


class PythonRef(Cli):
    """Not a container: the interpreter's start, what any Python CLI pays."""
    name = "venv python -c pass (reference, no container)"
    short = "python"

    def start_one(self):
        t = time.perf_counter()
        r = subprocess.run(self.argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.PIPE)
        ms = (time.perf_counter() - t) * 1000
        if r.returncode != 0:
            self.error(f"$ {' '.join(self.argv)}\nexit {r.returncode}")
            return None
        return ms, ""


class PinnaceCli(Cli):
    name = "pinnace run -d --rm host sleep 600 (CLI)"
    short = "cli"


class PodmanCli(Cli):
    name = "podman run -d --rm --rootfs DIR sleep 600"
    short = "podman"


class PinnaceApi(Tool):
    name = "start_detached(store, 'host', sleep 600) (API)"
    short = "api"

    def __init__(self, python: str, root: str, runroot: str) -> None:
        super().__init__()
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--api-worker", root, runroot],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(self.proc.stdout.readline() or '{"error": "the worker died"}')
        if not hello.get("ready"):
            raise RuntimeError(f"API worker: {hello}")
        self.module = hello["pinnace"]

    def start_one(self):
        self.proc.stdin.write("start\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        msg = json.loads(line) if line else {"error": "the worker died"}
        if "error" in msg:
            self.error(f"start_detached: {msg['error']}")
            return None
        return msg["ms"], msg["id"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child
                self.proc.wait()


# --- processes and memory ----------------------------------------------------------------


def rollup(pid: int) -> dict[str, int] | None:
    """smaps_rollup in kB (KiB), with Uss = Private_Clean + Private_Dirty."""
    res: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    res[parts[0].rstrip(":")] = int(parts[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    res["Uss"] = res.get("Private_Clean", 0) + res.get("Private_Dirty", 0)
    return res


def processes() -> dict[int, dict]:
    """pid -> {ppid, comm, exe, cmdline} of every process now."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        procs[pid] = {"ppid": ppid, "comm": comm, "exe": exe,
                      "cmdline": [c.decode(errors="replace") for c in cmdline if c]}
    return procs


def pinnace_cid(pid: int) -> str | None:
    """The container id from a process's `pinnace/<id>` cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                path = line.rstrip("\n").split(":", 2)[2]
                if "/pinnace/" in path + "/" and path.rsplit("/", 1)[-1]:
                    parts = path.strip("/").split("/")
                    if len(parts) >= 2 and parts[-2] == "pinnace":
                        return parts[-1]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def shims(procs: dict[int, dict], shim_dir: str) -> dict[int, str | None]:
    """This store's pinnace-shim processes -> the id of the container each runs."""
    found = {p: None for p, i in procs.items() if i["exe"].startswith(shim_dir + "/")}
    for pid, info in procs.items():
        if info["ppid"] in found:
            found[info["ppid"]] = pinnace_cid(pid) or found[info["ppid"]]
    return found


def conmons(procs: dict[int, dict], podman_dir: str) -> dict[int, str | None]:
    """conmon processes of this run's podman store -> their container ids."""
    found = {}
    for pid, info in procs.items():
        if info["comm"] == "conmon" and any(podman_dir + "/" in a for a in info["cmdline"]):
            cmd = info["cmdline"]
            found[pid] = cmd[cmd.index("-c") + 1] if "-c" in cmd[:-1] else None
    return found


def memory(pids: list[int]) -> dict:
    rows = [r for r in (rollup(p) for p in pids) if r]
    if not rows:
        return {"n": 0}
    res = {"n": len(rows)}
    for k in ("Pss", "Uss", "Rss", "Pss_Anon", "Pss_File"):
        vals = [r.get(k, 0) for r in rows]
        res[k] = {"median": statistics.median(vals), "mean": statistics.mean(vals), "min": min(vals),
                  "max": max(vals), "total": sum(vals)}
    return res


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if os.path.exists(f"/proc/{p}")]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if os.path.exists(f"/proc/{p}")]
    return left


def cgroups_left(rel_paths: list[str]) -> list[str]:
    """Which of these cgroup paths still exist, in any hierarchy (v1 and v2)."""
    base = "/sys/fs/cgroup"
    roots = [base] if os.path.exists(os.path.join(base, "cgroup.controllers")) else \
        [os.path.join(base, d) for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))]
    return [os.path.join(r, p) for r in roots for p in rel_paths if os.path.isdir(os.path.join(r, p))]


# --- report ------------------------------------------------------------------------------


def versions(exe: str, podman: bool) -> str:
    v = ["pinnace " + out(exe, "--version").replace("pinnace, version", "").strip()]
    if podman:
        v += [out("podman", "--version"), (out("conmon", "--version").splitlines() or ["conmon ?"])[0],
              (out("runc", "--version").splitlines() or ["runc ?"])[0]]
    v.append(f"Python {sys.version.split()[0]}")
    return ", ".join(v)


def cgroup_mode() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "unified (v2)"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "hybrid"
    return "legacy (v1)"


def fs_of(path: str) -> str:
    fs = (out("findmnt", "-n", "-o", "FSTYPE", "-T", path).splitlines() or ["?"])[0]
    return fs


def kib(v: float) -> str:
    return f"{v:8.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="containers per tool (default 100)")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--pinnace", help="pinnace command to use instead of building this checkout")
    ap.add_argument("--api-worker", nargs=2, metavar=("ROOT", "RUNROOT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.api_worker:
        return api_worker(*a.api_worker)
    if os.geteuid() != 0:
        sys.exit("needs root")
    n = a.count
    os.makedirs(WORK, exist_ok=True)
    load0 = " ".join(open("/proc/loadavg").read().split()[:3])
    started_at = time.strftime("%Y-%m-%d %H:%M")
    rootfs = busybox_rootfs(os.path.join(WORK, "rootfs"))
    exe = a.pinnace or clean_venv_pinnace("detached")
    venv_python = os.path.join(os.path.dirname(os.path.realpath(exe) if a.pinnace else exe), "python")
    python = venv_python if os.path.exists(venv_python) else sys.executable
    use_podman = not a.no_podman and shutil.which("podman") is not None

    tmp = tempfile.mkdtemp(prefix="detached-", dir=WORK)
    runtmp = tempfile.mkdtemp(prefix="pd", dir="/run")  # short: podman's runroot limit
    root, runroot = os.path.join(tmp, "root"), os.path.join(runtmp, "p")
    pinnace_base = [exe, "--root", root, "--runroot", runroot]
    podman_base = ["podman", "--root", os.path.join(runtmp, "r"), "--runroot", os.path.join(runtmp, "rr"),
                   "--tmpdir", os.path.join(runtmp, "t")]
    shim_dir = os.path.join(root, "bin")
    fs = {"root": fs_of(tmp), "run": fs_of(runtmp)}

    cli = PinnaceCli(pinnace_base + ["run", "-d", "--rm", "--network", "none", "host"] + SLEEP, tmp)
    tools: list[Tool] = [cli]
    api = None
    podman = None
    mem_all: dict = {}
    mem_pair: dict = {}
    timings: dict[str, float] = {}
    leftovers: list[str] = []
    per_origin: dict[str, int] = {}
    api_removed = False
    try:
        api = PinnaceApi(python, root, runroot)
        tools.append(api)
        if use_podman:
            podman = PodmanCli(podman_base + ["run", "-d", "--rm"] + PODMAN_FLAGS + ["--rootfs", rootfs] + SLEEP,
                               tmp)
            tools.append(podman)
        tools.append(PythonRef([python, "-c", "pass"], tmp))

        # warm-up containers (the first CLI call also writes the shim out of the
        # extension; podman's first call makes its store), removed before measuring
        for _ in range(WARMUP):
            for t in tools:
                t.once(record=False)
        warm_pinnace = cli.warm_ids + api.warm_ids
        if warm_pinnace:
            subprocess.run(pinnace_base + ["rm", "-f"] + warm_pinnace, capture_output=True)
        if podman and podman.warm_ids:
            subprocess.run(podman_base + ["rm", "-f", "-t", "0"] + podman.warm_ids, capture_output=True)
        procs = processes()
        wait_gone(list(shims(procs, shim_dir)) + list(conmons(procs, runtmp)), 15)

        # every order of the tools in turn: each follows each other equally often
        # (a tool's work after it returns -- a supervisor settling -- falls on
        # whichever runs next)
        orders = list(itertools.permutations(tools))
        for i in range(n):
            for t in orders[i % len(orders)]:
                t.once()

        # all idle: let the supervisors settle, then read them
        time.sleep(2)
        procs = processes()
        sh = shims(procs, shim_dir)
        cm = conmons(procs, runtmp) if podman else {}
        origin = {c: "cli" for c in cli.ids} | {c: "api" for c in api.ids}
        for cid in sh.values():
            o = origin.get(cid or "", "unknown")
            per_origin[o] = per_origin.get(o, 0) + 1
        mem_all = {"shim": memory(list(sh)), "conmon": memory(list(cm))}

        # N against N: remove the API's containers, read the CLI's shims again
        t0 = time.perf_counter()
        r = subprocess.run(pinnace_base + ["rm", "-f"] + api.ids, capture_output=True, text=True)
        api_removed = True
        if r.returncode != 0:
            leftovers.append(f"pinnace rm -f (API containers) exit {r.returncode}: {r.stderr.strip()[-500:]}")
        timings[f"pinnace rm -f (the {len(api.ids)} API containers, one call)"] = time.perf_counter() - t0
        api_shims = [p for p, c in sh.items() if origin.get(c or "") == "api"]
        gone_late = wait_gone(api_shims, 15)
        if gone_late:
            leftovers.append(f"shims of removed containers still running after 15 s: {gone_late}")
        time.sleep(1)
        procs = processes()
        sh2 = shims(procs, shim_dir)
        cm2 = conmons(procs, runtmp) if podman else {}
        mem_pair = {"shim": memory(list(sh2)), "conmon": memory(list(cm2))}
    finally:
        # remove everything, then look for what is left
        if api:
            api.close()
        rest = cli.ids + (api.ids if api and not api_removed else [])
        t0 = time.perf_counter()
        r = subprocess.run(pinnace_base + ["rm", "-f"] + rest, capture_output=True, text=True) if rest else None
        timings[f"pinnace rm -f (the other {len(rest)} containers, one call)"] = time.perf_counter() - t0
        if r is not None and r.returncode != 0:
            leftovers.append(f"pinnace rm -f exit {r.returncode}: {r.stderr.strip()[-500:]}")
        if podman:
            t0 = time.perf_counter()
            r = subprocess.run(podman_base + ["rm", "-f", "-a", "-t", "0"], capture_output=True, text=True)
            timings[f"podman rm -f -a -t 0 ({len(podman.ids)} containers)"] = time.perf_counter() - t0
            if r.returncode != 0:
                leftovers.append(f"podman rm -f -a exit {r.returncode}: {r.stderr.strip()[-500:]}")
        procs = processes()
        ours = list(shims(procs, shim_dir)) + list(conmons(procs, runtmp))
        still = wait_gone(ours, 20)
        if still:
            leftovers.append(f"supervisors still running 20 s after rm -f: {still} (killed)")
            for p in still:  # ours: this store's shims and this run's conmons
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_gone(still, 5)
        ps = subprocess.run(pinnace_base + ["ps", "-a", "-q"], capture_output=True, text=True).stdout.split()
        if ps:
            leftovers.append(f"pinnace ps -a still lists {len(ps)} containers: {ps[:5]} (removed again)")
            subprocess.run(pinnace_base + ["rm", "-f"] + ps, capture_output=True)
            procs = processes()
            for p in wait_gone(list(shims(procs, shim_dir)), 20):
                try:
                    os.kill(p, signal.SIGKILL)  # this store's shims: ours
                except ProcessLookupError:
                    pass
        cdir = os.path.join(root, "containers")
        if os.path.isdir(cdir) and os.listdir(cdir):
            leftovers.append(f"{cdir} not empty: {sorted(os.listdir(cdir))[:5]}")
        if podman:
            pps = subprocess.run(podman_base + ["ps", "-a", "-q"], capture_output=True, text=True).stdout.split()
            if pps:
                leftovers.append(f"podman ps -a still lists {len(pps)} containers (removed again)")
                subprocess.run(podman_base + ["rm", "-f", "-a", "-t", "0"], capture_output=True)
        all_pinnace = cli.ids + cli.warm_ids + (api.ids + api.warm_ids if api else [])
        cg = cgroups_left([f"pinnace/{c}" for c in all_pinnace])
        if cg:
            leftovers.append(f"{len(cg)} cgroups pinnace/<id> of this run left, e.g. {cg[:3]}")
        if podman:
            cg = cgroups_left([f"libpod_parent/libpod-{c}" for c in podman.ids + podman.warm_ids])
            if cg:
                leftovers.append(f"{len(cg)} podman cgroups of this run left, e.g. {cg[:3]}")
        for d in (tmp, runtmp):
            m = mounts_under(d)
            if m:
                leftovers.append(f"{len(m)} mounts left under {d} (unmounted), e.g. {m[:3]}")
                unmount_all_under(d)
        subprocess.run(pinnace_base + ["system", "prune", "-f"], capture_output=True)
        for t in tools:
            if isinstance(t, Cli):
                t.out.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(runtmp, ignore_errors=True)

    # --- report ---
    print(f"{n} detached `sleep 600` containers per tool, started one after another, the tools "
          f"interleaved (every order in turn) after {WARMUP} warm-up containers each; {started_at}")
    print(f"machine: {machine(WORK)}, cgroups {cgroup_mode()}")
    print(f"load average before / after: {load0} / {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"tools: {versions(exe, use_podman)}")
    print(f"pinnace: {exe} (API worker: {python}, module {api.module if api else '?'}); store --root on "
          f"{fs['root']}, --runroot on {fs['run']}")
    if podman:
        print(f"podman: --root/--runroot/--tmpdir on {fs['run']}, {' '.join(PODMAN_FLAGS)}, "
              f"--rootfs (busybox-static)")
    print()
    med = {t.short: statistics.median(t.times) for t in tools if t.times}
    pod = med.get("podman")
    print(f"{'time per container':50} {'median ms':>9} {'mean ms':>8} {'min ms':>7} {'max ms':>7} "
          f"{'total s':>8} {'/podman':>8} {'podman/x':>8}")
    for t in tools:
        if not t.times:
            print(f"{t.name:50} {'failed':>9}")
            continue
        m = med[t.short]
        rp = f"{m / pod:8.3f} {pod / m:8.1f}" if pod else ""
        print(f"{t.name:50} {m:9.2f} {statistics.mean(t.times):8.2f} {min(t.times):7.2f} {max(t.times):7.2f} "
              f"{sum(t.times) / 1000:8.2f} {rp}")
    if pod:
        print()
        for short, label in (("cli", "CLI"), ("api", "API")):
            if short in med:
                x = pod / med[short]
                print(f"target (issue 5) {TARGET_SPEEDUP:.0f}x faster than podman per container, {label}: "
                      f"{x:.1f}x (median; {statistics.mean(podman.times) / statistics.mean(by(tools, short).times):.1f}x "
                      f"by means) -- {'met' if x >= TARGET_SPEEDUP else 'MISSED'}")
        print(f"  (10x podman's median is {pod / TARGET_SPEEDUP:.1f} ms a container)")
    if "cli" in med and "api" in med:
        ref = f", interpreter start (python -c pass) {med['python']:.1f} ms" if "python" in med else ""
        print(f"CLI minus API (medians): {med['cli'] - med['api']:.1f} ms{ref}")
    print()
    for label, mem, k in (("N against N", mem_pair, n), ("all idle at once", mem_all, None)):
        s, c = mem.get("shim", {}), mem.get("conmon", {})
        title = (f"memory of the idle supervisors, {label}: {s.get('n', 0)} pinnace-shim, {c.get('n', 0)} conmon "
                 f"(kB = KiB, /proc/PID/smaps_rollup)")
        print(title)
        print(f"  {'':14} {'n':>4} {'PSS med':>8} {'PSS mean':>8} {'PSS min':>8} {'PSS max':>8} {'PSS tot':>8} "
              f"{'anon':>6} {'file':>6} {'USS med':>8} {'RSS med':>8}")
        for name, m in (("pinnace-shim", s), ("conmon", c)):
            if not m or not m.get("n"):
                continue
            print(f"  {name:14} {m['n']:4} {kib(m['Pss']['median'])} {kib(m['Pss']['mean'])} "
                  f"{kib(m['Pss']['min'])} {kib(m['Pss']['max'])} {kib(m['Pss']['total'])} "
                  f"{m['Pss_Anon']['median']:6.0f} {m['Pss_File']['median']:6.0f} "
                  f"{kib(m['Uss']['median'])} {kib(m['Rss']['median'])}")
        if s.get("n"):
            pss = s["Pss"]["median"] * 1024
            line = (f"  pinnace-shim PSS per idle container {pss / 1e6:.3f} MB = {pss / TARGET_PSS:.2f}x the "
                    f"0.5 MB target -- {'met' if pss <= TARGET_PSS else 'MISSED'}")
            if c.get("n"):
                line += (f"; / conmon: PSS {s['Pss']['median'] / c['Pss']['median']:.2f}, "
                         f"RSS {s['Rss']['median'] / c['Rss']['median']:.2f}")
            print(line)
        if k is None and per_origin:
            print(f"  shims by who started them: {per_origin}")
        print()
    print("teardown:")
    for what, s in timings.items():
        print(f"  {what:55} {s:6.2f} s")
    print("  left behind: " + ("nothing (no shim or conmon of this run, no containers listed, no mounts under "
                               "the temporary dirs, no cgroups of this run's containers)"
                               if not leftovers else ""))
    for l in leftovers:
        print("    " + l)
    errors = [(e, c, t.short) for t in tools for e, c in t.errors.items()]
    if errors:
        print()
        print("errors:")
        for e, c, s in errors:
            print(f"  [{s}] " + e.replace("\n", "\n    ") + (f"  (x{c})" if c > 1 else ""))


def by(tools: list[Tool], short: str) -> Tool:
    return next(t for t in tools if t.short == short)


if __name__ == "__main__":
    main()
