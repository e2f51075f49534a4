"""Pull progress: a live per-layer display on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading
from typing import TextIO


class PlainProgress:
    """One line per layer status change (byte counts are left out: logs stay short)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            if self._last.get(layer_id) != status:
                self._last[layer_id] = status
                self.stream.write(f"{layer_id}: {status}\n")
                self.stream.flush()

    def message(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


class LiveProgress:
    """rich's live display: one row per layer with a bar while it downloads."""

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.fields[layer]}"), TextColumn("{task.fields[status]:<16}"), BarColumn(),
            DownloadColumn(), TransferSpeedColumn(), console=self.console, transient=False,
        )
        self.tasks: dict[str, int] = {}
        self._lock = threading.Lock()
        self.progress.start()

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            task = self.tasks.get(layer_id)
            if task is None:
                task = self.tasks[layer_id] = self.progress.add_task("", layer=layer_id, status=status, total=total)
        fields = {"status": status}
        if total is not None:
            fields["total"] = total
        if current is not None:
            fields["completed"] = current
        if status in ("Pull complete", "Already exists"):
            t = self.progress.tasks[task].total
            if t:
                fields["completed"] = t
        self.progress.update(task, **fields)

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def for_stream(stream: TextIO, quiet: bool = False):
    if quiet:
        from pinnace.images.pull import _Silent

        return _Silent()
    if stream.isatty():
        return LiveProgress(stream)
    return PlainProgress(stream)
