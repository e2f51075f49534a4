"""Wake up when something in a directory changes (inotify), so that following
a log or waiting for a container's end reacts at once instead of polling.

inotify through ctypes (the standard library has no binding); where it is
unavailable the wait falls back to short sleeps that start at 5 ms and back
off to the timeout given.
"""

from __future__ import annotations

import os
import select
import time

# IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
_MASK = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400

_libc = None


def _inotify_fd(path: str) -> int:
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return -1
    if fd < 0:
        return -1
    if _libc.inotify_add_watch(fd, os.fsencode(path), _MASK) < 0:
        os.close(fd)
        return -1
    return fd


class DirWatch:
    """``wait(timeout)`` returns as soon as an entry of ``path`` is created,
    written, renamed in or removed, or after ``timeout`` seconds."""

    def __init__(self, path: str):
        self.fd = _inotify_fd(path)
        self._poll = None
        if self.fd >= 0:
            self._poll = select.poll()
            self._poll.register(self.fd, select.POLLIN)
        self._backoff = 0.005

    def wait(self, timeout: float) -> None:
        if self._poll is None:
            time.sleep(max(0.0, min(timeout, self._backoff)))
            self._backoff = min(self._backoff * 2, 0.1)
            return
        if self._poll.poll(max(0, int(timeout * 1000))):
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._poll = None

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
