"""Pull an image: resolve the reference to one manifest, fetch its config,
then download, verify and unpack its layers in parallel, each at most once.

The registry protocol lives here (Python); decompression, digest checks and
untar are one call into the Rust core per layer, made with the GIL released,
so layers really unpack side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform as _platform
from concurrent.futures import ThreadPoolExecutor

from pinnace.errors import ImageNotFound, LayerError, RegistryError, UsageError
from pinnace.images.reference import parse
from pinnace.images.registry import DOCKER_SCHEMA1, INDEX_TYPES, MANIFEST_TYPES, Client
from pinnace._files import write_atomic
from pinnace.images.store import ImageStore, _hex

LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
PARALLEL = 3  # docker's default max-concurrent-downloads
STREAM = True

_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
         "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def normalize_platform(spec: str | None) -> tuple[str, str, str]:
    """``os/arch[/variant]`` normalised as containerd does; default: this machine."""
    if not spec:
        machine = _platform.machine().lower()
        arch = _ARCH.get(machine, machine)
        variant = "v7" if machine.startswith("armv7") or machine == "armhf" else ""
        return "linux", arch, variant
    parts = spec.lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {spec!r}: expected os/arch[/variant]")
    os_, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else ""
    if arch in ("armhf",):
        arch, variant = "arm", variant or "v7"
    if arch in ("armel",):
        arch, variant = "arm", variant or "v6"
    arch = _ARCH.get(arch, arch)
    if arch == "arm64" and variant == "v8":
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    return os_, arch, variant


def _platform_of(p: dict) -> tuple[str, str, str]:
    os_ = (p.get("os") or "").lower()
    arch = (p.get("architecture") or "").lower()
    arch = _ARCH.get(arch, arch)
    variant = (p.get("variant") or "").lower()
    if arch == "arm64" and variant == "v8":
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    return os_, arch, variant


def _fmt(p: tuple[str, str, str]) -> str:
    return "/".join(x for x in p if x)


def select_manifest(index: dict, want: tuple[str, str, str], what: str) -> dict:
    """The index entry for a platform; attestation entries (unknown/unknown) skipped."""
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    offered = []
    for m in entries:
        p = _platform_of(m.get("platform") or {})
        if p[0] == "unknown" or p[1] == "unknown":
            continue
        offered.append(p)
        if p[:2] == want[:2] and (p[2] == want[2] or (not want[2] and want[1] != "arm")):
            return m
    raise ImageNotFound(f"{what}: no image for platform {_fmt(want)} (offered: "
                        f"{', '.join(sorted({_fmt(p) for p in offered})) or 'none'})")


def _media_type(data: dict, header: str) -> str:
    mt = data.get("mediaType") or header
    if not mt or mt == "application/json":
        mt = "application/vnd.oci.image.index.v1+json" if "manifests" in data else \
            "application/vnd.oci.image.manifest.v1+json"
    return mt


class _Silent:
    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _max_layer_size(store: ImageStore, compressed: int) -> int:
    """Decompression bombs: a layer may grow to 100x its compressed size (at
    least 1 GiB; ``max_layer_size`` in the config file overrides) and never
    past the free space of the store's filesystem."""
    from pinnace.images.registry import settings

    limit = int(settings().get("max_layer_size") or max(1 << 30, 100 * compressed))
    st = os.statvfs(store.layers)
    return max(1, min(limit, st.f_bavail * st.f_frsize - (64 << 20)))


