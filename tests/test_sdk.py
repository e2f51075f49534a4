"""The docker-py-shaped API (pinnace.from_env(), client.containers, Container)
and the readiness waits, end to end against the real runtime."""

from __future__ import annotations

import io
import os
import re
import socket
import struct
import subprocess
import sys
import tarfile
import time

import pytest

import pinnace
from conftest import container_dirs
from pinnace.client import publish_list, volume_list
from pinnace.errors import (Conflict, ContainerError, ContainerNotFound, ExecTimeout, ImageNotFound, NotReady,
                            UsageError)

IDLE = ["sleep", "infinity"]


@pytest.fixture(scope="module")
def client():
    with pinnace.from_env() as c:
        yield c


@pytest.fixture
def box(client):
    with client.containers.run("host", IDLE, detach=True) as c:
        yield c


def test_from_env_follows_the_environment_and_client_takes_a_store(store):
    assert pinnace.from_env().root == store["root"]
    c = pinnace.Client(root=store["root"], runroot=store["runroot"])
    assert (c.root, c.runroot) == (store["root"], store["runroot"]) and c.ping()


def test_run_returns_stdout_and_raises_container_error(client):
    assert client.containers.run("host", ["echo", "hi"], remove=True) == b"hi\n"
    assert client.containers.run("host", "echo out; echo err >&2", remove=True, stderr=True) == b"out\nerr\n"
    assert client.containers.run("host", "echo $A", remove=True, environment={"A": "from-env"}) == b"from-env\n"
    with pytest.raises(ContainerError) as e:
        client.containers.run("host", "echo bad >&2; exit 3", remove=True)
    assert (e.value.exit_status, e.value.stderr, e.value.container) == (3, b"bad\n", None)
    assert "non-zero exit status 3" in str(e.value) and "bad" in str(e.value)
    # kept (docker-py's default): the error carries the container
    with pytest.raises(ContainerError) as e:
        client.containers.run("host", ["false"])
    with e.value.container as kept:
        assert kept.status == "exited" and kept.attrs["State"]["ExitCode"] == 1
    assert not container_dirs({"root": client.root})


def test_detached_container_has_docker_py_attributes(client, tmp_path):
    (tmp_path / "data").write_text("host data\n")
    with client.containers.run("host", IDLE, detach=True, name="sdk-attrs", labels={"team": "sdk"},
                               working_dir="/tmp", hostname="boxy", environment=["E=1"],
                               volumes={str(tmp_path): {"bind": "/mnt/h", "mode": "ro"}}) as c:
        assert (c.name, c.short_id, c.status) == ("sdk-attrs", c.id[:12], "running")
        assert c.attrs["Config"]["Hostname"] == "boxy" and c.labels == {"team": "sdk"}
        assert c.ports == {}
        c.reload()
        assert client.containers.get("sdk-attrs") == c and client.containers.get(c.short_id) == c
        assert [x.id for x in client.containers.list(filters={"label": "team=sdk"})] == [c.id]
        assert client.containers.list(filters={"label": "team=other"}) == []
        assert c.exec_run("pwd; echo $E; hostname").output == b"/tmp\n1\nboxy\n"
        assert c.exec_run("cat /mnt/h/data").output == b"host data\n"
        assert c.exec_run("echo x > /mnt/h/new").exit_code != 0  # mode ro
        c.kill()
        assert c.wait(timeout=10) == {"StatusCode": 137, "Error": None}
        assert c not in client.containers.list() and c in client.containers.list(all=True)
    with pytest.raises(ContainerNotFound):
        client.containers.get("sdk-attrs")


def test_with_removes_the_container_when_the_block_raises(client):
    with pytest.raises(RuntimeError):
        with client.containers.run("host", IDLE, detach=True, name="sdk-raise") as c:
            assert c.status == "running"
            raise RuntimeError("test body failed")
    with pytest.raises(ContainerNotFound):
        client.containers.get("sdk-raise")
    assert not container_dirs({"root": client.root})


