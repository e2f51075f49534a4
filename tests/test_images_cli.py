"""``pinnace images``/``rmi``/``image prune``/``image inspect`` and ``run`` of
pulled images, through the real CLI against a real registry."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

from conftest import pn
from pullhelp import by_id, entry, half_done, hexes, images_json, inspect, layer_names, one_error, problems, pull
from registry import HOST_ARCH

pytestmark = pytest.mark.registry


@pytest.fixture
def own_root():
    base = tempfile.mkdtemp(prefix="pinnace-test-own-", dir="/var/tmp")
    os.chmod(base, 0o711)
    try:
        yield os.path.join(base, "root")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_images_json_sizes_and_shared_size(images):
    """sizes-a and sizes-b share a 200 kB base layer and nothing else; their own
    layers hold 50 kB and 70 kB."""
    a, b = images["sizes-a"], images["sizes-b"]
    pull(a.ref)
    pull(b.ref)
    ea, eb = entry(a.ref), entry(b.ref)
    assert ea["Id"] == a.id and eb["Id"] == b.id
    assert set(ea) >= {"Id", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize", "UniqueSize", "Containers"}
    assert f"{a.name}@{a.digest}" in ea["RepoDigests"]
    slack = 64 << 10
    assert 250_000 <= ea["Size"] < 250_000 + slack, ea
    assert 270_000 <= eb["Size"] < 270_000 + slack, eb
    assert ea["SharedSize"] == eb["SharedSize"], (ea, eb)
    assert 200_000 <= ea["SharedSize"] < 200_000 + slack, ea
    for e in (ea, eb):
        assert e["UniqueSize"] == e["Size"] - e["SharedSize"]
    assert eb["Size"] - ea["Size"] == eb["UniqueSize"] - ea["UniqueSize"]
    # once b is gone, nothing of a is shared; b's own layer goes, the base stays
    assert pn("rmi", b.ref).returncode == 0
    ea = entry(a.ref)
    assert ea["SharedSize"] == 0 and ea["UniqueSize"] == ea["Size"]
    names = layer_names(os.environ["PINNACE_ROOT"])
    assert hexes(a.diff_ids) <= names
    assert not (hexes(b.diff_ids[-1:]) & names)


def test_images_table_and_quiet(images):
    bb = images["busybox"]
    pull(bb.ref)
    r = pn("images", check=True)
    header = r.out.splitlines()[0].split()
    assert header[:2] == ["REPOSITORY", "TAG"], r.out
    assert any(line.split()[:3] == [bb.name, "latest", bb.id[7:19]] for line in r.out.splitlines()), r.out
    ids = pn("images", "-q", check=True).out.split()
    assert bb.id[7:19] in ids
    assert bb.id in pn("images", "-q", "--no-trunc", check=True).out.split()


def test_image_inspect_is_docker_shaped(images):
    img = images["config"]
    pull(img.ref)
    got = inspect(img.ref)
    assert got["Id"] == img.id
    assert img.ref in got["RepoTags"]
    assert f"{img.name}@{img.digest}" in got["RepoDigests"]
    assert (got["Os"], got["Architecture"]) == ("linux", HOST_ARCH)
    assert got["RootFS"] == {"Type": "layers", "Layers": img.diff_ids}
    c = got["Config"]
    assert c["Entrypoint"] == ["/usr/local/bin/show"]
    assert c["Cmd"] == ["default", "args"]
    assert "GREETING=hello from the image" in c["Env"]
    assert (c["WorkingDir"], c["User"]) == ("/srv/app", "app")
    assert c["Labels"] == {"org.example.test": "yes", "tier": "backend"}
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert got["Size"] > 0 and got["Created"]
    # by id and by id prefix too
    assert inspect(img.id)["Id"] == img.id
    assert inspect(img.id[7:19])["Id"] == img.id
    r = pn("image", "inspect", "no-such-image-here")
    assert r.returncode != 0 and "no-such-image-here" in r.err and "Traceback" not in r.err


def test_run_honours_entrypoint_cmd_env_workdir_user(images):
    img = images["config"]
    pull(img.ref)
    r = pn("run", "--rm", img.ref)
    assert r.returncode == 0, r.err
    assert r.out.splitlines() == ["args:default args", "greeting:hello from the image", "pwd:/srv/app", "uid:1000"]
    # arguments replace Cmd, not Entrypoint; flags override the image's settings
    r = pn("run", "--rm", "-e", "GREETING=from the flag", "-w", "/tmp", "-u", "0", img.ref, "x", "y")
    assert r.out.splitlines() == ["args:x y", "greeting:from the flag", "pwd:/tmp", "uid:0"], r.err
    # the image's PATH is the container's
    r = pn("run", "--rm", images["busybox"].ref, "sh", "-c", 'echo "$PATH"')
    assert r.out == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", r.err


def test_exec_runs_as_the_images_user(images):
    """docker exec's default user is the container's, which is the image's User
    unless run said -u."""
    img = images["config"]
    pull(img.ref)
    name = "exec-image-user"
    pn("run", "-d", "--name", name, "--entrypoint", "sleep", img.ref, "60", check=True)
    try:
        assert pn("exec", name, "id", "-u", check=True).out == "1000\n"
        assert pn("exec", "-u", "0", name, "id", "-u", check=True).out == "0\n"
        assert pn("inspect", "-f", "{{.Config.User}}", name, check=True).out == "app\n"
    finally:
        pn("rm", "-f", name, check=True)


def test_run_of_a_missing_image_pulls_it(images):
    img = images["autopull"]
    assert entry(img.ref) is None
    r = pn("run", "--rm", img.ref, "echo", "pulled and ran", timeout=180)
    assert r.returncode == 0, r.err
    assert r.out == "pulled and ran\n"  # progress goes to stderr
    assert entry(img.ref)["Id"] == img.id


def test_run_of_an_image_no_registry_has_is_a_clear_error(registry):
    r = pn("run", "--rm", f"{registry.host}/never-pushed", "true")
    line = one_error(r, after_progress=True)
    assert r.out == ""
    assert "never-pushed" in line


def test_rmi_untags_then_removes_and_refuses_while_used(images, store):
    img = images.unique("rmi-me", size=50_000)
    root = store["root"]
    top = img.diff_ids[-1].split(":")[1]
    pull(images["busybox"].ref)  # holds the base layer
    pull(img.ref)
    # the same image under a second tag
    images.registry.push(images.layout, "rmi-me", img.repo, "second", "--format", "oci")
    other = f"{img.name}:second"
    pull(other)
    assert entry(other)["Id"] == img.id
    assert pn("rmi", img.ref).returncode == 0
    assert entry(img.ref) is None
    assert by_id(img.id)["RepoTags"] == [other], "untagged only"
    assert pn("rmi", other).returncode == 0
    assert by_id(img.id) is None
    assert top not in layer_names(root)
    assert hexes(img.diff_ids[:-1]) <= layer_names(root), "the busybox base is used by other images"
    # by id prefix
    pull(img.ref)
    assert pn("rmi", img.id[7:19]).returncode == 0
    assert by_id(img.id) is None
    # refused while a container uses it, unless -f
    pull(img.ref)
    name = f"uses-{uuid.uuid4().hex[:8]}"
    assert pn("run", "--name", name, img.ref, "true").returncode == 0
    try:
        r = pn("rmi", img.ref)
        assert r.returncode != 0 and "Traceback" not in r.err
        assert len(r.err.strip().splitlines()) == 1 and "container" in r.err.lower(), r.err
        assert by_id(img.id) is not None
        assert pn("rmi", "-f", img.ref).returncode == 0
        assert entry(img.ref) is None
    finally:
        pn("rm", "-f", name)
    pn("image", "prune", "-f")
    assert by_id(img.id) is None
    assert half_done(root) == [] and problems(root) == []


def test_rmi_of_unknown_image_is_one_line(store):
    r = pn("rmi", "no-such-image-anywhere")
    assert r.returncode != 0
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "no-such-image-anywhere" in lines[0], r.err


def test_image_prune_removes_dangling_then_all(images, own_root):
    g = ("--root", own_root)
    old = images.unique("prune-old", size=20_000, repo="prune", tag="latest")
    r = pn(*g, "pull", old.ref, timeout=180)
    assert r.returncode == 0, r.err
    new = images.unique("prune-new", size=20_000, repo="prune", tag="latest")  # the tag moves
    r = pn(*g, "pull", new.ref, timeout=180)
    assert r.returncode == 0, r.err
    old_entry = by_id(old.id, *g)
    assert old_entry is not None and old_entry["RepoTags"] == [], old_entry
    assert by_id(new.id, *g)["RepoTags"] == [new.ref]
    r = pn(*g, "image", "prune", "-f")
    assert r.returncode == 0, r.err
    assert by_id(old.id, *g) is None
    assert by_id(new.id, *g) is not None
    assert old.diff_ids[-1].split(":")[1] not in layer_names(own_root)
    # a container keeps its image through prune -a
    name = f"keep-{uuid.uuid4().hex[:8]}"
    assert pn(*g, "run", "--name", name, new.ref, "true").returncode == 0
    try:
        assert pn(*g, "image", "prune", "-a", "-f").returncode == 0
        assert by_id(new.id, *g) is not None
    finally:
        pn(*g, "rm", "-f", name)
    assert pn(*g, "image", "prune", "-a", "-f").returncode == 0
    assert images_json(*g) == []
    assert layer_names(own_root) == set()
    assert problems(own_root) == []