class _Unpacking:
    """The Rust unpacker reading a pipe on its own thread (the GIL released)
    while the download writes into it: a sink for ``download_blob``."""

    def __init__(self, dest: str, kwargs: dict):
        import fcntl
        import threading

        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups
        self.info = None
        self.error: BaseException | None = None
        self.cut = False
        self.thread = threading.Thread(target=self._run, args=(dest, kwargs), daemon=True)
        self.thread.start()

    def _run(self, dest: str, kwargs: dict) -> None:
        from pinnace import _core

        try:
            self.info = _core.unpack_layer(f"/proc/self/fd/{self.r}", dest, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the downloading thread
            self.error = e
        finally:
            os.close(self.r)

    def write(self, data: bytes) -> None:
        if self.w < 0:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.w, view)
                view = view[n:]
        except BrokenPipeError:
            # the unpacker stopped reading: it failed, and says why on join
            self._close()
            self.thread.join()
            raise self.error or LayerError("layer unpacker stopped reading") from None

    def restart(self) -> None:
        self.cut = True
        self._close()

    def _close(self) -> None:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def __enter__(self) -> "_Unpacking":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close()
        self.thread.join()
        if exc_type is None and not self.cut and self.error is not None:
            raise self.error
        if self.cut:
            self.info = None


def _ensure_layer(store: ImageStore, client: Client, repo: str, desc: dict, diff_id: str, progress) -> dict:
    from pinnace import _core

    short = _hex(desc["digest"])[:12]
    final = store.layer_dir(diff_id)
    if os.path.isdir(final):
        progress.layer(short, "Already exists")
        return store.layer_info(diff_id) or {"disk": 0}
    with store.lock(f"layer-{_hex(diff_id)}"):
        if os.path.isdir(final):
            progress.layer(short, "Already exists")
            return store.layer_info(diff_id) or {"disk": 0}
        for n in os.listdir(store.layers):
            if n.startswith(f".tmp-{_hex(diff_id)}-"):
                _core.remove_tree(os.path.join(store.layers, n))
        partial = store.blob_path(desc["digest"]) + ".partial"
        size = desc.get("size")
        tmp = os.path.join(store.layers, f".tmp-{_hex(diff_id)}-{os.getpid()}")
        os.mkdir(tmp, 0o755)
        unpack = dict(expected_diff_id=diff_id, expected_digest=desc["digest"],
                      max_size=_max_layer_size(store, size or 0))
        try:
            progress.layer(short, "Downloading", 0, size)
            # The layer unpacks while it downloads: the blob goes to the
            # .partial file (for a later resume) and down a pipe to the unpacker.
            if STREAM:
                with _Unpacking(tmp, unpack) as pipe:
                    # the unpacker checks the blob's digest over the whole stream
                    client.download_blob(repo, desc["digest"], partial, size, sink=pipe, verify=False,
                                         progress=lambda n: progress.layer(short, "Downloading", n, size))
                    progress.layer(short, "Extracting", None, None)
                info = pipe.info
            else:
                client.download_blob(repo, desc["digest"], partial, size,
                                     progress=lambda n: progress.layer(short, "Downloading", n, size))
                progress.layer(short, "Extracting", None, None)
                info = None
            if info is None:
                # the stream was cut short (the registry resent from the start):
                # unpack the verified file instead
                _core.remove_tree(tmp)
                os.mkdir(tmp, 0o755)
                info = _core.unpack_layer(partial, tmp, **unpack)
        except BaseException as e:
            _core.remove_tree(tmp)
            if isinstance(e, LayerError):
                # the blob matched its digest yet is not a layer we accept:
                # a later attempt would fetch the same bytes
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            raise
        meta = {"DiffID": diff_id, "Digest": desc["digest"], "MediaType": desc.get("mediaType"),
                "CompressedSize": size, "Size": info["disk"], "TarSize": info["size"]}
        write_atomic(final + ".json", json.dumps(meta).encode())
        os.rename(tmp, final)
        os.unlink(partial)
        progress.layer(short, "Pull complete")
        return meta


