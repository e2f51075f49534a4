#!/usr/bin/env python3
"""Start-to-exit of `true`: pinnace (CLI and in-process API) beside runc, bwrap
and podman, all in one run, on the same busybox root filesystem.

    python3 benches/start.py [--runs N] [--no-podman]

Needs root, hyperfine, runc, bwrap, busybox-static (podman optional). The
pinnace CLI is measured from a clean virtualenv (made under
/var/tmp/pinnace-bench, or $PINNACE_BENCH_WORK) so that this machine's site-packages hooks do not
count as pinnace's start-up; the in-process API runs in this interpreter.
Prints a table of medians and ratios; nothing is asserted. pinnace runs with
`--network none`, as runc's bundle and bwrap make an empty network namespace
too (benches/network.py measures the bridge).
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
REPO = os.path.dirname(HERE)
# PINNACE_BENCH_WORK: another directory, so that two checkouts' benchmarks
# (each rebuilding its own venv) can run side by side
WORK = os.environ.get("PINNACE_BENCH_WORK") or "/var/tmp/pinnace-bench"


def busybox_rootfs(dest: str) -> str:
    bb = shutil.which("busybox")
    if not bb:
        sys.exit("busybox (busybox-static) is required")
    os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
    shutil.copy(bb, os.path.join(dest, "bin", "busybox"))
    for a in ("sh", "true", "sleep"):
        p = os.path.join(dest, "bin", a)
        if not os.path.lexists(p):
            os.symlink("busybox", p)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    return dest


def clean_venv_pinnace(name: str = "") -> str:
    """Install this checkout into a fresh venv; returns its `pinnace` script.
    ``name`` keeps each benchmark's venv and wheel directory its own, so one
    benchmark's rebuild never pulls the rug from under another running."""
    suffix = f"-{name}" if name else ""
    venv = os.path.join(WORK, "venv" + suffix)
    wheels = os.path.join(WORK, "wheels" + suffix)
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run(["maturin", "build", "--release", "-q", "-o", wheels], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    wheel = [w for w in os.listdir(wheels) if w.endswith(".whl")][0]
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--force-reinstall",
                    os.path.join(wheels, wheel)], check=True)
    shutil.rmtree(wheels, ignore_errors=True)
    return os.path.join(venv, "bin", "pinnace")


def runc_bundle(rootfs: str) -> str:
    bundle = os.path.join(WORK, "runc-bundle")
    shutil.rmtree(bundle, ignore_errors=True)
    os.makedirs(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["root"] = {"path": rootfs, "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def hyperfine(commands: dict[str, str], runs: int) -> dict[str, float]:
    out = os.path.join(WORK, "hyperfine.json")
    args = ["hyperfine", "-N", "--warmup", "5", "--runs", str(runs), "--export-json", out, "--style", "none"]
    for name, cmd in commands.items():
        args += ["-n", name, cmd]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        results = json.load(f)["results"]
    return {r["command"]: statistics.median(r["times"]) * 1000 for r in results}


def api_median(image: str | None, rootfs: str | None, runs: int, **opts) -> float:
    import pinnace

    kw = {"rootfs": rootfs} if rootfs else {}
    for _ in range(5):
        pinnace.run(image, ["true"], **kw, **opts)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = pinnace.run(image, ["true"], **kw, **opts)
        times.append((time.perf_counter() - t) * 1000)
        assert r.exit_code == 0
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--no-podman", action="store_true")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    rootfs = busybox_rootfs(os.path.join(WORK, "rootfs"))
    store = tempfile.mkdtemp(prefix="store-", dir=WORK)
    os.environ["PINNACE_ROOT"] = os.path.join(store, "root")
    os.environ["PINNACE_RUNROOT"] = os.path.join(store, "run")
    cli = clean_venv_pinnace()
    bundle = runc_bundle(rootfs)
    cmds = {
        "pinnace run --rm host true (CLI)": f"{cli} run --rm --network none host true",
        "pinnace run --rm --rootfs DIR true (CLI)": f"{cli} run --rm --network none --rootfs {rootfs} true",
        "runc run (same rootfs)": f"runc run --bundle {bundle} pinnace-bench-runc-{os.getpid()}",
        "bwrap --unshare-all (same rootfs)": f"bwrap --unshare-all --ro-bind {rootfs} / --proc /proc --dev /dev /bin/true",
    }
    if not a.no_podman and shutil.which("podman"):
        cmds["podman run --rm --rootfs DIR (runc)"] = (
            f"podman run --rm --runtime runc --network none --ulimit nofile=1024:1024 "
            f"--ulimit nproc=1024:1024 --rootfs {rootfs} /bin/true")
    try:
        results = hyperfine(cmds, a.runs)
        results["pinnace.run('host') in-process"] = api_median("host", None, a.runs, network="none")
        results["pinnace.run(rootfs=DIR) in-process"] = api_median(None, rootfs, a.runs, network="none")
    finally:
        subprocess.run([cli, "system", "prune"], stdout=subprocess.DEVNULL)
        shutil.rmtree(store, ignore_errors=True)
    bwrap = results["bwrap --unshare-all (same rootfs)"]
    runc = results["runc run (same rootfs)"]
    print(f"start-to-exit of `true`, median of {a.runs} runs, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cpus, kernel {os.uname().release}")
    print(f"{'':45} {'ms':>8} {'/bwrap':>8} {'/runc':>8}")
    for name, ms in results.items():
        print(f"{name:45} {ms:8.2f} {ms / bwrap:8.2f} {ms / runc:8.2f}")


if __name__ == "__main__":
    main()
