"""pytest plugin: a fresh pinnace sandbox per test, nothing left behind.

Registered through the ``pytest11`` entry point, so installing pinnace is
enough. It costs nothing until a test asks for one of its fixtures.

Fixtures:

- ``sandbox``: a running detached container for this test (default image
  ``host``; its first process is pinnace's init, idle), force-removed at teardown whatever
  the test did. ``@pytest.mark.sandbox(image=..., command=..., memory=...,
  **run options)`` picks its image, command and limits (docker-py's
  keyword names or pinnace run's).
- ``sandbox_factory``: ``make(image=None, command=None, **options)`` for
  several sandboxes, each removed at teardown.
- ``pinnace_client`` (session): the :class:`pinnace.Client` they come from.
- ``pinnace_image`` (session): the default image, pulled once per run.

Options: ``--pinnace-image`` (ini ``pinnace_image``), ``--pinnace-root``,
``--pinnace-runroot``, ``--pinnace-pool N`` (ini ``pinnace_pool``): N
default sandboxes made ahead and used again, each reset to its image's
state between tests, so that ``sandbox`` without a marker takes one at
once.

A sandbox is killed by its supervisor when the pytest process that made it
exits, however it exits (the supervisor holds a pidfd of that process).
Every sandbox is labelled with its owner (pid and start time) and the
xdist worker; the first use of ``pinnace_client`` in a session removes
labelled sandboxes whose owner is gone. Under pytest-xdist, names carry the
worker id and image pulls are serialised by a file lock, so each image is
pulled once per run::

    def test_tool(sandbox):
        sandbox.write_file("/tmp/in", "3 1 2\\n")
        assert sandbox.exec_run("tr ' ' '\\\\n' < /tmp/in | sort -n").output == b"1\\n2\\n3\\n"

    @pytest.mark.sandbox(image="alpine", memory="64m")
    def test_small(sandbox): ...
"""

from __future__ import annotations

import os

import pytest

#: "<pid>:<start time>" of the pytest process that made the sandbox
OWNER_LABEL = "pinnace.pytest.owner"
#: the xdist worker id ("master" without xdist)
WORKER_LABEL = "pinnace.pytest.worker"
DEFAULT_IMAGE = "host"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("pinnace", "pinnace sandboxes")
    group.addoption("--pinnace-image", default=None,
                    help="image of the sandbox fixture (default: ini pinnace_image, else host)")
    group.addoption("--pinnace-root", default=None,
                    help="pinnace's persistent state (default: $PINNACE_ROOT, else /var/lib/pinnace)")
    group.addoption("--pinnace-runroot", default=None,
                    help="pinnace's runtime state (default: $PINNACE_RUNROOT, else /run/pinnace)")
    group.addoption("--pinnace-pool", type=int, default=None,
                    help="N default sandboxes made ahead, reset and used again between tests "
                         "(default: ini pinnace_pool, else 0: none)")
    parser.addini("pinnace_image", "image of the sandbox fixture", default=DEFAULT_IMAGE)
    parser.addini("pinnace_pool", "default sandboxes made ahead and reused after a reset", default="0")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "sandbox(image=None, command=None, **options): image, command and run options "
        "(memory=, cpus=, environment=, volumes=, ...) of this test's sandbox fixture")


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot): with the pid, it
    names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    pid, _, start = token.partition(":")
    return pid.isdigit() and _start_time(int(pid)) == start


def sweep(client) -> list[str]:
    """Force-remove the sandboxes whose pytest process is gone; their ids."""
    from pinnace.errors import PinnaceError

    removed = []
    for c in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        try:
            if not owner_alive(c.labels.get(OWNER_LABEL, "")):
                c.remove(force=True)
                removed.append(c.id)
        except (PinnaceError, OSError):
            pass  # gone meanwhile, or another session's sweep got there first
    return removed


def worker_id(config) -> str:
    return getattr(config, "workerinput", {}).get("workerid") or os.environ.get("PYTEST_XDIST_WORKER") or "master"


