"""A detached container's log: what its supervisor wrote, in podman's
k8s-file format, one record per line::

    2026-11-28T06:40:26.123456789Z stdout F hello
    2026-11-28T06:40:26.223456789Z stderr P part of a line whose newline is yet to come

(``F`` ends a line, ``P`` is part of one). ``lines`` reads it back as whole
lines, stdout and stderr kept apart, optionally following it while the
container runs."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from pinnace.errors import UsageError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_since(value: str, now: float | None = None) -> float:
    """docker's --since/--until: an RFC 3339 time, a Unix timestamp, or a
    duration back from now (``10m``, ``1h30m``, ``42s``)."""
    now = time.time() if now is None else now
    v = value.strip()
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+", v):
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(v))
    if re.fullmatch(r"\d+(?:\.\d+)?", v):
        return float(v)
    try:
        return parse_ts(v if ("T" in v or " " in v) else v + "T00:00:00Z")
    except ValueError:
        raise UsageError(f"invalid time {value!r}: expected an RFC 3339 time, a Unix timestamp "
                         "or a duration like 10m") from None


def parse_ts(ts: str) -> float:
    """RFC 3339 with up to nanoseconds (datetime itself stops at microseconds)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", ts)
    if not m:
        raise ValueError(ts)
    zone = (m.group(4) or "Z").replace("Z", "+00:00")
    base = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{zone}")
    return base.timestamp() + (float("0." + m.group(3)) if m.group(3) else 0.0)


class _Assembler:
    """Joins P records into whole lines, per stream."""

    def __init__(self, since: float | None, until: float | None, timestamps: bool):
        self.since, self.until, self.timestamps = since, until, timestamps
        self.buf: dict[str, tuple[str, bytes]] = {}

    def feed(self, line: bytes) -> tuple[str, bytes] | None:
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            return None
        ts, stream = parts[0].decode(), parts[1].decode()
        content = parts[3] if len(parts) == 4 else b""
        first, held = self.buf.pop(stream, (ts, b""))
        if parts[2] != b"F":
            self.buf[stream] = (first, held + content)
            return None
        return self._emit(stream, first, held + content + b"\n")

    def flush(self) -> Iterator[tuple[str, bytes]]:
        for stream, (ts, data) in list(self.buf.items()):
            item = self._emit(stream, ts, data)
            if item:
                yield item
        self.buf.clear()

    def _emit(self, stream: str, ts: str, data: bytes) -> tuple[str, bytes] | None:
        if self.since is not None or self.until is not None:
            t = parse_ts(ts)
            if (self.since is not None and t < self.since) or (self.until is not None and t > self.until):
                return None
        return stream, (ts.encode() + b" " + data if self.timestamps else data)


def lines(path: str, *, tail: int | None = None, since: float | None = None, until: float | None = None,
          timestamps: bool = False, follow_while: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """Whole lines as (stream, bytes) for ``logs``; with ``follow_while``, keep
    yielding new ones while it says the writer may still add some."""
    asm = _Assembler(since, until, timestamps)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        data = f.read()
        complete, _, pending = data.rpartition(b"\n")
        existing = [item for item in map(asm.feed, complete.split(b"\n") if complete else []) if item]
        if follow_while is None:
            if pending:
                item = asm.feed(pending)
                if item:
                    existing.append(item)
            existing += asm.flush()
        if tail is not None:
            existing = existing[-tail:] if tail > 0 else []
        yield from existing
        if follow_while is None:
            return
        from pinnace._watch import DirWatch

        # woken by the writer's appends (and by exit.json appearing beside
        # the log); the timeout only bounds how late a lost owner is noticed
        with DirWatch(os.path.dirname(path) or ".") as watch:
            while True:
                chunk = f.read(65536)
                if chunk:
                    pending += chunk
                    *done, pending = pending.split(b"\n")
                    for line in done:
                        item = asm.feed(line)
                        if item:
                            yield item
                    continue
                if not follow_while():
                    # the writer is done: what it wrote last, then the end
                    pending += f.read()
                    for line in pending.split(b"\n"):
                        item = asm.feed(line) if line else None
                        if item:
                            yield item
                    yield from asm.flush()
                    return
                watch.wait(0.1)
