"""pinnace cp: files in and out of a running container, paths looked up inside its root."""

from __future__ import annotations

import json
import os
import time

from conftest import pn


def _wait_for(name: str, path: str) -> None:
    deadline = time.monotonic() + 20
    while pn("exec", name, "test", "-e", path).returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared in {name}"
        time.sleep(0.05)


def test_copy_in_and_out_keeps_trees_modes_and_links(tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("alpha")
    (src / "sub" / "b").write_text("beta")
    os.chmod(src / "a", 0o751)
    os.symlink("a", src / "link")
    pn("run", "-d", "--name", "cpio", "host", "sh", "-c", "mkdir /data; echo inside > /data/f; sleep 60", check=True)
    try:
        _wait_for("cpio", "/data/f")
        pn("cp", str(src), "cpio:/data/", check=True)  # onto a directory: into it
        r = pn("exec", "cpio", "sh", "-c", "cat /data/tree/a; echo; cat /data/tree/sub/b; echo; "
               "readlink /data/tree/link; stat -c %a /data/tree/a", check=True)
        assert r.out.split() == ["alpha", "beta", "a", "751"]
        pn("cp", "cpio:/data/f", str(tmp_path / "out"), check=True)
        assert (tmp_path / "out").read_text() == "inside\n"
        pn("cp", "cpio:/data", str(tmp_path / "back"), check=True)  # a directory, recursively
        assert (tmp_path / "back" / "tree" / "sub" / "b").read_text() == "beta"
        r = pn("cp", "cpio:/no/such", str(tmp_path / "x"))
        assert r.returncode == 125 and r.err.strip() == "Error: no such file or directory: /no/such"
    finally:
        pn("rm", "-f", "cpio")


def test_symlinks_in_the_container_never_reach_the_host(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    pn("run", "-d", "--name", "cpevil", "host", "sh", "-c",
       f"mkdir /evil; ln -s {victim} /evil/abs; ln -s ../../../../../../..{victim} /evil/rel; "
       "ln -s /etc /evil/etc; sleep 60", check=True)
    try:
        _wait_for("cpevil", "/evil/etc")
        (tmp_path / "payload").write_text("x")
        for link in ("abs", "rel"):
            # the link names a host directory, which inside the root does not exist
            r = pn("cp", str(tmp_path / "payload"), f"cpevil:/evil/{link}/planted")
            assert r.returncode == 125, r.out
        pn("cp", str(tmp_path / "payload"), "cpevil:/evil/etc/", check=True)
        assert os.listdir(victim) == []
        assert not os.path.exists("/etc/payload")
        assert pn("exec", "cpevil", "cat", "/etc/payload", check=True).out == "x"
        # out: an absolute link is read inside the container, not on the host
        pn("cp", "cpevil:/evil/etc/hostname", str(tmp_path / "hn"), check=True)
        assert (tmp_path / "hn").read_text() != open("/etc/hostname").read()
    finally:
        pn("rm", "-f", "cpevil")


def test_cp_needs_one_container_side(tmp_path):
    r = pn("cp", str(tmp_path), str(tmp_path / "y"))
    assert r.returncode == 125 and "one side must be CONTAINER:PATH" in r.err


def test_cp_in_and_out_of_a_stopped_container(tmp_path, store):
    pn("run", "--name", "cpstopped", "host", "sh", "-c", "mkdir -p /data && echo made-inside > /data/f", check=True)
    # out: what the container wrote (its upper layer) and what its image has
    pn("cp", "cpstopped:/data", str(tmp_path / "out"), check=True)
    assert (tmp_path / "out" / "f").read_text() == "made-inside\n"
    pn("cp", "cpstopped:/etc/nsswitch.conf", str(tmp_path / "nsswitch"), check=True)
    assert "hosts: files dns" in (tmp_path / "nsswitch").read_text()
    # in: into its own upper layer, where it will see it
    (tmp_path / "note").write_text("from-the-host\n")
    pn("cp", str(tmp_path / "note"), "cpstopped:/data/note", check=True)
    r = pn("cp", "cpstopped:/nonexistent", str(tmp_path / "x"))
    assert r.returncode == 125 and "no such file" in r.err and len(r.err.strip().splitlines()) == 1
    # nothing stays mounted, here or anywhere
    with open("/proc/self/mountinfo") as f:
        assert not [l for l in f if "cpstopped" in l or store["root"] + "/containers" in l]
    upper = json.loads(pn("inspect", "cpstopped", check=True).out)[0]["GraphDriver"]["Data"]["UpperDir"]
    with open(os.path.join(upper, "data", "note")) as f:
        assert f.read() == "from-the-host\n"
    pn("rm", "cpstopped", check=True)