def ensure_image(client, image: str) -> str:
    """Pull ``image`` unless the store has it, once per run however many
    xdist workers ask at the same time (an flock under runroot)."""
    if image == DEFAULT_IMAGE:
        return image  # built in
    import fcntl
    import hashlib

    from pinnace.errors import ImageNotFound

    d = os.path.join(client.runroot, "pytest")
    os.makedirs(d, exist_ok=True)
    lock = os.path.join(d, "pull-" + hashlib.sha256(image.encode()).hexdigest()[:16] + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            client.images.get(image)
        except ImageNotFound:
            client.images.pull(image)
    finally:
        os.close(fd)
    return image


class _Session:
    """What a session's sandboxes share: labels, the name prefix, a counter.
    Starts may run on the pool's thread and the tests' at once."""

    def __init__(self, config, client):
        self.client = client
        self.worker = worker_id(config)
        self.labels = {OWNER_LABEL: owner_token(), WORKER_LABEL: self.worker}
        self.prefix = f"pytest-{self.worker}-{os.getpid()}-"
        self.images: set[str] = set()
        import itertools

        # shared by the pool's thread and the tests' (next() is atomic under the GIL)
        self.numbers = itertools.count(1)

    def image(self, name: str) -> str:
        if name not in self.images:
            ensure_image(self.client, name)
            self.images.add(name)
        return name

    def start(self, image: str, command, options: dict):
        labels = dict(self.labels)
        labels.update(options.pop("labels", None) or {})
        # throwaway: no disk flush when a sandbox's overlay goes (at every reset too)
        options.setdefault("volatile", True)
        if command is None:
            # pinnace's own init, idle: static, so any image runs it; it reaps
            # what execs leave behind and stops at SIGTERM at once
            from pinnace.config import IDLE_COMMAND

            command = list(IDLE_COMMAND)
            options.setdefault("init", True)
        return self.client.containers.run(
            self.image(image), command, detach=True,
            name=options.pop("name", None) or f"{self.prefix}{next(self.numbers)}", labels=labels,
            die_with_parent=options.pop("die_with_parent", True), **options)


class _Pool:
    """Default sandboxes (the session's image, idle, no options) made ahead
    and used again: a test takes a ready one at once; at its end the
    sandbox goes back and is reset to its image's state
    (:meth:`Container.reset`: its processes killed, an empty upper layer,
    its command started again by its own supervisor, outside this process).
    Resets run side by side: the pool's thread asks, then sleeps on their
    answers. ``size`` sandboxes live for the session, removed at its end."""

    def __init__(self, session: _Session, image: str, size: int):
        import collections
        import threading

        self.session, self.image, self.size = session, image, size
        self.ready: collections.deque = collections.deque()
        self.returned: collections.deque = collections.deque()
        self.leftover: list = []
        self.made = 0  # sandboxes the pool owns: ready, being reset, or lent
        self.cond = threading.Condition()
        self.closed = False
        self.error: BaseException | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name="pinnace-pool", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._fill()
        except BaseException as e:  # noqa: BLE001 - tests then start their own, and see the error
            self.error = e
            with self.cond:
                self.cond.notify_all()

    def _fill(self) -> None:
        import select

        from pinnace.containers.control import ResetInProgress
        from pinnace.errors import PinnaceError

        pending: dict[int, tuple] = {}
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        try:
            while True:
                with self.cond:
                    if self.closed:
                        return
                    returned = list(self.returned)
                    self.returned.clear()
                    make = self.made < self.size
                    if make:
                        self.made += 1
                for c in returned:
                    try:
                        r = ResetInProgress(c._store, c.id)
                    except PinnaceError:
                        r = None  # removed by its test
                    if r is not None and r.fileno() >= 0:
                        pending[r.fileno()] = (c, r)
                        poller.register(r.fileno(), select.POLLIN)
                    else:
                        self._put(self._finish(c, r))
                if make:
                    self._put(self.session.start(self.image, None, {}))
                    continue
                for fd, _ in poller.poll(100 if pending else None):
                    if fd == self.wake_r:
                        try:
                            os.read(self.wake_r, 4096)
                        except BlockingIOError:
                            pass
                    elif fd in pending:
                        poller.unregister(fd)
                        self._put(self._finish(*pending.pop(fd)))
                for fd, (c, r) in list(pending.items()):
                    if r.abandoned():
                        poller.unregister(fd)
                        del pending[fd]
                        self._put(self._finish(c, r))
        finally:
            for c, r in pending.values():
                r.cancel()
                self.leftover.append(c)

    def _finish(self, c, r):
        """The sandbox once its reset is done; a new one if it cannot be."""
        from pinnace.errors import PinnaceError

        try:
            if r is None:
                raise PinnaceError("gone")
            r.result()
            return c
        except PinnaceError:
            _remove_all([c])
            return self.session.start(self.image, None, {})

    def _put(self, c) -> None:
        with self.cond:
            self.ready.append(c)
            self.cond.notify_all()

    def take(self):
        """A ready sandbox; None when the pool is broken (start one). Waits
        for one being reset rather than making more than ``size``."""
        with self.cond:
            while not self.ready and self.error is None and not self.closed:
                self.cond.wait()
            return self.ready.popleft() if self.ready else None

    def give_back(self, c) -> None:
        with self.cond:
            if self.closed:
                _remove_all([c])
                return
            self.returned.append(c)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass  # woken already

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self._wake()
        self.thread.join()
        os.close(self.wake_r)
        os.close(self.wake_w)
        _remove_all(list(self.ready) + list(self.returned) + self.leftover)
        self.ready.clear()
        self.returned.clear()
        self.leftover.clear()


@pytest.fixture(scope="session")
def pinnace_client(request):
    """The session's :class:`pinnace.Client` (``--pinnace-root``/``--pinnace-runroot``,
    else the environment's store). Its first use sweeps sandboxes of dead sessions."""
    from pinnace.client import Client

    get = request.config.getoption
    client = Client(root=get("--pinnace-root"), runroot=get("--pinnace-runroot"))
    sweep(client)
    with client:
        yield client
    from pinnace.containers import drain_background_removals

    # sandboxes are removed on the cleanup worker; an xdist worker ends
    # without running atexit handlers, so wait for them here
    drain_background_removals()


@pytest.fixture(scope="session")
def _pinnace_session(request, pinnace_client) -> _Session:
    return _Session(request.config, pinnace_client)


@pytest.fixture(scope="session")
def pinnace_image(request, _pinnace_session) -> str:
    """The default sandbox image, pulled (once per run) if missing."""
    name = request.config.getoption("--pinnace-image") or request.config.getini("pinnace_image") or DEFAULT_IMAGE
    return _pinnace_session.image(name)


@pytest.fixture(scope="session")
def _pinnace_pool(request, _pinnace_session, pinnace_image):
    size = request.config.getoption("--pinnace-pool")
    if size is None:
        size = int(request.config.getini("pinnace_pool") or 0)
    if size <= 0:
        yield None
        return
    pool = _Pool(_pinnace_session, pinnace_image, size)
    try:
        yield pool
    finally:
        pool.close()


class _Factory:
    """``make(image=None, command=None, **options) -> Container``; what it
    made (or was handed) is removed at the test's end."""

    def __init__(self, session: _Session, image: str):
        self.session, self.image = session, image
        self.made: list = []

    def __call__(self, image: str | None = None, command=None, **options):
        return self.adopt(self.session.start(image or self.image, command, options))

    def adopt(self, c):
        self.made.append(c)
        return c


@pytest.fixture
def sandbox_factory(_pinnace_session, pinnace_image):
    """``make(image=None, command=None, **options) -> Container``: sandboxes
    for this test, each force-removed at its end."""
    factory = _Factory(_pinnace_session, pinnace_image)
    try:
        yield factory
    finally:
        _remove_all(factory.made)


def _remove_all(containers) -> None:
    """Kill each at once (its pid namespace dies with its first process);
    the removal proper (waiting for its supervisor, the directories, the
    cgroup) runs on the cleanup worker, which the interpreter drains at exit,
    so the next test need not wait for the disk."""
    from pinnace.containers import in_background
    from pinnace.errors import PinnaceError

    for c in containers:
        try:
            c.kill()
        except PinnaceError:
            pass  # already stopped, or removed by the test itself
        in_background(_remove_quietly, c)


def _remove_quietly(c) -> None:
    from pinnace.containers.control import wait_owner
    from pinnace.errors import ContainerNotFound

    # once its supervisor has recorded the end, removing it is only files
    wait_owner(c._store, c.id, timeout=10)
    try:
        c.remove(force=True)
    except ContainerNotFound:
        pass


@pytest.fixture
def sandbox(request, sandbox_factory, _pinnace_pool):
    """A fresh running container for this test; see ``@pytest.mark.sandbox``."""
    marker = request.node.get_closest_marker("sandbox")
    options = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        options.setdefault("image", marker.args[0])
    c = _pinnace_pool.take() if not options and _pinnace_pool is not None else None
    if c is None:
        yield sandbox_factory(**options)
        return
    try:
        yield c
    finally:
        _pinnace_pool.give_back(c)
