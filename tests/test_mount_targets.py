"""Mount targets are looked up inside the container's root, never on the host.

An image is untrusted content: a symlink in it (``/data -> /etc``,
``/escape -> ../../../..``, ``/proc -> /``) must not let ``-v``, ``--tmpfs``
or the default mounts land on, or create anything in, the host. As runc
does, a destination is resolved as if the root were ``/``: symlinks are
followed but stay in the root, and the mount lands where the container
will see that path.
"""

from __future__ import annotations

import os
import uuid

import pytest

from conftest import pn


def mountinfo() -> list[str]:
    """The host's mount table, as the test process sees it (ids stripped)."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[4:]) for line in f)


@pytest.fixture
def victim(tmp_path_factory):
    """An empty host directory under /tmp that images point their symlinks at,
    and a fresh name (nothing called ``/etc/<name>...`` may appear on the host)."""
    name = f"pinnace-mt-{uuid.uuid4().hex[:12]}"
    host = os.path.join("/tmp", name)
    os.mkdir(host)
    before = mountinfo()
    yield {"name": name, "host": host}
    try:
        assert os.listdir(host) == [], f"something was made in the host's {host}"
        made = [e for e in os.listdir("/etc") if e.startswith(name)]
        assert not made, f"something was made in the host's /etc: {made}"
        assert mountinfo() == before, "the host's mount table changed"
    finally:
        os.rmdir(host)


@pytest.fixture
def hostile(busybox_rootfs, victim):
    """busybox plus symlinks that point out of the root, taken on the host."""
    root = busybox_rootfs
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "tmp" / victim["name"]).mkdir()
    os.symlink("/etc", root / "data")
    os.symlink("../" * 24 + "tmp/" + victim["name"], root / "escape")
    os.symlink(victim["host"], root / "abs")
    os.symlink("/nonexistent-" + victim["name"], root / "dangle")
    os.symlink("/", root / "top")
    os.symlink("usr/lib", root / "lib")
    return root


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("from the host\n")
    return src


def run(root, *args: str, check: bool = True):
    *flags, script = args
    return pn("run", "--rm", "--rootfs", str(root), *flags, "sh", "-c", script, check=check)


def mount_points() -> str:
    return "busybox cut -d' ' -f5 /proc/self/mountinfo"


def test_absolute_symlink_to_etc_stays_in_the_root(hostile, victim, source):
    n = victim["name"]
    r = run(hostile, "-v", f"{source}:/data/{n}", f"cat /etc/{n}/marker /data/{n}/marker; {mount_points()}")
    assert r.out.count("from the host") == 2
    assert f"/etc/{n}" in r.out.split()


def test_file_bind_through_a_symlink_stays_in_the_root(hostile, victim, source):
    n = victim["name"]
    r = run(hostile, "-v", f"{source / 'marker'}:/data/{n}.conf", f"cat /etc/{n}.conf; {mount_points()}")
    assert r.out.split("\n")[0] == "from the host"
    assert f"/etc/{n}.conf" in r.out.split()


def test_dotdot_symlink_is_clamped_at_the_root(hostile, victim, source):
    n = victim["name"]
    r = run(hostile, "-v", f"{source}:/escape/x", f"cat /tmp/{n}/x/marker; {mount_points()}")
    assert "from the host" in r.out
    assert f"/tmp/{n}/x" in r.out.split()


def test_tmpfs_through_an_absolute_symlink_lands_in_the_root(hostile, victim):
    n = victim["name"]
    r = run(hostile, "--tmpfs", "/abs/t", f"touch /abs/t/made; ls /tmp/{n}/t; busybox grep ' /tmp/{n}/t ' /proc/self/mountinfo")
    assert r.out.startswith("made\n")
    assert " - tmpfs " in r.out


def test_relative_symlink_inside_the_root_is_followed(hostile, source):
    r = run(hostile, "-v", f"{source}:/lib/foo:ro", f"cat /usr/lib/foo/marker; {mount_points()}")
    assert "from the host" in r.out
    assert "/usr/lib/foo" in r.out.split()
    assert "/lib/foo" not in r.out.split()


def test_dangling_symlink_is_an_error_not_followed(hostile, victim, source):
    r = run(hostile, "-v", f"{source}:/dangle/x", "true", check=False)
    assert r.returncode == 125
    assert f"container setup failed: bind mount {source} on /dangle/x: ENOENT" in r.err
    assert not os.path.lexists("/nonexistent-" + victim["name"])


def test_mount_over_the_root_through_a_symlink_is_refused(hostile, source):
    r = run(hostile, "-v", f"{source}:/top", "true", check=False)
    assert r.returncode == 125
    assert f"bind mount {source} on /top: EBUSY" in r.err
    # below it, the path is just one in the root
    r = run(hostile, "-v", f"{source}:/top/y", "cat /y/marker")
    assert r.out == "from the host\n"


@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
def test_default_mounts_through_a_symlink_to_the_host_root(busybox_rootfs, victim, name):
    """An image whose /proc (or /sys, /dev) is a symlink to "/": procfs and
    sysfs go on plain directories only, as runc insists; /dev's tmpfs would
    have covered the root, so that is refused too."""
    target = busybox_rootfs / name
    target.rmdir()
    os.symlink("/", target)
    r = run(busybox_rootfs, "true", check=False)
    assert r.returncode == 125
    expect = {"proc": "mount proc on /proc: ELOOP", "sys": "mount sysfs on /sys: ELOOP",
              "dev": "mount tmpfs on /dev: EBUSY"}[name]
    assert expect in r.err


def test_default_mounts_follow_a_symlink_inside_the_root(busybox_rootfs):
    """/dev -> realdev inside the image: /dev's tmpfs, and /dev/pts and
    /dev/shm within it, land on /realdev, where the container sees them."""
    (busybox_rootfs / "dev").rmdir()
    (busybox_rootfs / "realdev").mkdir()
    os.symlink("realdev", busybox_rootfs / "dev")
    r = run(busybox_rootfs, f"ls /realdev/null && {mount_points()}")
    points = r.out.split()
    assert "/realdev" in points and "/realdev/pts" in points and "/realdev/shm" in points
