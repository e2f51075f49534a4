"""Black-box fixtures: the real ``pinnace`` binary, the real kernel, as root.

Each test session gets its own store (``PINNACE_ROOT``/``PINNACE_RUNROOT``
under a temporary directory), so tests never touch /var/lib/pinnace, and
the session ends by checking that nothing of pinnace's is left on the host:
no container directory, no mount, no process in a foreign pid namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

if os.geteuid() != 0:
    pytest.exit("the pinnace test suite runs as root (it makes namespaces and mounts)", returncode=2)

PINNACE = shutil.which("pinnace")


def _private_network_namespace() -> None:
    """The whole session runs in a network namespace of its own: the bridges,
    addresses, routes and nftables table the tests make live only there and
    die with this process; the host's network is never touched. The registry
    the tests start listens on this namespace's 127.0.0.1."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        pytest.exit(f"cannot make a network namespace for the tests: errno {ctypes.get_errno()}", returncode=2)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


_private_network_namespace()


def pytest_configure(config):
    # here rather than in pyproject.toml: the v2 VM runs a copy of tests/ alone
    config.addinivalue_line("markers", "registry: needs a local registry and image tools (Debian: docker-registry, "
                            "umoci, skopeo, zstd); deselect with -m 'not registry'")


def _pid_namespaces() -> set[str]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.add(os.readlink(f"/proc/{pid}/ns/pid"))
            except OSError:
                pass
    return out


@pytest.fixture(scope="session", autouse=True)
def store():
    base = tempfile.mkdtemp(prefix="pinnace-test-", dir="/var/tmp")
    os.chmod(base, 0o711)  # user-namespaced containers must pass through it
    root, runroot = os.path.join(base, "root"), os.path.join(base, "run")
    old = {k: os.environ.get(k) for k in ("PINNACE_ROOT", "PINNACE_RUNROOT")}
    os.environ["PINNACE_ROOT"], os.environ["PINNACE_RUNROOT"] = root, runroot
    namespaces_before = _pid_namespaces()
    yield {"root": root, "runroot": runroot}
    from pinnace.containers import drain_background_removals

    drain_background_removals()
    # Removing what the tests kept on purpose is part of the product: prune.
    subprocess.run([PINNACE, "system", "prune", "-f"], capture_output=True)
    leftovers = []
    with open("/proc/self/mountinfo") as f:
        leftovers += [line.strip() for line in f if base in line]
    cdir = os.path.join(root, "containers")
    if os.path.isdir(cdir) and os.listdir(cdir):
        leftovers.append(f"container dirs: {os.listdir(cdir)}")
    if runtime_records({"runroot": runroot}):
        leftovers.append(f"runtime records: {runtime_records({'runroot': runroot})}")
    cgroups = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "4", "-type", "d", "-name", "*pinnace*"],
                             capture_output=True, text=True).stdout.split()
    if cgroups:
        leftovers.append(f"cgroups: {cgroups}")
    new_ns = _pid_namespaces() - namespaces_before
    if new_ns:
        leftovers.append(f"processes in new pid namespaces: {new_ns}")
    for sub in ("net/ports",):
        d = os.path.join(runroot, sub)
        if os.path.isdir(d) and [f for f in os.listdir(d) if not f.startswith(".")]:
            leftovers.append(f"published ports: {os.listdir(d)}")
    leases = subprocess.run(["find", os.path.join(runroot, "net"), "-mindepth", "2", "-type", "f", "-name", "[0-9]*"],
                            capture_output=True, text=True).stdout.split()
    if leases:
        leftovers.append(f"address leases: {leases}")
    veths = [l for l in subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                                       text=True).stdout.splitlines() if l.strip()]
    if veths:
        leftovers.append(f"veth links: {veths}")
    from pinnace.images.store import check

    leftovers += [f"image store: {p}" for p in check(root)]
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(base, ignore_errors=True)
    assert not leftovers, f"pinnace left things behind: {leftovers}"


def pn(*args: str, input: bytes | None = None, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI; output as text."""
    r = subprocess.run([PINNACE, *args], input=input, capture_output=True, timeout=timeout)
    r.out = r.stdout.decode()  # type: ignore[attr-defined]
    r.err = r.stderr.decode()  # type: ignore[attr-defined]
    if check and r.returncode != 0:
        raise AssertionError(f"pinnace {' '.join(args)} exited {r.returncode}: {r.err}")
    return r


def sh(script: str, *flags: str, **kw) -> subprocess.CompletedProcess:
    """``pinnace run --rm [flags] host sh -c script``."""
    return pn("run", "--rm", *flags, "host", "sh", "-c", script, **kw)


def container_dirs(store) -> list[str]:
    """Container directories, once in-process removals have finished."""
    from pinnace.containers import drain_background_removals

    drain_background_removals()
    d = os.path.join(store["root"], "containers")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def runtime_records(store) -> list[str]:
    d = os.path.join(store["runroot"], "containers")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def busybox_rootfs(tmp_path):
    """A tiny root filesystem: Debian's static busybox and a few applets."""
    bb = shutil.which("busybox")
    if not bb:
        pytest.fail("busybox (Debian package busybox-static) is required: .ci/run installs it")
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(bb, root / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "ls", "id", "hostname", "sleep", "touch", "pwd", "env", "true", "false"):
        os.symlink("busybox", root / "bin" / applet)
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        (root / d).mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nbox:x:1234:1234::/home/box:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nbox:x:1234:\n")
    return root


# A real registry, images built by umoci/skopeo, and an HTTP proxy in front (tests/registry.py).
from registry import images, proxy, registry, store_consistent_after_each_registry_test  # noqa: E402,F401
