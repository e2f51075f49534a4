#!/usr/bin/env python3
"""What the default bridge costs: start-to-exit of `true` on the bridge and
with `--network none`, pinnace (CLI and in-process) beside `podman run --rm`
on its own default bridge, in one run.

    python3 benches/network.py [--runs N] [--no-podman]

Needs root, hyperfine, busybox-static (podman optional). Runs itself inside a
network namespace of its own (re-executed under `unshare --net`), so the
bridges, addresses and nftables rules of both tools never reach the host's.
The pinnace CLI runs from a clean virtualenv (see start.py). Prints medians,
the bridge's cost over `--network none` and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from start import WORK, api_median, busybox_rootfs, clean_venv_pinnace, hyperfine  # noqa: E402

PODMAN = "run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--in-netns", metavar="CLI", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.in_netns:
        # the clean venv needs the package index: made out here
        cli = clean_venv_pinnace("network")
        os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                              sys.executable, *sys.argv, "--in-netns", cli])
    cli = a.in_netns
    os.makedirs(WORK, exist_ok=True)
    rootfs = busybox_rootfs(os.path.join(WORK, "rootfs"))
    store = tempfile.mkdtemp(prefix="store-", dir=WORK)
    os.environ["PINNACE_ROOT"] = os.path.join(store, "root")
    os.environ["PINNACE_RUNROOT"] = os.path.join(store, "run")
    podman_dir = tempfile.mkdtemp(prefix="pn", dir="/run")
    podman = (f"podman --root {podman_dir}/r --runroot {podman_dir}/rr --tmpdir {podman_dir}/t "
              f"--network-config-dir {podman_dir}/n {PODMAN}")
    cmds = {
        "pinnace run --rm --network none host true": f"{cli} run --rm --network none host true",
        "pinnace run --rm host true (bridge)": f"{cli} run --rm host true",
        "pinnace run --rm -p 8080:80 host true (bridge, a port)": f"{cli} run --rm -p 8080:80 host true",
    }
    if not a.no_podman and shutil.which("podman"):
        cmds["podman run --rm --network none --rootfs DIR true"] = f"{podman} --network none --rootfs {rootfs} /bin/true"
        cmds["podman run --rm --rootfs DIR true (bridge)"] = f"{podman} --rootfs {rootfs} /bin/true"
    for name, cmd in cmds.items():
        r = subprocess.run(cmd.split(), capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{name} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    try:
        results = hyperfine(cmds, a.runs)
        results["pinnace.run('host', network='none') in-process"] = api_median("host", None, a.runs, network="none")
        results["pinnace.run('host') in-process (bridge)"] = api_median("host", None, a.runs)
    finally:
        subprocess.run([cli, "system", "prune"], stdout=subprocess.DEVNULL)
        shutil.rmtree(store, ignore_errors=True)
        if shutil.which("podman"):
            subprocess.run(podman.split()[:9] + ["system", "prune", "-f"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", podman_dir], stderr=subprocess.DEVNULL)
        shutil.rmtree(podman_dir, ignore_errors=True)
    print(f"start-to-exit of `true`, median of {a.runs} runs, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cpus, kernel {os.uname().release}, in a private network namespace")
    base_cli = results["pinnace run --rm --network none host true"]
    base_api = results["pinnace.run('host', network='none') in-process"]
    print(f"{'':58} {'ms':>8} {'+ms vs none':>12}")
    for name, ms in results.items():
        base = base_api if "in-process" in name else base_cli
        if name.startswith("podman"):
            base = results.get("podman run --rm --network none --rootfs DIR true", ms)
        print(f"{name:58} {ms:8.2f} {ms - base:12.2f}")
    pb = results.get("podman run --rm --rootfs DIR true (bridge)")
    if pb:
        print(f"pinnace CLI on the bridge / podman on its bridge: "
              f"{results['pinnace run --rm host true (bridge)'] / pb:.2f}")


if __name__ == "__main__":
    main()