def pull(ref_str: str, root: str, *, platform: str | None = None, tls_verify: bool | None = None,
         progress=None) -> dict:
    """Pull ``ref_str`` into the store under ``root``; returns the image record."""
    ref = parse(ref_str)
    want = normalize_platform(platform)
    progress = progress or _Silent()
    store = ImageStore(root)
    store.ensure()
    what = str(ref)
    with Client(ref.registry, tls_verify=tls_verify) as client, store.lock("gc", shared=True):
        repo = ref.repository
        if ref.digest is None:
            progress.message(f"{ref.tag}: Pulling from {ref.repository}")
        top = ref.digest or client.head_manifest(repo, ref.tag)
        data = store.read_blob(top) if top else None
        if data is None:
            data, header_type, top = client.get_manifest(repo, ref.digest or ref.tag, what)
        else:
            header_type = ""
        try:
            doc = json.loads(data)
        except ValueError:
            raise RegistryError(f"{what}: manifest is not JSON") from None
        mt = _media_type(doc, header_type)
        index_digest = None
        if mt in INDEX_TYPES:
            index_digest = top
            store.write_blob(top, data)
            entry = select_manifest(doc, want, what)
            manifest_digest = entry["digest"]
            data = store.read_blob(manifest_digest)
            if data is None:
                data, header_type, _ = client.get_manifest(repo, manifest_digest, what)
            doc = json.loads(data)
            mt = _media_type(doc, header_type)
        else:
            manifest_digest = top
        if mt in DOCKER_SCHEMA1:
            raise RegistryError(f"{what}: Docker schema 1 manifests are not supported (deprecated by docker since 2017)")
        if mt not in MANIFEST_TYPES:
            raise RegistryError(f"{what}: not a container image (manifest media type {mt})")
        cfg_desc = doc.get("config") or {}
        if cfg_desc.get("mediaType") and cfg_desc["mediaType"] not in CONFIG_TYPES:
            raise RegistryError(f"{what}: not a container image (config media type {cfg_desc['mediaType']})")
        image_id = cfg_desc["digest"]
        existing = store.record(image_id)
        if existing and all(store.has_layer(d) for d in existing["RootFS"]["Layers"]):
            store.write_blob(manifest_digest, data)
            store.add_image({**existing, "ManifestDigest": manifest_digest, "IndexDigest": index_digest},
                            ref.tagged, f"{ref.name}@{top}")
            progress.message(f"Digest: {top}")
            progress.message(f"Status: Image is up to date for {ref.familiar}")
            return store.record(image_id)
        cfg_bytes = store.read_blob(image_id) or client.get_blob_bytes(repo, image_id, what)
        config = json.loads(cfg_bytes)
        if index_digest is None and platform:
            got = _platform_of(config)
            if got[:2] != want[:2]:
                raise ImageNotFound(f"{what}: image is for platform {_fmt(got)}, not {_fmt(want)}")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        layers = doc.get("layers") or []
        if len(diff_ids) != len(layers):
            raise RegistryError(f"{what}: manifest lists {len(layers)} layers, its config {len(diff_ids)}")
        for desc in layers:
            if desc.get("mediaType") and desc["mediaType"] not in LAYER_TYPES:
                raise RegistryError(f"{what}: unsupported layer media type {desc['mediaType']}")
            progress.layer(_hex(desc["digest"])[:12], "Pulling fs layer", None, desc.get("size"))
        if layers:
            with ThreadPoolExecutor(max_workers=min(PARALLEL, len(layers))) as pool:
                futures = [pool.submit(_ensure_layer, store, client, repo, desc, diff, progress)
                           for desc, diff in zip(layers, diff_ids)]
                metas = [f.result() for f in futures]
        else:
            metas = []
        store.write_blob(image_id, cfg_bytes)
        store.write_blob(manifest_digest, data)
        sizes = {}
        for diff, meta in zip(diff_ids, metas):
            sizes[diff] = meta.get("Size", 0)
        record = {
            "Id": image_id,
            "Repository": ref.name,
            "ManifestDigest": manifest_digest,
            "IndexDigest": index_digest,
            "Created": config.get("created", ""),
            "Architecture": config.get("architecture", ""),
            "Os": config.get("os", ""),
            "Variant": config.get("variant", ""),
            "Author": config.get("author", ""),
            "Config": config.get("config") or {},
            "RootFS": {"Type": "layers", "Layers": diff_ids},
            "Size": sum(sizes.values()),
        }
        store.add_image(record, ref.tagged, f"{ref.name}@{top}")
        progress.message(f"Digest: {top}")
        progress.message(f"Status: Downloaded newer image for {ref.familiar}")
        return record


def canonical(ref_str: str) -> str:
    return str(parse(ref_str))
