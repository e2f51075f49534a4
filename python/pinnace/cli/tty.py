"""``-t``: the container gets a pseudo-terminal whose other end this process
relays to its own terminal (raw mode, window size kept in step), as
``docker run -it`` does. ^C typed here reaches the container as a byte on its
terminal, which makes it SIGINT for the container's foreground process."""

from __future__ import annotations

import os
import signal
import sys
import threading


class Terminal:
    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.master, self.slave = os.openpty()
        os.set_inheritable(self.slave, False)
        self._saved = None
        self._threads: list[threading.Thread] = []
        self._old_winch = None

    def _copy_size(self, *_):
        import fcntl
        import termios

        for fd in (0, 1, 2):
            if os.isatty(fd):
                try:
                    size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
                except OSError:
                    pass
                return

    def __enter__(self) -> "Terminal":
        self._copy_size()
        self._old_winch = signal.signal(signal.SIGWINCH, self._copy_size)
        if self.interactive and os.isatty(0):
            import termios
            import tty

            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
        out = threading.Thread(target=self._pump, args=(self.master, 1), daemon=True)
        out.start()
        self._threads.append(out)
        if self.interactive:
            # not joined: a read of our stdin cannot be interrupted portably
            threading.Thread(target=self._pump, args=(0, self.master), daemon=True).start()
        return self

    def started(self) -> None:
        """The container holds its end now; ours would keep the terminal
        open after it exits (no end-of-file for the relay)."""
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def __exit__(self, *exc) -> None:
        self.started()
        for t in self._threads:
            t.join(timeout=5)
        if self._saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
        os.close(self.master)
        sys.stdout.flush()

    @staticmethod
    def _pump(src: int, dst: int) -> None:
        try:
            while True:
                data = os.read(src, 65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(dst, view):]
        except OSError:  # EIO: the container's side of the terminal closed
            return
