#!/usr/bin/env python3
"""Pulling a 100+ MB, three-layer image from a local registry into an empty
store: pinnace (unpack included) beside `podman pull` and `skopeo copy`
(download only), all in one run; then the disk the store and ten containers take.

    python3 benches/pull.py [--runs N] [--no-podman] [--no-tar] [--pinnace PATH] [--dir DIR]

Needs root, debootstrap (and the Debian mirror of /etc/apt/sources.list*),
umoci, skopeo, docker-registry (Debian's), podman (optional). The image --
layer 1 `debootstrap --variant=minbase bookworm` as it comes, layer 2 what
`apt-get install python3` adds (and the apt lists and caches it deletes, as
whiteouts), layer 3 a small /app; gzip layers; Cmd, Env, WorkingDir set -- is
built once with umoci under /var/tmp/pinnace-bench/pull-image and pushed to a
`docker-registry serve` on 127.0.0.1 started for the run. The pinnace CLI is
this checkout built into a clean virtualenv, as benches/start.py does
(--pinnace PATH uses that command instead). Every run starts from an empty
store; the tools are interleaved, their order rotated each round, after one
warm-up round. A last row, not a puller, times GNU tar unpacking the image's
local blobs: what unpacking alone costs on this disk. Prints medians, minima
and ratios against the targets (pinnace at most 0.4x podman, at most 2x
skopeo), then `du` of the stores; nothing is asserted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from start import WORK, clean_venv_pinnace  # noqa: E402
IMAGE_DIR = os.path.join(WORK, "pull-image")
LAYOUT = os.path.join(IMAGE_DIR, "oci")
REPO_NAME = "bench/debian-python:latest"
TARGET_VS_PODMAN = 0.4
TARGET_VS_SKOPEO = 2.0

APP_MAIN = """\
import sys

def main() -> int:
    print("hello from pinnace's pull benchmark, python", sys.version.split()[0])
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
"""


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, **kw)


def out(*args: str) -> str:
    try:
        return subprocess.run(list(args), capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


# --- the image --------------------------------------------------------------------------


def debian_mirror() -> str:
    """The mirror apt uses here for bookworm (deb822 .sources or one-line lists)."""
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        try:
            text = open(path).read()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip()] = v.split()
            if "bookworm" in fields.get("Suites", []) and fields.get("URIs"):
                return fields["URIs"][0]
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "bookworm" in parts and parts[1].startswith("http"):
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


def chroot_sh(rootfs: str, script: str) -> None:
    """Run `script` chrooted in rootfs with /proc mounted in a private mount
    namespace, so the mount goes away with the process."""
    sh("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
       'mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2"', "sh", rootfs, script)


def build_image(mirror: str) -> None:
    """debootstrap minbase + python3 + /app, one umoci repack per layer, into LAYOUT."""
    if os.path.exists(os.path.join(IMAGE_DIR, "done")):
        return
    print(f"building the image under {IMAGE_DIR} (once) from {mirror} ...", file=sys.stderr)
    shutil.rmtree(IMAGE_DIR, ignore_errors=True)
    os.makedirs(IMAGE_DIR)
    bundle = os.path.join(IMAGE_DIR, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    sh("umoci", "init", "--layout", LAYOUT)
    sh("umoci", "new", "--image", f"{LAYOUT}:empty")
    sh("umoci", "unpack", "--image", f"{LAYOUT}:empty", bundle)
    # layer 1: the minbase root filesystem
    sh("debootstrap", "--variant=minbase", "bookworm", rootfs, mirror, stdout=subprocess.DEVNULL)
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{LAYOUT}:base", bundle)
    # layer 2: what installing python3 adds
    chroot_sh(rootfs, "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                      "apt-get install -y -qq --no-install-recommends python3 >/dev/null 2>&1 && "
                      "apt-get clean && rm -rf /var/lib/apt/lists/*")
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{LAYOUT}:python", bundle)
    # layer 3: a small app
    app = os.path.join(rootfs, "app")
    os.makedirs(app)
    with open(os.path.join(app, "main.py"), "w") as f:
        f.write(APP_MAIN)
    with open(os.path.join(app, "requirements.txt"), "w") as f:
        f.write("# none\n")
    with open(os.path.join(app, "README"), "w") as f:
        f.write("pinnace pull benchmark app layer\n")
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{LAYOUT}:app", bundle)
    sh("umoci", "config", "--image", f"{LAYOUT}:app", "--tag", "latest",
       "--config.cmd", "python3", "--config.cmd", "/app/main.py",
       "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "--config.env", "LANG=C.UTF-8", "--config.env", "APP_ENV=bench",
       "--config.workingdir", "/app", "--author", "pinnace benches/pull.py")
    for tag in ("empty", "base", "python", "app"):
        sh("umoci", "rm", "--image", f"{LAYOUT}:{tag}")
    sh("umoci", "gc", "--layout", LAYOUT)
    shutil.rmtree(bundle)
    open(os.path.join(IMAGE_DIR, "done"), "w").close()


def image_facts() -> dict:
    """Layers (compressed size, media type) and the unpacked size, from the layout."""
    blobs = os.path.join(LAYOUT, "blobs", "sha256")
    with open(os.path.join(LAYOUT, "index.json")) as f:
        desc = [m for m in json.load(f)["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"][0]
    with open(os.path.join(blobs, desc["digest"].split(":")[1])) as f:
        manifest = json.load(f)
    layers = [(l["size"], l["mediaType"].rsplit(".", 1)[-1]) for l in manifest["layers"]]
    unpacked = 0
    for l in manifest["layers"]:
        p = subprocess.Popen(["gzip", "-dc", os.path.join(blobs, l["digest"].split(":")[1])],
                             stdout=subprocess.PIPE)
        while chunk := p.stdout.read(1 << 20):
            unpacked += len(chunk)
        p.wait()
    return {"layers": layers, "tar_bytes": unpacked,
            "blobs": [os.path.join(blobs, l["digest"].split(":")[1]) for l in manifest["layers"]]}


# --- the registry -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, tmp: str):
        self.dir = os.path.join(tmp, "registry")
        os.makedirs(self.dir)
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.dir}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
""")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"docker-registry exited: {open(self.log.name).read()}")
                time.sleep(0.05)
        self.ref = f"127.0.0.1:{self.port}/{REPO_NAME}"

    def push(self) -> None:
        sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{LAYOUT}:latest",
           f"docker://{self.ref}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- the tools --------------------------------------------------------------------------


