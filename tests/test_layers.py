"""Unpacked layers: whiteouts and opaque directories as a container sees them,
file attributes, layers shared on disk, and hostile tars that must write
nothing outside the store."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

from conftest import pn
from pullhelp import (du, entry, half_done, hexes, inspect, layer_names, no_repeated_digest, one_error, problems,
                      pull)

pytestmark = pytest.mark.registry


def test_whiteouts_and_opaque_dirs_seen_from_a_container(images):
    img = images["layered"]
    # umoci recorded the deletions as whiteouts (the hand-written top layer adds .wh.b and an opaque marker)
    assert {"data/.wh.a", ".wh.gone"} <= set(img.info["umoci_whiteouts"])
    pull(img.ref)
    script = ("ls -A /data; echo --; ls -A /data/dir; echo --; ls -A /data/opq; echo --; ls -A /gone; "
              "echo --; cat /data/c /data/keep/k /data/dir/z /data/opq/new /gone/p; echo --; "
              "test -e /data/a || echo a-gone; test -e /data/opq/sub/deep || echo deep-gone; "
              "find / -xdev -name '.wh.*'; echo end")
    r = pn("run", "--rm", img.ref, "sh", "-c", script)
    assert r.returncode == 0, r.err
    assert r.out.split("--\n") == [
        "c\ndir\nkeep\nopq\n",  # a: umoci's whiteout; b: hand-written .wh.b
        "z\n",  # dir deleted and recreated: x and y whited out
        "new\n",  # opaque: old1 and sub/ from below are hidden
        "p\n",  # gone whited out below, recreated with only p on top
        "c\nk\nz\nnew\np is back\n",
        "a-gone\ndeep-gone\nend\n",  # and no .wh.* file is visible anywhere
    ]


def test_a_container_can_recreate_what_a_whiteout_hid(images):
    img = images["layered"]
    pull(img.ref)
    r = pn("run", "--rm", img.ref, "sh", "-c",
           "echo again > /data/a && cat /data/a && mkdir /data/opq/sub && ls -A /data/opq/sub && echo ok")
    assert (r.returncode, r.out) == (0, "again\nok\n"), r.err


def test_a_layer_repeated_in_one_image(images):
    """busybox, E (adds /e), M (whites out /e, adds /m), E again: /e is back."""
    img = images["repeated"]
    assert img.diff_ids[-1] == img.diff_ids[-3]
    pull(img.ref)
    assert inspect(img.ref)["RootFS"]["Layers"] == img.diff_ids
    r = pn("run", "--rm", img.ref, "cat", "/e", "/m")
    assert (r.returncode, r.out) == (0, "e\nm\n"), r.err


def test_owners_modes_times_and_links_are_kept(images):
    img = images["attrs"]
    pull(img.ref)
    r = pn("run", "--rm", img.ref, "sh", "-c",
           "cd /attrs; stat -c '%n %u:%g %a' owned hl1 hl2 suid private; stat -c %Y owned; "
           "stat -c %i hl1 hl2; stat -c %h hl1; readlink abs; grep -c '^app:x:1000:' abs")
    assert r.returncode == 0, r.err
    lines = r.out.splitlines()
    assert lines[:5] == ["owned 1000:1000 640", "hl1 0:0 644", "hl2 0:0 644", "suid 0:0 4755",
                         "private 1000:1000 700"]
    assert lines[5] == "1234567890"
    assert lines[6] == lines[7], "hl1 and hl2 are one file"
    assert lines[8] == "2"
    # an absolute symlink is stored as written and means the image's /etc/passwd, not the host's
    assert lines[9:] == ["/etc/passwd", "1"]


# --------------------------------------------------------------------------- sharing


@pytest.fixture
def own_root():
    """A store of its own (for counting what is on disk)."""
    base = tempfile.mkdtemp(prefix="pinnace-test-own-", dir="/var/tmp")
    os.chmod(base, 0o711)
    root = os.path.join(base, "root")
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_layers_are_shared_on_disk(images, own_root):
    a, b = images["busybox"], images["config"]
    common = set(a.diff_ids) & set(b.diff_ids)
    assert common, "config is built on busybox"
    g = ("--root", own_root)
    for img in (a, b):
        r = pn(*g, "pull", img.ref, timeout=180)
        assert r.returncode == 0, r.err
    # one directory per distinct layer, whichever image brought it
    assert layer_names(own_root) == hexes(a.diff_ids) | hexes(b.diff_ids)
    layers_bytes = du(os.path.join(own_root, "images", "layers"))
    names = [f"shared-{i}-{uuid.uuid4().hex[:6]}" for i in range(10)]
    try:
        for n in names:
            r = pn(*g, "run", "--name", n, a.ref, "sh", "-c", f"echo {n} > /mine")
            assert r.returncode == 0, r.err
        # ten containers add only their own upper directories: no layer copied
        assert layer_names(own_root) == hexes(a.diff_ids) | hexes(b.diff_ids)
        assert du(os.path.join(own_root, "images", "layers")) == layers_bytes
        layer_bytes = sum(du(os.path.join(own_root, "images", "layers", h)) for h in hexes(a.diff_ids))
        assert du(os.path.join(own_root, "containers")) < layer_bytes
    finally:
        for n in names:
            pn(*g, "rm", "-f", n)
    assert problems(own_root) == []


# --------------------------------------------------------------------------- hostile layers


def _named(marker: str, top: str) -> list[str]:
    found = []
    for dirpath, dirs, files in os.walk(top):
        found += [os.path.join(dirpath, n) for n in dirs + files if marker in n]
    return found


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlink-relative", "hardlink"])
def test_hostile_layer_writes_nothing_outside_the_store(images, store, kind):
    marker = f"pinnace-hostile-{uuid.uuid4().hex[:10]}"
    symdir, symfile, hlfile = (f"/tmp/{marker}-symdir", f"/tmp/{marker}-symfile", f"/tmp/{marker}-hlfile")
    os.mkdir(symdir)
    for p in (symfile, hlfile):
        with open(p, "w") as f:
            f.write("original\n")
    with open("/etc/passwd", "rb") as f:
        passwd = f.read()
    passwd_links = os.stat("/etc/passwd").st_nlink
    img = images.hostile(kind, marker)
    root = store["root"]
    try:
        r = pn("pull", img.ref)
        assert "Traceback" not in r.err
        if r.returncode != 0:
            no_repeated_digest(one_error(r))
            assert entry(img.ref) is None
        # the targets the tar aimed at are untouched
        assert os.listdir(symdir) == []
        for p in (symfile, hlfile):
            with open(p) as f:
                assert f.read() == "original\n", p
            assert os.stat(p).st_nlink == 1, f"{p} got a hardlink"
        with open("/etc/passwd", "rb") as f:
            assert f.read() == passwd
        assert os.stat("/etc/passwd").st_nlink == passwd_links, "a hardlink to /etc/passwd was made"
        # nothing named after the marker exists outside a layer directory
        outside = [p for p in _named(marker, "/tmp") + _named(marker, os.path.dirname(root))
                   if p not in (symdir, symfile, hlfile) and not _inside_a_layer(root, p)]
        assert outside == []
        if r.returncode == 0:
            got = inspect(img.ref)
            assert got["Id"] == img.id
        assert half_done(root) == [] and problems(root) == []
    finally:
        with open("/etc/passwd", "rb") as f:
            if f.read() != passwd:  # a broken puller must not break the machine
                with open("/etc/passwd", "wb") as w:
                    w.write(passwd)
        pn("rmi", img.ref)
        for p in sorted(_named(marker, "/tmp"), reverse=True):
            if os.path.islink(p) or not os.path.isdir(p):
                os.unlink(p)
            else:
                shutil.rmtree(p, ignore_errors=True)


def _inside_a_layer(root: str, path: str) -> bool:
    layers = os.path.join(root, "images", "layers") + "/"
    if not path.startswith(layers):
        return False
    first = path[len(layers):].split("/", 1)
    return len(first) == 2 and not first[0].startswith(".")


def test_decompression_bomb_is_refused(images, store):
    img = images["bomb"]  # ~4 MB of gzip, 4 GiB of zeros once inflated
    root = store["root"]
    before = du(root)
    try:
        r = pn("pull", img.ref, timeout=900)
        no_repeated_digest(one_error(r))
        assert entry(img.ref) is None
        assert not (hexes(img.diff_ids) & layer_names(root))
        assert half_done(root) == [] and problems(root) == []
        assert du(root) - before < 64 << 20
    finally:
        pn("rmi", img.ref)
