"""Helpers for the image tests: the store as the CLI shows it, and what a
finished or failed pull may leave on disk."""

from __future__ import annotations

import json
import os
import re

from conftest import pn


def root_of(store) -> str:
    return store["root"]


def images_json(*glob: str) -> list[dict]:
    """``pinnace [glob flags] images --format json``."""
    r = pn(*glob, "images", "--format", "json", check=True)
    return json.loads(r.out)


def entry(ref: str, *glob: str) -> dict | None:
    """The ``images --format json`` entry tagged ``ref`` (or holding it as a digest)."""
    for e in images_json(*glob):
        if ref in e.get("RepoTags", []) or ref in e.get("RepoDigests", []):
            return e
    return None


def by_id(image_id: str, *glob: str) -> dict | None:
    return next((e for e in images_json(*glob) if e["Id"] == image_id), None)


def inspect(ref: str, *glob: str) -> dict:
    r = pn(*glob, "image", "inspect", ref, check=True)
    out = json.loads(r.out)
    assert isinstance(out, list) and len(out) == 1, r.out
    return out[0]


def pull(ref: str, *args: str, timeout: float = 180):
    """``pinnace pull``, asserting success; returns the result."""
    r = pn("pull", *args, ref, timeout=timeout)
    assert r.returncode == 0, f"pinnace pull {ref} exited {r.returncode}: {r.err}"
    assert "Traceback" not in r.err
    return r


def last_line(r) -> str:
    lines = r.out.strip().splitlines()
    return lines[-1] if lines else ""


def one_error(r, code: int = 125, after_progress: bool = False) -> str:
    """A failure as the contract says: exit ``code``, one ``Error:`` line on
    stderr (``after_progress``: the last line, after ``run``'s pull progress)."""
    assert "Traceback" not in r.err, r.err
    assert r.returncode == code, (r.returncode, r.err)
    lines = r.err.strip().splitlines()
    if after_progress:
        assert lines and [x for x in lines if x.startswith("Error")] == lines[-1:], r.err
    else:
        assert len(lines) == 1, r.err
    assert lines[-1].startswith("Error: "), r.err
    return lines[-1]


def no_repeated_digest(line: str) -> None:
    """An error names each digest once (no "layer X: layer X: ..." stutter)."""
    digests = re.findall(r"sha256:[0-9a-f]{64}", line)
    assert len(digests) == len(set(digests)), f"the same digest twice: {line}"


def layer_names(root: str) -> set[str]:
    """Unpacked layer directories (by diff_id hex)."""
    d = os.path.join(root, "images", "layers")
    if not os.path.isdir(d):
        return set()
    return {n for n in os.listdir(d) if not n.startswith(".") and os.path.isdir(os.path.join(d, n))}


def hexes(digests) -> set[str]:
    return {d.split(":", 1)[1] for d in digests}


def half_done(root: str) -> list[str]:
    """Temporary layer directories and partial blobs (fine while a pull runs, never after)."""
    out = []
    d = os.path.join(root, "images", "layers")
    if os.path.isdir(d):
        out += [f"layers/{n}" for n in os.listdir(d) if n.startswith(".tmp")]
    d = os.path.join(root, "images", "blobs", "sha256")
    if os.path.isdir(d):
        out += [f"blobs/{n}" for n in os.listdir(d) if n.endswith(".partial") or n.startswith(".")]
    return out


def blob_stored(root: str, digest: str) -> bool:
    """A finished blob (or its partial download) for ``digest`` in the store."""
    d = os.path.join(root, "images", "blobs", "sha256")
    h = digest.split(":", 1)[1]
    return os.path.isdir(d) and any(n == h or n.startswith(h + ".") for n in os.listdir(d))


def problems(root: str) -> list[str]:
    from pinnace.images.store import check

    return check(root)


def du(path: str) -> int:
    """Bytes allocated under ``path``, hardlinks counted once."""
    seen, total = set(), 0
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
