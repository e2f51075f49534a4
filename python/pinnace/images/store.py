"""The image store: blobs by digest, layers unpacked once, image records.

Layout under ``<root>/images`` (see docs/IMAGES.md)::

    blobs/sha256/<hex>         verified manifests, indexes, configs
    blobs/sha256/<hex>.partial a layer blob while it downloads (resumable)
    layers/<diff_id hex>/      one unpacked layer: an overlay lowerdir
    layers/<diff_id hex>.json  its sizes and where it came from
    layers/.tmp-<hex>-<pid>    a layer being unpacked (renamed when verified)
    records/<image id hex>.json
    repositories.json          {"Tags": {ref: id}, "Digests": {ref: id}}
    locks/                     flock files

Everything appears under its final name by rename, after it was verified, so
a reader never sees half of anything. Who may change what:

- ``layer-<hex>.lock`` (exclusive): the one process making that layer.
- ``gc.lock``: shared by every pull for its whole length, exclusive for the
  removal of layers (rmi, prune), so a layer another pull has just found or
  made cannot vanish before that pull's record names it.
- ``refs.lock``: around each read-modify-write of repositories.json and records.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os

from pinnace._files import write_atomic
from pinnace._jsonenc import loads
from pinnace.errors import Conflict


def _json_dumps(obj, indent: int | None = 1) -> bytes:
    import json

    return json.dumps(obj, indent=indent, sort_keys=True).encode()


def parse(name: str):
    from pinnace.images.reference import parse as full

    return full(name)


def _quick_tag_key(name: str) -> str | None:
    """The tag key docker's rules give a plain ``name[:tag]``, without the
    validating parser (whose regexes cost ``pinnace run`` milliseconds);
    anything unusual returns None and takes the full path."""
    if not name or "@" in name or name != name.strip():
        return None
    slash, colon = name.rfind("/"), name.rfind(":")
    repo, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "latest")
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if first in ("index.docker.io", "registry-1.docker.io"):
            return None
        return f"{repo}:{tag}"
    return f"docker.io/{repo if sep else 'library/' + repo}:{tag}"


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


class ImageStore:
    def __init__(self, root: str):
        self.root = root
        self.dir = os.path.join(root, "images")
        self.blobs = os.path.join(self.dir, "blobs", "sha256")
        self.layers = os.path.join(self.dir, "layers")
        self.records = os.path.join(self.dir, "records")
        self.locks = os.path.join(self.dir, "locks")
        self.refs_file = os.path.join(self.dir, "repositories.json")

    def ensure(self) -> None:
        for d in (self.blobs, self.layers, self.records, self.locks):
            os.makedirs(d, mode=0o700 if d == self.locks else 0o755, exist_ok=True)

    # -- locks ----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, shared: bool = False, blocking: bool = True):
        """An flock on ``locks/<name>.lock``; yields False when not blocking and busy."""
        path = os.path.join(self.locks, name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # a store no pull has used yet
            self.ensure()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- blobs ----------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, _hex(digest))

    def read_blob(self, digest: str) -> bytes | None:
        try:
            with open(self.blob_path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_blob(self, digest: str, data: bytes) -> None:
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        write_atomic(self.blob_path(digest), data)

    # -- layers ---------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers, _hex(diff_id))

    def layer_info(self, diff_id: str) -> dict | None:
        try:
            with open(self.layer_dir(diff_id) + ".json", "rb") as f:
                return loads(f.read())
        except FileNotFoundError:
            return None

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    # -- records and references -------------------------------------------------

    def refs(self) -> dict:
        try:
            with open(self.refs_file, "rb") as f:
                data = loads(f.read())
        except FileNotFoundError:
            data = {}
        data.setdefault("Tags", {})
        data.setdefault("Digests", {})
        return data

    def _write_refs(self, refs: dict) -> None:
        write_atomic(self.refs_file, _json_dumps(refs))

    def record(self, image_id: str) -> dict | None:
        try:
            with open(os.path.join(self.records, _hex(image_id) + ".json"), "rb") as f:
                return loads(f.read())
        except (FileNotFoundError, IndexError):
            return None

    def records_all(self) -> list[dict]:
        out = []
        try:
            names = os.listdir(self.records)
        except FileNotFoundError:
            return out
        for n in sorted(names):
            if n.endswith(".json"):
                rec = self.record("sha256:" + n[:-5])
                if rec:
                    out.append(rec)
        return out

    def add_image(self, record: dict, tag: str | None, digest_ref: str | None) -> None:
        """Write the record and point the references at it (moving a tag off
        the image it named before, which then is dangling if nothing else names it)."""
        with self.lock("refs"):
            write_atomic(os.path.join(self.records, _hex(record["Id"]) + ".json"),
                         _json_dumps(record))
            refs = self.refs()
            if tag:
                refs["Tags"][tag] = record["Id"]
            if digest_ref:
                refs["Digests"][digest_ref] = record["Id"]
            self._write_refs(refs)

    def names_of(self, image_id: str, refs: dict | None = None) -> tuple[list[str], list[str]]:
        refs = refs or self.refs()
        tags = sorted(r for r, i in refs["Tags"].items() if i == image_id)
        digests = sorted(r for r, i in refs["Digests"].items() if i == image_id)
        return tags, digests

    def lookup(self, name: str) -> dict | None:
        """An image by reference (tag or digest), full id, or unique id prefix."""
        refs = self.refs()
        quick = _quick_tag_key(name)
        if quick and quick in refs["Tags"]:
            return self.record(refs["Tags"][quick])
        hexpart = name.removeprefix("sha256:")
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            matches = {i for i in [*refs["Tags"].values(), *refs["Digests"].values(),
                                   *("sha256:" + n[:-5] for n in _listdir(self.records) if n.endswith(".json"))]
                       if _hex(i).startswith(hexpart)}
            if len(matches) == 1:
                return self.record(matches.pop())
            if len(matches) > 1:
                raise Conflict(f"image id prefix {name} is ambiguous: {len(matches)} images match")
        try:
            ref = parse(name)
        except Exception:
            return None
        image_id = None
        if ref.digest:
            image_id = refs["Digests"].get(ref.digested)
            if image_id is None:
                # a digest pin of an image pulled by tag through an index
                for rec in self.records_all():
                    if rec.get("ManifestDigest") == ref.digest or rec.get("IndexDigest") == ref.digest:
                        if rec["Repository"] == ref.name:
                            image_id = rec["Id"]
                            break
        elif ref.tagged:
            image_id = refs["Tags"].get(ref.tagged)
        return self.record(image_id) if image_id else None

    # -- removal ----------------------------------------------------------------

    def untag(self, name: str) -> tuple[str | None, list[str]]:
        """Drop one tag or digest reference; (image id, [removed refs])."""
        with self.lock("refs"):
            refs = self.refs()
            ref = parse(name)
            removed, image_id = [], None
            for kind, key in (("Tags", ref.tagged), ("Digests", ref.digested)):
                if key and key in refs[kind]:
                    image_id = refs[kind].pop(key)
                    removed.append(key)
            if removed:
                self._write_refs(refs)
            return image_id, removed

    def delete_image(self, image_id: str, in_use_layers: set[str]) -> list[str]:
        """Remove an image's record, its references and the layers no other
        image or container uses. Returns the deleted layer diff_ids."""
        with self.lock("refs"):
            refs = self.refs()
            for kind in ("Tags", "Digests"):
                for k in [k for k, v in refs[kind].items() if v == image_id]:
                    del refs[kind][k]
            self._write_refs(refs)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.records, _hex(image_id) + ".json"))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.blob_path(image_id))
        return self.collect_layers(in_use_layers)

    def collect_layers(self, in_use_layers: set[str]) -> list[str]:
        """Remove layers no image record and no container names (waits for pulls)."""
        from pinnace import _core

        removed = []
        with self.lock("gc"):
            keep = set(in_use_layers)
            for rec in self.records_all():
                keep.update(_hex(d) for d in rec["RootFS"]["Layers"])
            for n in _listdir(self.layers):
                if n.startswith(".tmp-"):
                    _core.remove_tree(os.path.join(self.layers, n))
                elif not n.endswith(".json") and n not in keep:
                    with self.lock(f"layer-{n}", blocking=False) as got:
                        if got:
                            _core.remove_tree(os.path.join(self.layers, n))
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(os.path.join(self.layers, n + ".json"))
                            removed.append("sha256:" + n)
            # with gc held exclusively no pull runs, so no one holds or is
            # about to open a layer lock: their files can go
            for n in _listdir(self.locks):
                if n.startswith("layer-") and not os.path.isdir(os.path.join(self.layers, n[6:-5])):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.locks, n))
            # manifests and indexes no record names any more
            keep_blobs = set()
            for rec in self.records_all():
                keep_blobs.update(_hex(d) for d in (rec["Id"], rec.get("ManifestDigest"), rec.get("IndexDigest")) if d)
            for n in _listdir(self.blobs):
                if n.endswith(".partial") or ".tmp-" in n:
                    # no pull runs (we hold gc exclusively): an interrupted
                    # download nobody resumed
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.blobs, n))
                    continue
                if n not in keep_blobs:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.blobs, n))
        return removed

    # -- consistency ------------------------------------------------------------

    def check(self, leftovers: bool = True) -> list[str]:
        """Problems in the store; an empty list means it is consistent. With
        ``leftovers``, what an interrupted pull left (a resumable ``.partial``
        download, a ``.tmp-`` layer: never visible as a blob or a layer, and
        cleared by the next pull of it or by prune) counts as a problem too."""
        problems = []
        for n in _listdir(self.blobs):
            path = os.path.join(self.blobs, n)
            if n.endswith(".partial") or ".tmp-" in n:
                if leftovers:
                    problems.append(f"unfinished blob left behind: {path}")
                continue
            with open(path, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            if got != n:
                problems.append(f"blob {n} holds content hashing to {got}")
        for n in _listdir(self.layers):
            path = os.path.join(self.layers, n)
            if n.startswith(".tmp-"):
                if leftovers:
                    problems.append(f"unfinished layer left behind: {path}")
            elif n.endswith(".json"):
                if not os.path.isdir(path[:-5]):
                    problems.append(f"layer metadata without its layer: {path}")
            elif not os.path.isfile(path + ".json"):
                problems.append(f"layer without metadata: {path}")
        records = {r["Id"]: r for r in self.records_all()}
        for image_id, rec in records.items():
            if self.read_blob(image_id) is None:
                problems.append(f"image {image_id}: config blob missing")
            for d in rec["RootFS"]["Layers"]:
                if not self.has_layer(d):
                    problems.append(f"image {image_id}: layer {d} missing")
        refs = self.refs()
        for kind in ("Tags", "Digests"):
            for k, v in refs[kind].items():
                if v not in records:
                    problems.append(f"reference {k} names missing image {v}")
        return problems


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def check(root: str, leftovers: bool = True) -> list[str]:
    """Problems found in the image store under ``root`` (empty: consistent)."""
    return ImageStore(root).check(leftovers)