def test_exec_run_timeout_kills_and_raises_with_the_output_so_far(box):
    t = time.monotonic()
    with pytest.raises(ExecTimeout) as e:
        box.exec_run("echo before; exec sleep 30", timeout=0.3)
    assert time.monotonic() - t < 5
    assert e.value.output == b"before\n" and "still running after 0.3 s" in str(e.value)
    assert isinstance(e.value, TimeoutError)
    assert not any("sleep 30" in row[-1] for row in box.top()[1:])


def test_exec_run_demux_stdout_stderr_and_input(box):
    assert box.exec_run("echo out; echo err >&2", demux=True).output == (b"out\n", b"err\n")
    assert box.exec_run("echo out; echo err >&2", stderr=False).output == b"out\n"
    assert box.exec_run("echo out; echo err >&2", stdout=False).output == b"err\n"
    code, out = box.exec_run(["cat"], input=b"piped")
    assert (code, out) == (0, b"piped")
    assert box.exec_run("id -u", user="nobody").output.strip() != b"0"
    assert box.exec_run("pwd", workdir="/etc").output == b"/etc\n"
    code, out = box.exec_run("test -t 0 && test -t 1 && echo on a tty; exit 5", tty=True)
    assert (code, out) == (5, b"on a tty\r\n")
    with pytest.raises(ExecTimeout) as e:
        box.exec_run("echo x; exec sleep 30", tty=True, timeout=0.3)
    assert e.value.output == b"x\r\n"
    with pytest.raises(UsageError, match="input="):
        box.exec_run("cat", tty=True, input=b"x")


def test_exec_run_stream_yields_chunks_as_they_come(box):
    # "two" waits for a file made only once "one" has been read: chunks come
    # while the command runs, not at its end
    r = box.exec_run("echo one; while ! test -e /tmp/go-stream; do sleep 0.05; done; echo two >&2", stream=True)
    assert r.exit_code is None
    assert next(r.output) == b"one\n"
    box.exec_run("touch /tmp/go-stream")
    assert b"".join(r.output) == b"two\n"
    chunks = list(box.exec_run("echo a; sleep 0.1; echo b >&2", stream=True, demux=True).output)
    assert chunks == [(b"a\n", None), (None, b"b\n")]
    with pytest.raises(ExecTimeout):
        list(box.exec_run("exec sleep 30", stream=True, timeout=0.2).output)
    assert not any("sleep 30" in row[-1] for row in box.top()[1:])


