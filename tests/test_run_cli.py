"""``pinnace run`` through the real binary: flags, stdio, exit codes, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import PINNACE, container_dirs, pn, runtime_records, sh


@pytest.mark.parametrize(
    "cmd, code",
    [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42), (["/etc"], 126), (["/etc/passwd"], 126),
     (["no-such-command"], 127), (["/no/such/path"], 127)],
)
def test_exit_codes(cmd, code):
    r = pn("run", "--rm", "host", *cmd)
    assert r.returncode == code, r.err
    if code >= 126:
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: exec:"), r.err
        assert "Traceback" not in r.err


def test_issue_quick_start_command():
    r = pn("run", "--rm", "host", "--", "sh", "-c", "echo $$; hostname; ls /")
    assert r.returncode == 0, r.err
    lines = r.out.split()
    assert lines[0] == "1"
    assert {"usr", "etc", "proc", "dev", "tmp"} <= set(lines[2:])


def _container_pid(cli_pid: int, comm: str, timeout: float = 10) -> int:
    """The container's first process: a child of the CLI running ``comm``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in os.listdir(f"/proc/{cli_pid}/task"):
            try:
                with open(f"/proc/{cli_pid}/task/{task}/children") as f:
                    for child in f.read().split():
                        with open(f"/proc/{child}/comm") as c:
                            if c.read().strip() == comm:
                                return int(child)
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"no {comm} child of {cli_pid}")


def test_killed_by_sigkill_exits_137():
    p = subprocess.Popen([PINNACE, "run", "--rm", "host", "sleep", "60"], stderr=subprocess.PIPE)
    try:
        os.kill(_container_pid(p.pid, "sleep"), signal.SIGKILL)
        assert p.wait(timeout=10) == 137
    finally:
        p.kill()
        p.wait()


