"""Detached containers under ``pinnace-shim``: started by
``containers.detached.start_detached``, then watched from outside only
(files, locks, /proc, cgroups), as another CLI would see them."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import signal
import struct
import time

import pytest

from pinnace import _core, images
from pinnace.config import RunOptions
from pinnace.containers import Store, default_root, default_runroot
from pinnace.containers.detached import shim_binary, start_detached
from pinnace.errors import ExecError

RECORD = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")


@pytest.fixture
def st() -> Store:
    return Store(default_root(), default_runroot())


def start(st: Store, command: list[str], **kw) -> tuple[str, int]:
    tty = kw.pop("tty", False)
    size = kw.pop("console_size", None)
    return start_detached(st, images.for_run("host", st.root), RunOptions(command=command, **kw), tty=tty,
                          console_size=size)


def wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def in_namespace(ns: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.readlink(f"/proc/{p}/ns/pid") == ns:
                out.append(int(p))
        except OSError:
            pass
    return out


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cgroup_dirs(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/pinnace/{cid}") + glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}")


def log_records(st: Store, cid: str) -> list[tuple[str, str, str]]:
    with open(st.paths(cid).log_file) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        m = RECORD.match(line)
        assert m, f"not a k8s-file record: {line!r}"
        out.append(m.groups()[1:])
    return out


def test_exit_code_and_log_streams(st):
    cid, pid = start(st, ["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3"])
    p = st.paths(cid)
    try:
        assert st.state(cid)["State"]["Running"]
        assert wait_for(lambda: not st.owner_alive(p))
        with open(p.exit_file) as f:
            ex = json.load(f)
        assert ex["ExitCode"] == 3 and ex["Signal"] is None and ex["OOMKilled"] is False
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", ex["FinishedAt"])
        assert log_records(st, cid) == [("stdout", "F", "out"), ("stderr", "F", "err")]
        s = st.state(cid)["State"]
        assert (s["Status"], s["Running"], s["ExitCode"], s["FinishedAt"]) == ("exited", False, 3, ex["FinishedAt"])
        assert not os.path.exists(p.runtime_file)
        assert not cgroup_dirs(cid)
        assert not alive(pid)
    finally:
        st.remove(cid, force=True)


def test_partial_lines_and_long_output(st):
    script = "printf 'no newline'; sleep 0.1; printf ' rest\\n'; head -c 100000 /dev/zero | tr '\\0' x; echo"
    cid, _ = start(st, ["sh", "-c", script])
    try:
        assert wait_for(lambda: not st.owner_alive(st.paths(cid)))
        recs = log_records(st, cid)
        assert recs[:2] == [("stdout", "P", "no newline"), ("stdout", "F", " rest")]
        # a long line may arrive in pieces: P records, then the F that ends it
        assert all(t == "P" for _, t, _ in recs[2:-1]) and recs[-1][1] == "F"
        assert "".join(c for _, _, c in recs[2:]) == "x" * 100000
    finally:
        st.remove(cid, force=True)


def test_flock_is_held_while_running(st):
    cid, pid = start(st, ["sleep", "1000"])
    p = st.paths(cid)
    try:
        assert st.owner_alive(p)
        fd = os.open(p.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        s = st.state(cid)["State"]
        assert (s["Status"], s["Pid"]) == ("running", pid)
        shim = parent_of(pid)
        with open(f"/proc/{shim}/cmdline", "rb") as f:
            assert os.path.basename(f.read().split(b"\0")[0]).startswith(b"pinnace-shim-")
        assert alive(pid) and cgroup_dirs(cid)
        _core.cgroup_kill(f"pinnace/{cid}")
        assert wait_for(lambda: not st.owner_alive(p))
        with open(p.exit_file) as f:
            ex = json.load(f)
        assert (ex["ExitCode"], ex["Signal"]) == (137, 9)
        assert not alive(shim) and not cgroup_dirs(cid)
    finally:
        st.remove(cid, force=True)


@pytest.mark.parametrize("user", [None, "1000:1000"], ids=["root", "non-root"])
def test_killed_shim_takes_its_container_along(st, user):
    """Also when the command runs as another user (a uid change clears the
    parent-death signal the container's process was given)."""
    cid, pid = start(st, ["sh", "-c", "sleep 1000 & sleep 1000"], user=user)
    p = st.paths(cid)
    try:
        shim = parent_of(pid)
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        os.kill(shim, signal.SIGKILL)
        assert wait_for(lambda: not _core.cgroup_pids(f"pinnace/{cid}"))
        # gone for good: the orphans' new parent (init) has reaped them
        assert wait_for(lambda: not in_namespace(ns))
        s = st.state(cid)["State"]
        assert (s["Status"], s["Running"], s["ExitCode"]) == ("exited", False, 137)
        assert not os.path.exists(p.exit_file)
    finally:
        st.remove(cid, force=True)
    assert not cgroup_dirs(cid) and not os.path.exists(p.dir)


def test_signals_to_the_shim_are_ignored(st):
    cid, pid = start(st, ["sleep", "1000"])
    try:
        shim = parent_of(pid)
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            os.kill(shim, sig)
        time.sleep(0.1)
        assert alive(shim) and alive(pid) and st.owner_alive(st.paths(cid))
    finally:
        st.remove(cid, force=True)


def test_remove_on_exit_leaves_nothing(st):
    cid, _ = start(st, ["sh", "-c", "echo bye; exit 0"], name="shim-rm", remove=True)
    p = st.paths(cid)
    # the directory goes to the trash first, then the trash goes
    assert wait_for(lambda: not [d for d in os.listdir(st.containers) if cid in d])
    assert not cgroup_dirs(cid)
    assert not os.path.lexists(os.path.join(st.names, "shim-rm"))
    assert not os.path.exists(p.runtime_file)


def test_exec_errors_are_raised_and_removed_containers_leave_nothing(st):
    with pytest.raises(ExecError) as e:
        start(st, ["definitely-not-a-command"], name="shim-bad", remove=True)
    assert e.value.exit_code == 127
    assert "executable file not found" in str(e.value)
    assert not os.path.lexists(os.path.join(st.names, "shim-bad"))
    assert not [d for d in os.listdir(st.containers) if not d.startswith(".") and d not in st.ids()]

    # kept: the record tells what happened, at once
    with pytest.raises(ExecError):
        start(st, ["definitely-not-a-command"], name="shim-bad-kept")
    cid = st.resolve("shim-bad-kept")
    s = st.state(cid)["State"]
    assert (s["Status"], s["ExitCode"]) == ("exited", 127) and "not found" in s["Error"]
    st.remove(cid)


def test_tty(st):
    cid, _ = start(st, ["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; stty size"], tty=True,
                   console_size=(33, 101))
    try:
        assert wait_for(lambda: not st.owner_alive(st.paths(cid)))
        # as lines: a terminal's "\r\n" may reach the log in two reads (two records)
        from pinnace.containers.logs import lines

        got = [(s, d.decode().rstrip("\r\n")) for s, d in lines(st.paths(cid).log_file)]
        assert got == [("stdout", "is-a-tty"), ("stdout", "33 101")]
    finally:
        st.remove(cid, force=True)


def test_shim_binary_is_static_and_written_once(st):
    path = shim_binary(st)
    assert os.path.basename(path).startswith("pinnace-shim-") and os.stat(path).st_mode & 0o777 == 0o755
    assert shim_binary(st) == path
    with open(path, "rb") as f:
        elf = f.read(4096)
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "pinnace-shim has an interpreter: not static"  # PT_INTERP