def test_exec_run_tty_streams_and_detaches(box, client):
    # "two" waits for a file this test makes only once it has read "one": the
    # output streams while the command runs (chunks may split anywhere)
    r = box.exec_run("test -t 1 && echo one; while ! test -e /tmp/go; do sleep 0.05; done; echo two",
                     tty=True, stream=True)
    assert r.exit_code is None
    got = b""
    while not got.endswith(b"\r\n"):
        got += next(r.output)
    assert got == b"one\r\n"
    box.exec_run("touch /tmp/go")
    assert b"".join(r.output) == b"two\r\n"
    with pytest.raises(ExecTimeout):
        list(box.exec_run("exec sleep 30", tty=True, stream=True, timeout=0.2).output)
    # far more than a terminal buffers: it finishes only if its output is read
    r = box.exec_run("test -t 1 && seq 200000 && echo on-tty > /tmp/tty-done", tty=True, detach=True)
    assert (r.exit_code, r.output) == (None, None)
    box.wait_for_command("test -s /tmp/tty-done", timeout=20)
    # and it runs on after the process that started it is gone, as docker's do
    code = (f"import pinnace; pinnace.container({box.id!r}).exec_run("
            "'sleep 0.5; echo alive > /tmp/tty-alive', tty=True, detach=True)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert box.wait_for_command("cat /tmp/tty-alive", timeout=10).output == b"alive\n"


def _frames(sock):
    """(stream, payload) from docker's multiplexed exec stream, read as
    docker-py's docker.utils.socket.frames_iter reads it (SocketIO.read)."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.read(n - len(data))
            if not chunk:
                return data
            data += chunk
        return data

    while True:
        header = exactly(8)
        if not header:
            return
        stream, size = struct.unpack(">BxxxL", header)
        yield stream, exactly(size)


def _merged(frames) -> list[tuple[int, bytes]]:
    """Consecutive frames of one stream as one (a chunk may come in pieces)."""
    out: list[tuple[int, bytes]] = []
    for stream, data in frames:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + data)
        else:
            out.append((stream, data))
    return out


def test_exec_run_socket_is_docker_py_s(box):
    code, sock = box.exec_run("cat; echo done >&2", socket=True, stdin=True, timeout=20)
    assert code is None and isinstance(sock, socket.SocketIO)
    sock._sock.settimeout(10)
    sock.write(b"to stdin\n")
    sock._sock.shutdown(socket.SHUT_WR)  # its stdin ends: cat ends
    assert _merged(_frames(sock)) == [(1, b"to stdin\n"), (2, b"done\n")]
    sock.close()
    # no stdin=True: the command reads nothing (docker attaches no stdin)
    _, sock = box.exec_run("cat; echo out", socket=True, timeout=20)
    sock._sock.settimeout(10)
    assert _merged(_frames(sock)) == [(1, b"out\n")]
    sock.close()
    # a terminal: its bytes as they are, no frames
    _, sock = box.exec_run("cat", socket=True, stdin=True, tty=True, timeout=20)
    sock._sock.settimeout(10)
    sock.write(b"hi\n")
    seen = b""
    while seen.count(b"hi\r\n") < 2:  # the terminal's echo, then cat's copy
        seen += sock.read(100)
    sock.write(b"\x04")  # ^D: end-of-file on a terminal
    assert seen == b"hi\r\nhi\r\n" and sock.read() == b""
    sock.close()
    t = time.monotonic()
    _, sock = box.exec_run("exec sleep 30", socket=True, timeout=0.3)
    sock._sock.settimeout(10)
    assert sock.read() == b"" and time.monotonic() - t < 5
    sock.close()
    assert not any("sleep 30" in row[-1] for row in box.top()[1:])
    with pytest.raises(UsageError, match="input="):
        box.exec_run("cat", socket=True, input=b"x")


def test_write_and_read_file_both_ways(box):
    box.write_file("/tmp/greeting", "hi\n")
    assert box.exec_run("cat /tmp/greeting; stat -c %a /tmp/greeting").output == b"hi\n644\n"
    box.write_file("/tmp/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
    assert box.exec_run("/tmp/run.sh").output == b"ran\n"
    box.exec_run("echo made inside > /tmp/inside")
    assert box.read_file("/tmp/inside") == b"made inside\n"
    # a link made inside points at the container's /etc, never the host's
    box.exec_run("ln -s /etc /tmp/etc-link")
    assert box.read_file("/tmp/etc-link/hostname") == (box.short_id + "\n").encode()
    with pytest.raises(FileNotFoundError):
        box.read_file("/tmp/absent")
    with pytest.raises(FileNotFoundError):
        box.write_file("/no/such/dir/f", b"x")


def _tar(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_put_and_get_archive_both_ways(box):
    archive = _tar(("pkg/a.txt", b"A\n"), ("pkg/sub/b.txt", b"B\n"))
    box.exec_run("mkdir /srv/in")
    assert box.put_archive("/srv/in", archive) is True
    assert box.exec_run("cat /srv/in/pkg/a.txt /srv/in/pkg/sub/b.txt; stat -c %a /srv/in/pkg/a.txt").output \
        == b"A\nB\n640\n"
    chunks, st = box.get_archive("/srv/in/pkg")
    assert st["name"] == "pkg" and st["mode"] & 0o170000 == 0o040000
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        assert sorted(tar.getnames()) == ["pkg", "pkg/a.txt", "pkg/sub", "pkg/sub/b.txt"]
        assert tar.extractfile("pkg/sub/b.txt").read() == b"B\n"
    chunks, st = box.get_archive("/srv/in/pkg/a.txt")
    assert st["size"] == 2
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        assert tar.extractfile("a.txt").read() == b"A\n"
    with pytest.raises(UsageError):
        box.put_archive("/srv/in/pkg/a.txt", archive)  # not a directory
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarfile.TarError):
        box.put_archive("/srv/in", evil.getvalue())


def test_files_go_in_and_out_of_a_stopped_container(client):
    # the first run finds neither file; the second prints what was put in while it was stopped
    script = "cat /tmp/in /srv/pkg/a.txt 2>/dev/null; echo made > /tmp/out; echo secret > /etc/marker; " \
             "ln -sf /etc/marker /tmp/link"
    # network none: a restart on the bridge at once can meet the last run's veth, which the kernel
    # takes away with the old network namespace asynchronously
    with client.containers.run("host", script, detach=True, network="none") as c:
        assert c.wait(timeout=10)["StatusCode"] == 0 and c.status == "exited"
        assert c.read_file("/tmp/out") == b"made\n"
        # the link resolves inside the container's root (the host has no /etc/marker)
        assert c.read_file("/tmp/link") == b"secret\n"
        c.write_file("/tmp/in", "written while stopped\n")
        assert c.put_archive("/srv", _tar(("pkg/a.txt", b"A\n"))) is True
        chunks, st = c.get_archive("/tmp/out")
        assert st["size"] == 5
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            assert tar.extractfile("out").read() == b"made\n"
        with pytest.raises(FileNotFoundError):
            c.read_file("/tmp/absent")
        with pytest.raises(UsageError, match="no such file"):
            c.put_archive("/no/such/dir", _tar(("x", b"")))
        with open("/proc/self/mountinfo") as f:
            assert c.id not in f.read()  # the copy's mount went with it
        c.start()
        assert c.wait(timeout=10)["StatusCode"] == 0
        assert c.logs() == b"written while stopped\nA\n"


@pytest.mark.registry
def test_images_remove_as_docker_rmi(client, images):
    img = images.unique("sdk-rmi", size=20_000)
    assert client.images.pull(img.ref).id == img.id
    tag = client.images.get(img.ref).tags[0]
    with client.containers.run(img.ref, ["sh", "-c", "exit 0"], detach=True, network="none") as c:
        c.wait(timeout=10)
        # a stopped container still uses it: refused, and the image stays
        with pytest.raises(Conflict, match=f"in use by container {c.short_id}"):
            client.images.remove(img.ref)
        assert client.images.get(img.ref).id == img.id
        done = client.images.remove(img.ref, force=True)
        assert done[0] == {"Untagged": tag} and done[-1] == {"Deleted": img.id}
        with pytest.raises(ImageNotFound):
            client.images.get(img.ref)
        # the layers it stacks were kept: it starts again
        c.start()
        assert c.wait(timeout=10)["StatusCode"] == 0
    # one of two tags: only untagged, the image stays under the other
    images.registry.push(images.layout, "sdk-rmi", img.repo, "second", "--format", "oci")
    other = f"{img.name}:second"
    client.images.pull(img.ref)
    client.images.pull(other)
    assert client.images.remove(img.ref) == [{"Untagged": tag}]
    assert client.images.get(other).id == img.id
    assert client.images.remove(client.images.get(other), noprune=True)[-1] == {"Deleted": img.id}
    with pytest.raises(ImageNotFound, match="no such image"):
        client.images.remove(other)
    with pytest.raises(UsageError):
        client.images.remove(None)


def test_logs_and_stats(client):
    with client.containers.run("host", "echo out; echo err >&2; sleep 0.3; echo late", detach=True) as c:
        lines = list(c.logs(stream=True))  # follows until it stops
        assert lines == [b"out\n", b"err\n", b"late\n"]
        assert c.logs(stderr=False) == b"out\nlate\n" and c.logs(tail=1) == b"late\n"
    with client.containers.run("host", IDLE, detach=True, mem_limit="64m") as c:
        s = c.stats(interval=0.05)
        assert s["memory_limit"] == 64 << 20 and s["pids"] >= 1


def test_waits_succeed_as_soon_as_ready(client):
    server = ("sleep 0.3; echo 'server starting'; "
              "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /etc")
    with client.containers.run("host", ["sh", "-c", server], detach=True) as c:
        t = time.monotonic()
        assert c.wait_for_log("server starting", timeout=10) == "server starting"
        assert 0.25 < time.monotonic() - t < 1.5
        assert pinnace.wait.wait_for_log(c, re.compile(r"start\w+")) == "server starting"
        c.wait_for_port(8000, timeout=10)
        c.wait_for_http(8000, "/hostname", 200, timeout=10)
        c.exec_run("sleep 0.2; touch /tmp/flag", detach=True)
        assert c.wait_for_command("test -e /tmp/flag", timeout=10).exit_code == 0


def test_waits_time_out_saying_what_never_became_ready(box, client):
    box.exec_run("echo ignored", detach=True)
    cases = [
        (lambda: box.wait_for_log("never printed", timeout=0.3), [r"no log line matched 'never printed'",
                                                                  r"within 0\.3 s", "printed nothing"]),
        (lambda: box.wait_for_port(9, timeout=0.3), ["TCP port 9", "ConnectionRefusedError"]),
        (lambda: box.wait_for_http(9, "/health", timeout=0.3), [r"GET http://127\.0\.0\.1:9/health", "Refused"]),
        # long enough for one exec even in the emulated v2 VM
        (lambda: box.wait_for_command("echo nope; exit 4", timeout=4), ["exit code 4", "nope"]),
    ]
    for wait, expected in cases:
        t = time.monotonic()
        with pytest.raises(NotReady) as e:
            wait()
        assert time.monotonic() - t < 8
        for pattern in expected:
            assert re.search(pattern, str(e.value)), (pattern, str(e.value))
        assert isinstance(e.value, TimeoutError)
    with client.containers.run("host", "echo booting; echo failing >&2; exit 3", detach=True) as c:
        with pytest.raises(NotReady) as e:
            c.wait_for_log("ready", timeout=10)
        assert "exited with code 3" in str(e.value) and "booting" in str(e.value)


def test_http_wait_reports_the_last_status(client):
    server = "exec busybox httpd -f -p 127.0.0.1:8001 -h /etc"
    with client.containers.run("host", ["sh", "-c", server], detach=True) as c:
        # up first (a server may take seconds to start in the emulated v2 VM)
        c.wait_for_http(8001, "/hostname", 200, timeout=30)
        with pytest.raises(NotReady) as e:
            c.wait_for_http(8001, "/no-such-page", timeout=5)
        assert "status 404" in str(e.value)


@pytest.mark.parametrize("reset", [False, True], ids=["started", "reset"])
def test_die_with_parent_kills_the_container_with_its_caller(client, reset):
    # after a reset too: its supervisor then watches the new first process
    code = ("import pinnace, time\n"
            "c = pinnace.from_env().containers.run('host', ['sleep', 'infinity'], detach=True, die_with_parent=True)\n"
            + ("c.reset()\n" if reset else "") +
            "print(c.id, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    cid = proc.stdout.readline().strip()
    c = client.containers.get(cid)
    try:
        assert c.status == "running"
        proc.kill()
        proc.wait()
        c.wait(timeout=5)
        assert c.attrs["State"]["ExitCode"] == 137
    finally:
        proc.stdout.close()
        c.remove(force=True)


def test_option_conversions():
    assert volume_list({"/a": {"bind": "/b", "mode": "ro"}, "/c": {"bind": "/d"}, "/e": "/f"}) \
        == ["/a:/b:ro", "/c:/d", "/e:/f"]
    assert volume_list(["/a:/b"]) == ["/a:/b"]
    assert publish_list({"80/tcp": 8080, "53/udp": ("127.0.0.1", 5353), 22: None, "9000": [1, 2]}) \
        == ["8080:80/tcp", "127.0.0.1:5353:53/udp", "22", "1:9000", "2:9000"]
    with pytest.raises(UsageError, match="privileged"):
        pinnace.from_env().containers.run("host", ["true"], privileged=True)


def test_ports_are_published_where_the_build_has_the_bridge_network(client):
    from pinnace.config import RunOptions

    if "publish" not in RunOptions.DEFAULTS:
        with pytest.raises(UsageError, match="bridge network"):
            client.containers.run("host", ["true"], ports={"80/tcp": 8080}, remove=True)
        return
    import urllib.request

    server = "exec python3 -m http.server 8000 --directory /etc"
    with client.containers.run("host", server, detach=True, ports={"8000/tcp": ("127.0.0.1", 18765)}) as c:
        assert c.ports == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18765"}]}
        c.wait_for_http(8000, "/hostname", timeout=10)
        with urllib.request.urlopen("http://127.0.0.1:18765/hostname", timeout=5) as r:
            assert r.read() == (c.short_id + "\n").encode()


def test_module_exports_are_lazy():
    out = subprocess.run([sys.executable, "-c", "import sys, pinnace; pinnace.from_env; pinnace.wait; "
                          "print(sorted(m for m in ('click', 'httpx', 'pinnace.cli', 'http.client') "
                          "if m in sys.modules))"], capture_output=True, text=True, check=True,
                         env=dict(os.environ))
    assert out.stdout.strip() == "[]"


def test_remove_right_after_kill_races_the_supervisor_cleanly(client):
    # the supervisor may be taking the cgroup away while remove kills what is in it
    for _ in range(20):
        c = client.containers.run("host", IDLE, detach=True)
        c.kill()
        c.remove(force=True)
    assert not container_dirs({"root": client.root})


def test_docstring_examples_run(client):
    import doctest

    import pinnace.api
    import pinnace.client
    import pinnace.wait

    with client.containers.run("host", IDLE, detach=True) as c:
        runner = doctest.DocTestRunner()
        tried = 0
        for mod in (pinnace, pinnace.api, pinnace.client, pinnace.wait):
            for test in doctest.DocTestFinder().find(mod, extraglobs={"client": client, "c": c}):
                tried += runner.run(test).attempted
        assert runner.failures == 0 and tried >= 15
    assert not container_dirs({"root": client.root})


def test_threads_start_detached_containers_at_once(tmp_path):
    # a fresh store: the threads also race to write the supervisor's binary
    import concurrent.futures

    client = pinnace.Client(root=str(tmp_path / "root"), runroot=str(tmp_path / "run"))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        boxes = list(pool.map(lambda _: client.containers.run("host", IDLE, detach=True), range(8)))
    try:
        for c in boxes:
            c.kill()
            # no other container's supervisor inherited its lock: it is seen stopped at once
            assert c.wait(timeout=5)["StatusCode"] == 137
    finally:
        for c in boxes:
            c.remove(force=True)
    assert not container_dirs({"root": client.root})


SDK_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "SDK.md")


def _python_blocks(path: str) -> list[tuple[int, str]]:
    """(first line, code) of each ```python block of a Markdown file."""
    blocks, lines, start = [], None, 0
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if lines is None:
                if line.strip() == "```python":
                    lines, start = [], n + 1
            elif line.strip() == "```":
                blocks.append((start, "".join(lines)))
                lines = None
            else:
                lines.append(line)
    assert lines is None, f"{path}: a python block from line {start} is never closed"
    return blocks


def test_sdk_md_examples_run(client, tmp_path):
    # plain blocks run here; blocks of test functions run as a pytest file (the plugin's)
    blocks = _python_blocks(SDK_MD)
    suites = [(start, code) for start, code in blocks if re.search(r"^def test_", code, re.M)]
    assert len(blocks) >= 8 and suites
    for start, code in blocks:
        if (start, code) not in suites:
            # padded so that a failure's traceback gives the line in SDK.md
            exec(compile("\n" * (start - 1) + code, SDK_MD, "exec"), {"__name__": "sdk_md"})
    for start, code in suites:
        path = tmp_path / f"test_sdk_md_{start}.py"
        path.write_text("\n" * (start - 1) + code)
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "pinnace.pytest_plugin", "-p", "no:cacheprovider",
                            "-q", str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        count = len(re.findall(r"^def test_", code, re.M))
        assert r.returncode == 0 and f"{count} passed" in r.stdout, f"SDK.md line {start}:\n{r.stdout}{r.stderr}"
    assert not container_dirs({"root": client.root})