def test_sigterm_and_sigint_to_the_cli_reach_the_container():
    script = 'trap "echo got-term; exit 3" TERM; trap "echo got-int; exit 4" INT; echo ready; while :; do sleep 0.05; done'
    for sig, word, code in ((signal.SIGTERM, "got-term", 3), (signal.SIGINT, "got-int", 4)):
        p = subprocess.Popen([PINNACE, "run", "--rm", "host", "sh", "-c", script], stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"ready\n"
            p.send_signal(sig)
            assert p.wait(timeout=10) == code
            assert p.stdout.read().decode().strip() == word
        finally:
            p.kill()
            p.wait()


def test_stdin_passes_through_with_i_and_is_empty_without():
    assert pn("run", "--rm", "-i", "host", "cat", input=b"hello\n").out == "hello\n"
    assert pn("run", "--rm", "host", "cat", input=b"hello\n").out == ""


def test_stdout_and_stderr_stay_apart():
    r = sh("echo out; echo err >&2")
    assert r.out == "out\n" and r.err == "err\n"


def test_env_env_file_workdir_and_user(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\nFROM_FILE=1\nBOTH=file\n\n")
    os.environ["PINNACE_TEST_COPIED"] = "copied"
    try:
        r = pn("run", "--rm", "--env-file", str(f), "-e", "BOTH=flag", "-e", "PINNACE_TEST_COPIED",
               "-e", "X=a=b", "-w", "/work/dir", "-u", "1000:1001", "host",
               "sh", "-c", 'echo $FROM_FILE $BOTH $PINNACE_TEST_COPIED $X; pwd; id -u; id -g; echo $HOME')
    finally:
        del os.environ["PINNACE_TEST_COPIED"]
    assert r.returncode == 0, r.err
    assert r.out.splitlines() == ["1 flag copied a=b", "/work/dir", "1000", "1001", "/"]
    r = sh("echo $HOME; echo $PATH; echo $HOSTNAME", "--hostname", "hh")
    assert r.out.splitlines() == ["/root", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "hh"]
    assert sh("id -un", "-u", "nobody").out.strip() == "nobody"


def test_volumes_rw_and_ro(tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    r = pn("run", "--rm", "-v", f"{tmp_path}:/data", "host", "sh", "-c", "cat /data/in.txt; echo back > /data/out.txt")
    assert r.out == "from host"
    assert (tmp_path / "out.txt").read_text() == "back\n"
    r = pn("run", "--rm", "-v", f"{tmp_path}:/data:ro", "host", "sh", "-c", "echo no > /data/ro.txt")
    assert r.returncode != 0 and "Read-only file system" in r.err
    assert not (tmp_path / "ro.txt").exists()
    # a single file, and a missing source created like docker does
    missing = tmp_path / "new" / "dir"
    r = pn("run", "--rm", "-v", f"{tmp_path / 'in.txt'}:/etc/in.txt", "-v", f"{missing}:/m", "host",
           "sh", "-c", "cat /etc/in.txt; ls -d /m")
    assert r.returncode == 0, r.err
    assert r.out == "from host/m\n"


def test_tmpfs_and_read_only_root():
    r = pn("run", "--rm", "--read-only", "--tmpfs", "/scratch", "host", "sh", "-c",
           "echo ok > /scratch/f && cat /scratch/f; grep ' /scratch ' /proc/self/mountinfo | grep -c tmpfs; touch /x")
    assert r.out.splitlines() == ["ok", "1"]
    assert r.returncode == 1 and "Read-only file system" in r.err


def test_rootfs_directory(busybox_rootfs):
    r = pn("run", "--rm", "--rootfs", str(busybox_rootfs), "sh", "-c", "echo $$; id -un 2>/dev/null; ls /")
    assert r.returncode == 0, r.err
    assert r.out.split()[0] == "1"
    r = pn("run", "--rm", "--rootfs", str(busybox_rootfs), "-u", "box", "id")
    assert "uid=1234" in r.out
    # the directory itself is a read-only lower layer
    pn("run", "--rm", "--rootfs", str(busybox_rootfs), "touch", "/bin/new", check=True)
    assert not (busybox_rootfs / "bin" / "new").exists()


def test_setup_failure_is_one_clear_line_with_code_125():
    r = pn("run", "--rm", "-w", "/etc/passwd", "host", "true")
    assert r.returncode == 125
    assert r.err.strip() == "Error: container setup failed: change to working directory /etc/passwd: ENOTDIR: Not a directory"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--rm", "--pull", "never", "no-such-image"], "no such image: no-such-image"),
        (["run", "--rm", "--bogus-flag", "host", "true"], "--bogus-flag"),
        (["run", "--rm", "-v", "relative:/x", "host", "true"], "invalid volume specification"),
        (["run", "--rm", "-v", "/a:/b:rx", "host", "true"], "invalid volume specification"),
        (["run", "--rm", "-v", "onlyone", "host", "true"], "invalid volume specification"),
        (["run", "--rm", "--network", "bridge0", "host", "true"], "network bridge0 not found"),
        (["run", "--rm", "-u", "nosuchuser", "host", "true"], "unable to find user nosuchuser"),
        (["run", "--rm", "--ulimit", "nofile=x", "host", "true"], "invalid ulimit"),
        (["run", "--rm", "--rootfs", "/no/such/dir", "true"], "not a directory"),
        (["run", "--rm", "--cap-add", "CAP_NOPE", "host", "true"], "unknown capability"),
        (["run"], "requires at least 1 argument"),
        (["frobnicate"], "No such command"),
        (["rm", "no-such-container"], "no such container"),
    ],
)
def test_bad_input_gives_one_line_and_leaves_nothing(store, args, needle):
    before = container_dirs(store)
    r = pn(*args)
    assert r.returncode in (125, 1), (r.returncode, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert needle in lines[0], r.err
    assert "Traceback" not in r.err
    assert container_dirs(store) == before


def test_name_must_be_unique_and_ps_rm_work(store):
    assert pn("run", "--name", "named1", "host", "sh", "-c", "exit 3").returncode == 3
    try:
        r = pn("run", "--name", "named1", "host", "true")
        assert r.returncode == 125 and "already in use" in r.err
        ps = pn("ps", "-a", check=True).out
        line = next(line for line in ps.splitlines() if "named1" in line)
        assert "Exited (3)" in line
        assert "named1" not in pn("ps", check=True).out
        ids = pn("ps", "-a", "-q").out.split()
        assert len(ids) == 1 and len(ids[0]) == 12
    finally:
        assert pn("rm", "named1").returncode == 0
    assert container_dirs(store) == []
    # the name is free again
    pn("run", "--rm", "--name", "named1", "host", "true", check=True)


def test_rm_removes_every_directory(store):
    sh("echo x > /f")
    assert container_dirs(store) == []
    assert runtime_records(store) == []


def test_root_and_runroot_flags_keep_stores_apart(tmp_path, store):
    import json

    root, run = str(tmp_path / "root"), str(tmp_path / "run")
    p = subprocess.Popen([PINNACE, "--root", root, "run", "--runroot", run, "--rm", "--name", "apart",
                          "host", "sleep", "60"])
    try:
        pid = _container_pid(p.pid, "sleep")
        # the record is written as the process starts: give it a moment
        deadline = time.monotonic() + 5
        while not os.path.isdir(os.path.join(run, "containers")) or not os.listdir(os.path.join(run, "containers")):
            assert time.monotonic() < deadline, "no runtime record under --runroot"
            time.sleep(0.01)
        records = os.listdir(os.path.join(run, "containers"))
        assert len(records) == 1
        with open(os.path.join(run, "containers", records[0])) as f:
            assert json.load(f)["State"]["Pid"] == pid
        assert "apart" in pn("--root", root, "--runroot", run, "ps").out
        # global flags may also follow the command, as podman's do
        assert "apart" in pn("ps", "--root", root, f"--runroot={run}").out
        assert "apart" not in pn("ps", "-a").out
        os.kill(pid, signal.SIGKILL)
        assert p.wait(timeout=10) == 137
    finally:
        p.kill()
        p.wait()
    assert os.listdir(os.path.join(root, "containers")) == []
    assert os.listdir(os.path.join(run, "containers")) == []


def test_supplementary_groups_from_the_image_and_group_add(busybox_rootfs):
    (busybox_rootfs / "etc" / "group").write_text("root:x:0:\nbox:x:1234:\nstaff:x:50:box\naudio:x:29:\n")
    r = pn("run", "--rm", "--rootfs", str(busybox_rootfs), "-u", "box", "--group-add", "audio", "--group-add", "7",
           "sh", "-c", "id -G; grep ^Groups /proc/self/status")
    assert r.returncode == 0, r.err
    assert sorted(r.out.splitlines()[0].split()) == sorted(["1234", "50", "29", "7"])
    assert pn("run", "--rm", "--group-add", "nogroupcalledthis", "host", "true").returncode == 125


def test_prune_and_images_on_a_fresh_store(tmp_path):
    glob = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    r = pn(*glob, "system", "prune", "-f")
    assert r.returncode == 0 and "Total reclaimed: 0 containers, 0 images, 0 layers" in r.out, r.err
    r = pn(*glob, "images", "--format", "json")
    assert r.returncode == 0 and r.out.strip() == "[]", r.err