def mounts_under(path: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                found.append(mp)
    return found


def unmount_all_under(path: str) -> list[str]:
    """Lazily unmount whatever is left under path (deepest first); returns what was."""
    left = mounts_under(path)
    for mp in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    return left


def du(path: str) -> int:
    return int(out("du", "-sx", "--block-size=1", path).split()[0])


DEFERRED: list[str] = []


def remove_deferred() -> None:
    for d in DEFERRED:
        shutil.rmtree(d, ignore_errors=True)
    DEFERRED.clear()


class Tool:
    name = ""

    def __init__(self, tmp: str, runtmp: str, ref: str):
        self.tmp, self.runtmp, self.ref = tmp, runtmp, ref
        self.times: list[float] = []
        self.errors: dict[str, int] = {}  # first command and message -> times seen

    def error(self, cmd: list[str], msg: str) -> None:
        for k in self.errors:
            if k.endswith("\n" + msg):
                self.errors[k] += 1
                return
        self.errors[f"$ {' '.join(cmd)}\n{msg}"] = 1

    def fresh(self) -> str:
        d = tempfile.mkdtemp(prefix=self.name.split()[0] + "-", dir=self.tmp)
        # podman refuses a runroot longer than 50 characters: runroots live under /run
        os.symlink(tempfile.mkdtemp(prefix=self.name.split()[0][:3], dir=self.runtmp),
                   os.path.join(d, "runlink"))
        return d

    def runroot(self, d: str) -> str:
        return os.readlink(os.path.join(d, "runlink"))

    def remove(self, d: str) -> None:
        # Deleted only after the last run: on an ext4 without a journal, new
        # inodes are slow (ext4 skips inodes freed in the last ~30 s, one by
        # one) right after a big delete, which would tax whichever tool
        # pulls next rather than measure it.
        DEFERRED.extend([self.runroot(d), d])

    def cmd(self, d: str) -> list[str]:
        raise NotImplementedError

    def clean(self, d: str) -> None:
        self.remove(d)

    def once(self, record: bool = True) -> str | None:
        """One pull into an empty store; returns the store dir if kept (record=False)."""
        d = self.fresh()
        cmd = self.cmd(d)
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            self.error(cmd, f"exit {r.returncode}: {r.stderr.strip()[-2000:]}")
            self.clean(d)
            return None
        if record:
            self.times.append(dt)
            self.clean(d)
            return None
        return d


class Pinnace(Tool):
    name = "pinnace pull (unpacked)"

    def __init__(self, tmp, runtmp, ref, exe):
        super().__init__(tmp, runtmp, ref)
        self.exe = exe

    def base(self, d: str) -> list[str]:
        return [self.exe, "--root", os.path.join(d, "root"), "--runroot", self.runroot(d)]

    def cmd(self, d):
        return self.base(d) + ["pull", "-q", self.ref]

    def clean(self, d):
        subprocess.run(self.base(d) + ["system", "prune", "-f"], capture_output=True)
        left = unmount_all_under(d) + unmount_all_under(self.runroot(d))
        if left:
            self.error(["pinnace system prune -f"], f"mounts left behind (unmounted): {left}")
        self.remove(d)


class Podman(Tool):
    name = "podman pull (overlay)"

    def base(self, d):
        # --tmpdir: libpod's own state (default /run/libpod) kept apart from any other podman
        return ["podman", "--root", os.path.join(d, "root"), "--runroot", self.runroot(d),
                "--tmpdir", os.path.join(self.runroot(d), "libpod-tmp"), "--storage-driver", "overlay"]

    def cmd(self, d):
        return self.base(d) + ["pull", "--tls-verify=false", "-q", self.ref]

    def clean(self, d):
        subprocess.run(self.base(d) + ["rm", "-a", "-f"], capture_output=True)
        # (not `system reset`: that also drops the machine's podman networks and /run/libpod)
        left = unmount_all_under(d) + unmount_all_under(self.runroot(d))
        if left:
            self.error(["podman rmi -a -f"], f"mounts left behind (unmounted): {left}")
        self.remove(d)


class Skopeo(Tool):
    name = "skopeo copy (download only)"

    def cmd(self, d):
        return ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{self.ref}",
                f"dir:{os.path.join(d, 'img')}"]


class TarRef(Tool):
    """Not a puller: GNU tar unpacking the image's local gzip blobs one after the other,
    a layer a directory -- what unpacking alone costs on this disk."""
    name = "tar -xzf of the blobs (ref.)"

    def __init__(self, tmp, runtmp, ref, blobs):
        super().__init__(tmp, runtmp, ref)
        self.blobs = blobs

    def cmd(self, d):
        script = "".join(f'mkdir "$1/{i}" && tar -xzf {b} -C "$1/{i}" && '
                         for i, b in enumerate(self.blobs)) + "true"
        return ["sh", "-c", script, "sh", d]


def pinnace_can_pull(exe: str) -> bool:
    r = subprocess.run([exe, "pull", "--help"], capture_output=True, text=True)
    return r.returncode == 0


# --- disk -------------------------------------------------------------------------------


def layer_dirs(layers: str) -> int | None:
    """Complete layer directories (images/layers/<diff_id hex>/, not .tmp-* or files)."""
    if not os.path.isdir(layers):
        return None
    return len([e for e in os.listdir(layers)
                if not e.startswith(".") and os.path.isdir(os.path.join(layers, e))])


def disk_pinnace(tool: Pinnace, n: int) -> dict:
    d = tool.once(record=False)
    if d is None:
        return {}
    res = {}
    try:
        root = os.path.join(d, "root")
        res["store"] = du(root)
        layers = os.path.join(root, "images", "layers")
        res["layer_dirs"] = layer_dirs(layers)
        image = tool.ref
        for i in range(n):
            r = subprocess.run(tool.base(d) + ["run", "--name", f"bench{i}", "--network", "none", image, "true"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                tool.error(tool.base(d) + ["run", "--name", f"bench{i}", "--network", "none", image, "true"],
                           f"exit {r.returncode}: {r.stderr.strip()[-2000:]}")
                return res
        res["with_containers"] = du(root)
        res["layer_dirs_after"] = layer_dirs(layers)
        for i in range(n):
            r = subprocess.run(tool.base(d) + ["rm", f"bench{i}"], capture_output=True, text=True)
            if r.returncode != 0:
                tool.error(tool.base(d) + ["rm", f"bench{i}"], f"exit {r.returncode}: {r.stderr.strip()}")
        subprocess.run(tool.base(d) + ["system", "prune", "-f"], capture_output=True)
        res["after_rm"] = du(root)
    finally:
        tool.clean(d)
    return res


def disk_podman(tool: Podman, n: int) -> dict:
    d = tool.once(record=False)
    if d is None:
        return {}
    res = {}
    try:
        root = os.path.join(d, "root")
        res["store"] = du(root)
        for i in range(n):
            r = subprocess.run(tool.base(d) + ["create", "--name", f"bench{i}", "--network", "none",
                                               tool.ref, "true"], capture_output=True, text=True)
            if r.returncode != 0:
                tool.error(tool.base(d) + ["create", "--name", f"bench{i}", "--network", "none", tool.ref, "true"],
                           f"exit {r.returncode}: {r.stderr.strip()[-500:]}")
                return res
        res["with_containers"] = du(root)
    finally:
        tool.clean(d)
    return res


# --- report -----------------------------------------------------------------------------


def machine(stores: str) -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    fs = (out("findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", stores).splitlines() or [""])[0].split()
    fs_s = f"{fs[0]} ({fs[1]})" if len(fs) == 2 else "?"
    return (f"{cpu}, {os.cpu_count()} cpus, {mem / 2**30:.0f} GiB, kernel {os.uname().release}, "
            f"stores in {stores} on {fs_s}")


def versions(pinnace_exe: str | None) -> str:
    v = []
    if pinnace_exe:
        v.append("pinnace " + (out(pinnace_exe, "--version") or out(pinnace_exe, "version")).splitlines()[0]
                 .replace("pinnace", "").replace("version", "").strip(" ,"))
    v.append(out("podman", "--version"))
    v.append(out("skopeo", "--version"))
    v.append(out("umoci", "--version"))
    v.append("docker-registry " + out("dpkg-query", "-W", "-f", "${Version}", "docker-registry"))
    v.append("debootstrap " + out("dpkg-query", "-W", "-f", "${Version}", "debootstrap"))
    v.append(f"Python {sys.version.split()[0]}")
    return ", ".join(v)


def mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--containers", type=int, default=10)
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--dir", help=f"where the stores go (default {WORK}; e.g. /dev/shm to leave the disk out)")
    ap.add_argument("--no-tar", action="store_true", help="leave out the tar -xzf reference row")
    ap.add_argument("--pinnace", help="pinnace command to use instead of building this checkout")
    ap.add_argument("--mirror", help="Debian mirror for debootstrap (default: apt's)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    os.makedirs(WORK, exist_ok=True)
    build_image(a.mirror or debian_mirror())
    facts = image_facts()
    load0 = " ".join(open("/proc/loadavg").read().split()[:3])

    exe = a.pinnace or clean_venv_pinnace("pull")
    has_pull = pinnace_can_pull(exe)
    tmp = tempfile.mkdtemp(prefix="pinnace-bench-pull-" if a.dir else "pull-", dir=a.dir or WORK)
    runtmp = tempfile.mkdtemp(prefix="pinnace-bench-", dir="/run")
    reg = None
    tools: list[Tool] = []
    disk: dict[str, dict] = {}
    try:
        reg = Registry(tmp)
        reg.push()
        if has_pull:
            tools.append(Pinnace(tmp, runtmp, reg.ref, exe))
        if not a.no_podman and shutil.which("podman"):
            tools.append(Podman(tmp, runtmp, reg.ref))
        tools.append(Skopeo(tmp, runtmp, reg.ref))
        if not a.no_tar:
            tools.append(TarRef(tmp, runtmp, reg.ref, facts["blobs"]))
        for _ in range(a.warmup):
            for t in tools:
                t.once()
                t.times.clear()
        for i in range(a.runs):
            # interleaved, the order rotated each round so drift hits all alike
            k = i % len(tools)
            for t in tools[k:] + tools[:k]:
                t.once()
        for t in tools:
            if isinstance(t, Pinnace):
                disk["pinnace"] = disk_pinnace(t, a.containers)
            elif isinstance(t, Podman):
                disk["podman"] = disk_podman(t, a.containers)
    finally:
        if reg:
            reg.stop()
        remove_deferred()
        for d in (tmp, runtmp):
            left = unmount_all_under(d)
            shutil.rmtree(d, ignore_errors=True)
            if left:
                print(f"warning: mounts were left under {d}: {left}", file=sys.stderr)

    layers = ", ".join(f"{s / 1e6:.1f}" for s, _ in facts["layers"])
    print(f"pull of a {len(facts['layers'])}-layer image from docker-registry on 127.0.0.1 into an "
          f"empty store, {a.runs} runs each (interleaved), {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine(a.dir or WORK)}")
    print(f"load average before / after: {load0} / {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"tools: {versions(exe)}")
    print(f"image: debian bookworm minbase + python3 + /app; layers {layers} MB "
          f"({facts['layers'][0][1]}, {sum(s for s, _ in facts['layers']) / 1e6:.1f} MB compressed), "
          f"{facts['tar_bytes'] / 1e6:.1f} MB of layer tars unpacked")
    print()
    by = {type(t).__name__: t for t in tools}
    med = {n: statistics.median(t.times) for n, t in by.items() if t.times}
    print(f"{'':32} {'median s':>9} {'min s':>8} {'/podman':>8} {'/skopeo':>8}")
    for n, t in by.items():
        if not t.times:
            print(f"{t.name:32} {'failed':>9}")
            continue
        rp = f"{med[n] / med['Podman']:8.2f}" if "Podman" in med else f"{'':8}"
        rs = f"{med[n] / med['Skopeo']:8.2f}" if "Skopeo" in med else f"{'':8}"
        print(f"{t.name:32} {med[n]:9.3f} {min(t.times):8.3f} {rp} {rs}")
    if not has_pull:
        print(f"{'pinnace pull':32} {'n/a':>9}   (`{exe} pull --help` fails: no pull command yet)")
    if "Pinnace" in med:
        print()
        for peer, target in (("Podman", TARGET_VS_PODMAN), ("Skopeo", TARGET_VS_SKOPEO)):
            if peer in med:
                r = med["Pinnace"] / med[peer]
                print(f"target pinnace/{peer.lower()} <= {target}x: {r:.3f}x, "
                      f"{'met' if r <= target else 'MISSED'}")
    print()
    print("disk (du -sx --block-size=1):")
    p = disk.get("pinnace", {})
    if p:
        print(f"  pinnace store after the pull        {p.get('store', 0):>12,} B  {mb(p.get('store'))}")
        if "with_containers" in p:
            extra = p["with_containers"] - p["store"]
            print(f"  pinnace store + {a.containers} kept containers  {p['with_containers']:>12,} B  "
                  f"{mb(p['with_containers'])}  (+{extra:,} B, {extra / a.containers / 1e3:.1f} kB each)")
        if "after_rm" in p:
            print(f"  pinnace store after rm + prune      {p['after_rm']:>12,} B  {mb(p['after_rm'])}")
        print(f"  pinnace layer directories: {p.get('layer_dirs')} after the pull, "
              f"{p.get('layer_dirs_after')} with {a.containers} containers "
              f"(image has {len(facts['layers'])} layers)")
    q = disk.get("podman", {})
    if q:
        print(f"  podman store after the pull         {q.get('store', 0):>12,} B  {mb(q.get('store'))}")
        if "with_containers" in q:
            extra = q["with_containers"] - q["store"]
            print(f"  podman store + {a.containers} created containers {q['with_containers']:>11,} B  "
                  f"{mb(q['with_containers'])}  (+{extra:,} B, {extra / a.containers / 1e3:.1f} kB each)")
    errors = [(e, n) for t in tools for e, n in t.errors.items()]
    if errors:
        print()
        print("errors:")
        for e, n in errors:
            print("  " + e.replace("\n", "\n  ") + (f"  (x{n})" if n > 1 else ""))


if __name__ == "__main__":
    main()
