"""A real registry and images built by tools other than pinnace, for the puller's tests.

* :class:`Registry` runs Debian's ``docker-registry`` (CNCF distribution) on
  127.0.0.1 (or inside a network namespace) with its storage in a temp dir.
* :class:`Layout` writes OCI image layouts by hand (tars made with
  :mod:`tarfile`, gzip/zstd by the ``gzip`` module and the ``zstd`` program);
  ``umoci`` builds the busybox base; ``skopeo`` pushes, converting to Docker
  schema2 or recompressing on the way, so what pinnace pulls was written by
  independent code.
* :class:`Images` builds each named image once per session, lazily.
* :class:`Proxy` is a small threaded HTTP server in front of the registry that
  can demand bearer or basic auth, answer 429 once, redirect blobs to an
  "object store" on 127.0.0.2 that refuses ``Authorization``, serve or break a
  blob slowly, hold a blob until released, and logs every request.

Fixtures (imported by conftest): ``registry``, ``images``, ``proxy``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import random
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import pytest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr or r.stdout}")
    return r


def need(*programs: str) -> None:
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: .ci/run installs docker-registry, umoci, skopeo, zstd")


# --------------------------------------------------------------------------- tars


def F(name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
      mtime: int = 1_600_000_000) -> tuple[tarfile.TarInfo, bytes]:
    """A regular file entry."""
    data = data.encode() if isinstance(data, str) else data
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, uid, gid, mtime
    return ti, data


def D(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, mode, uid, gid, mtime
    return ti, b""


def S(name: str, target: str):
    """A symlink entry."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, target, 0o777, 1_600_000_000
    return ti, b""


def H(name: str, target: str):
    """A hardlink entry (target is a path in the archive, or a hostile one)."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.LNKTYPE, target, 0o644, 1_600_000_000
    return ti, b""


def make_tar(entries) -> bytes:
    """Entries written exactly as given: no name cleaning, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def gzip_bytes(data: bytes, members: int = 1) -> bytes:
    """gzip, optionally as several concatenated members (split at arbitrary bytes)."""
    if members == 1:
        return gzip.compress(data, mtime=0)
    step = len(data) // members + 1
    return b"".join(gzip.compress(data[i:i + step], mtime=0) for i in range(0, len(data), step))


def zstd_bytes(data: bytes, frames: int = 1) -> bytes:
    step = len(data) // frames + 1
    out = b""
    for i in range(0, len(data), step):
        out += subprocess.run(["zstd", "-q", "-c", "-3"], input=data[i:i + step], capture_output=True,
                              check=True).stdout
    return out


def random_bytes(n: int, seed: str) -> bytes:
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- OCI layouts


class Layout:
    """An OCI image layout directory, written by hand (umoci may write to it too)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        if not os.path.exists(os.path.join(path, "oci-layout")):
            with open(os.path.join(path, "oci-layout"), "w") as f:
                json.dump({"imageLayoutVersion": "1.0.0"}, f)
            self._write_index({"schemaVersion": 2, "manifests": []})

    def _index(self) -> dict:
        with open(os.path.join(self.path, "index.json")) as f:
            return json.load(f)

    def _write_index(self, index: dict) -> None:
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(index, f)

    def put(self, data: bytes, media_type: str, **extra) -> dict:
        d = sha256(data)
        p = os.path.join(self.path, "blobs", "sha256", d.split(":")[1])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": d, "size": len(data), **extra}

    def put_json(self, obj: dict, media_type: str, **extra) -> dict:
        return self.put(json.dumps(obj, indent=1).encode(), media_type, **extra)

    def get(self, digest: str) -> bytes:
        with open(os.path.join(self.path, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            return f.read()

    def get_json(self, digest: str) -> dict:
        return json.loads(self.get(digest))

    def tag(self, tag: str, desc: dict) -> None:
        index = self._index()
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        index["manifests"].append({**desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        self._write_index(index)

    def resolve(self, tag: str) -> dict:
        for m in self._index()["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m
        raise KeyError(tag)

    def image(self, tag: str) -> tuple[dict, dict]:
        """(manifest, config) of a tagged single-platform image."""
        manifest = self.get_json(self.resolve(tag)["digest"])
        return manifest, self.get_json(manifest["config"]["digest"])

    def layer(self, tar: bytes, compression: str = "gzip", parts: int = 1) -> tuple[dict, str]:
        """Store a layer blob; returns (descriptor, diff_id)."""
        blob = {"gzip": lambda: gzip_bytes(tar, parts), "zstd": lambda: zstd_bytes(tar, parts),
                "none": lambda: tar}[compression]()
        return self.put(blob, LAYER_TYPES[compression]), sha256(tar)

    def write_image(self, tag: str, layers: list[tuple[dict, str]], base: str | None = None,
                    config: dict | None = None, arch: str = HOST_ARCH, variant: str | None = None) -> dict:
        """An image made of ``base``'s layers (if any) plus ``layers``, tagged in this layout."""
        descs, diff_ids, cfg, history = [], [], {"Env": [PATH_ENV]}, []
        if base:
            bm, bc = self.image(base)
            descs, diff_ids, cfg = list(bm["layers"]), list(bc["rootfs"]["diff_ids"]), dict(bc.get("config", {}))
            history = list(bc.get("history", []))
        cfg.update(config or {})
        for desc, diff_id in layers:
            descs.append(desc)
            diff_ids.append(diff_id)
            history.append({"created": "2024-01-01T00:00:00Z", "created_by": f"pinnace tests: {tag}"})
        image_config = {"created": "2024-01-01T00:00:00Z", "architecture": arch, "os": "linux",
                        "config": cfg, "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
        if variant:
            image_config["variant"] = variant
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": self.put_json(image_config, OCI_CONFIG), "layers": descs}
        desc = self.put_json(manifest, OCI_MANIFEST)
        self.tag(tag, desc)
        return desc


# --------------------------------------------------------------------------- registry


class Registry:
    """``docker-registry serve`` on ``host``, optionally inside network namespace ``netns``."""

    def __init__(self, workdir: str, host: str = "127.0.0.1", port: int | None = None, netns: str | None = None):
        need("docker-registry")
        self.workdir, self.netns = workdir, netns
        self.storage = os.path.join(workdir, "storage")
        self.host_ip, self.port = host, port or free_port(host)
        self.host = f"{host}:{self.port}"
        cfg = os.path.join(workdir, "config.yml")
        os.makedirs(self.storage, exist_ok=True)
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {self.host}
  secret: pinnace-tests
""")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.log = open(os.path.join(workdir, "registry.log"), "wb")
        self.proc = subprocess.Popen([*prefix, "docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(workdir, "registry.log")) as f:
                    raise AssertionError(f"docker-registry did not start: {f.read()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if self.netns:
            return subprocess.run(["ip", "netns", "exec", self.netns, "curl", "-sf", "-o", "/dev/null",
                                   f"http://{self.host}/v2/"], capture_output=True).returncode == 0
        try:
            return self.request("GET", "/v2/")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def request(self, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        c = http.client.HTTPConnection(self.host_ip, self.port, timeout=30)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def manifest(self, repo: str, ref: str) -> tuple[str, dict, str]:
        """(digest, manifest, media type) as the registry serves it."""
        status, headers, body = self.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": ACCEPT})
        assert status == 200, (repo, ref, status, body)
        return sha256(body), json.loads(body), headers.get("content-type", "")

    def blob(self, repo: str, digest: str) -> bytes:
        status, _, body = self.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert status == 200, (repo, digest, status)
        return body

    def blob_path(self, digest: str) -> str:
        """The file holding a blob in the registry's filesystem storage."""
        h = digest.split(":")[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")

    def upload(self, layout: Layout, tag: str, repo: str, dest_tag: str = "latest") -> None:
        """Push a single-platform image by hand, blobs exactly as in the layout
        (skopeo compresses uncompressed layers on the way to a registry)."""
        desc = layout.resolve(tag)
        manifest = layout.get_json(desc["digest"])
        for blob in [manifest["config"], *manifest["layers"]]:
            status, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
            assert status == 202, status
            loc = urllib.parse.urlsplit(headers["location"])
            q = loc.query + ("&" if loc.query else "") + urllib.parse.urlencode({"digest": blob["digest"]})
            c = http.client.HTTPConnection(self.host_ip, self.port, timeout=60)
            c.request("PUT", f"{loc.path}?{q}", body=layout.get(blob["digest"]),
                      headers={"Content-Type": "application/octet-stream"})
            assert c.getresponse().status == 201
            c.close()
        c = http.client.HTTPConnection(self.host_ip, self.port, timeout=60)
        c.request("PUT", f"/v2/{repo}/manifests/{dest_tag}", body=layout.get(desc["digest"]),
                  headers={"Content-Type": desc["mediaType"]})
        r = c.getresponse()
        assert r.status == 201, (r.status, r.read())
        c.close()

    def push(self, layout: Layout, tag: str, repo: str, dest_tag: str = "latest", *args: str) -> None:
        """skopeo copy from the layout; ``args``: --format, --dest-compress-format, --all..."""
        need("skopeo")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        run(*prefix, "skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", *args,
            f"oci:{layout.path}:{tag}", f"docker://{self.host}/{repo}:{dest_tag}")


# --------------------------------------------------------------------------- images


@dataclass
class Pushed:
    """An image as pushed: ``ref`` (host/repo:tag), ``digest`` of its top manifest
    (an index for multi-arch), ``config`` digest = the image id (single-platform),
    ``diff_ids``, ``manifest`` (parsed, as served), its ``media_type`` and free-form ``info``."""

    ref: str
    repo: str
    tag: str
    digest: str
    manifest: dict
    media_type: str
    config: str = ""
    diff_ids: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.config

    @property
    def name(self) -> str:
        return self.ref.rsplit(":", 1)[0]


class Images:
    """Builds and pushes named images on first use; each once per session."""

    def __init__(self, registry: Registry, workdir: str):
        self.registry, self.workdir = registry, workdir
        self.layout = Layout(os.path.join(workdir, "layout"))
        self.cache: dict[str, Pushed] = {}
        self.lock = threading.RLock()

    def __getitem__(self, name: str) -> Pushed:
        with self.lock:
            if name not in self.cache:
                builder = "sizes" if name.startswith("sizes") else name.replace("-", "_")
                getattr(self, "_build_" + builder)()
            return self.cache[name]

    def record(self, name: str, repo: str, tag: str = "latest", registry: Registry | None = None, **info) -> Pushed:
        reg = registry or self.registry
        digest, manifest, media_type = reg.manifest(repo, tag)
        p = Pushed(ref=f"{reg.host}/{repo}:{tag}", repo=repo, tag=tag, digest=digest, manifest=manifest,
                   media_type=media_type, info=info)
        if "config" in manifest:
            p.config = manifest["config"]["digest"]
            p.diff_ids = json.loads(reg.blob(repo, p.config))["rootfs"]["diff_ids"]
        self.cache[name] = p
        return p

    # -- the busybox base, by umoci --------------------------------------------

    def _umoci_base(self) -> str:
        """Tag ``busybox`` in the layout: Debian's static busybox with its applet
        links, /etc/passwd with root and app (1000), made by umoci."""
        try:
            self.layout.resolve("busybox")
            return "busybox"
        except KeyError:
            pass
        need("umoci", "busybox")
        img = f"{self.layout.path}:busybox"
        run("umoci", "new", "--image", img)
        bundle = os.path.join(self.workdir, "bundle-busybox")
        run("umoci", "unpack", "--image", img, bundle)
        rootfs = os.path.join(bundle, "rootfs")
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "tmp", "home/app",
                  "usr/local/bin"):
            os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
        os.chown(os.path.join(rootfs, "home/app"), 1000, 1000)
        shutil.copy(shutil.which("busybox"), os.path.join(rootfs, "bin", "busybox"))
        # busybox --install -s, run inside the rootfs so the links say /bin/busybox
        run("chroot", rootfs, "/bin/busybox", "--install", "-s")
        with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
        with open(os.path.join(rootfs, "etc", "group"), "w") as f:
            f.write("root:x:0:\napp:x:1000:\n")
        run("umoci", "repack", "--image", img, bundle)
        run("umoci", "config", "--image", img, "--config.cmd", "sh", "--config.env", PATH_ENV,
            "--architecture", HOST_ARCH, "--os", "linux")
        shutil.rmtree(bundle)
        return "busybox"

    def _build_busybox(self):
        """``busybox:latest``, Docker schema2, gzip layer."""
        self.registry.push(self.layout, self._umoci_base(), "busybox", "latest", "--format", "v2s2")
        p = self.record("busybox", "busybox")
        assert p.media_type == DOCKER_MANIFEST, p.media_type

    def _build_busybox_oci(self):
        """``busybox-oci:latest``: the same image as an OCI manifest."""
        self.registry.push(self.layout, self._umoci_base(), "busybox-oci", "latest", "--format", "oci")
        p = self.record("busybox-oci", "busybox-oci")
        assert p.media_type == OCI_MANIFEST, p.media_type

    def _build_autopull(self):
        """``autopull:latest``: busybox under another name, only ever pulled by ``run``."""
        self.registry.push(self.layout, self._umoci_base(), "autopull", "latest", "--format", "v2s2")
        self.record("autopull", "autopull")

    # -- whiteouts (umoci) and opaque directories (by hand) ----------------------

    def _build_layered(self):
        """busybox, + /data and /gone (umoci), + deletions recorded by umoci repack
        as whiteouts, + a hand-written layer with ``.wh..wh..opq`` and ``.wh.b``."""
        base = self._umoci_base()
        img1, img2 = f"{self.layout.path}:layered1", f"{self.layout.path}:layered2"
        run("umoci", "config", "--image", f"{self.layout.path}:{base}", "--tag", "layered1", "--no-history")
        bundle = os.path.join(self.workdir, "bundle-layered")
        run("umoci", "unpack", "--image", img1, bundle)
        r = os.path.join(bundle, "rootfs")
        files = {"data/a": "a", "data/b": "b", "data/c": "c", "data/dir/x": "x", "data/dir/y": "y",
                 "data/opq/old1": "old1", "data/opq/sub/deep": "deep", "data/keep/k": "k",
                 "gone/p": "p", "gone/q": "q"}
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(r, name)), exist_ok=True)
            with open(os.path.join(r, name), "w") as f:
                f.write(text + "\n")
        run("umoci", "repack", "--image", img1, bundle)
        shutil.rmtree(bundle)
        run("umoci", "config", "--image", img1, "--tag", "layered2", "--no-history")
        run("umoci", "unpack", "--image", img2, bundle)
        os.unlink(os.path.join(r, "data/a"))
        shutil.rmtree(os.path.join(r, "gone"))
        shutil.rmtree(os.path.join(r, "data/dir"))
        os.mkdir(os.path.join(r, "data/dir"))
        with open(os.path.join(r, "data/dir/z"), "w") as f:
            f.write("z\n")
        run("umoci", "repack", "--image", img2, bundle)
        shutil.rmtree(bundle)
        m, _ = self.layout.image("layered2")
        umoci_top = gzip.decompress(self.layout.get(m["layers"][-1]["digest"]))
        with tarfile.open(fileobj=io.BytesIO(umoci_top)) as tf:
            umoci_names = tf.getnames()
        assert any(".wh.a" in n for n in umoci_names), umoci_names  # umoci wrote whiteouts
        hand = make_tar([
            D("data/"), D("data/opq/", mode=0o750), F("data/opq/.wh..wh..opq"), F("data/opq/new", "new\n"),
            F("data/.wh.b"), D("gone/"), F("gone/p", "p is back\n"),
        ])
        self.layout.write_image("layered", [self.layout.layer(hand)], base="layered2")
        self.registry.push(self.layout, "layered", "layered", "latest", "--format", "v2s2")
        self.record("layered", "layered", umoci_whiteouts=[n for n in umoci_names if ".wh." in n])

    # -- ownership, modes, links -------------------------------------------------

    def _build_attrs(self):
        top = make_tar([
            D("attrs/"), F("attrs/owned", "owned\n", mode=0o640, uid=1000, gid=1000, mtime=1234567890),
            F("attrs/hl1", "linked\n"), H("attrs/hl2", "attrs/hl1"), S("attrs/abs", "/etc/passwd"),
            F("attrs/suid", "#!/bin/sh\n", mode=0o4755), D("attrs/private", mode=0o700, uid=1000, gid=1000),
        ])
        self.layout.write_image("attrs", [self.layout.layer(top)], base=self._umoci_base())
        self.registry.push(self.layout, "attrs", "attrs", "latest", "--format", "oci")
        self.record("attrs", "attrs")

    # -- image config ------------------------------------------------------------

    def _build_config(self):
        """Entrypoint /usr/local/bin/show (prints its args, env, pwd, uid), Cmd,
        Env, WorkingDir, User app, Labels, ExposedPorts, set by umoci config."""
        show = make_tar([
            D("usr/"), D("usr/local/"), D("usr/local/bin/"),
            F("usr/local/bin/show", '#!/bin/sh\necho "args:$*"\necho "greeting:$GREETING"\necho "pwd:$(pwd)"\n'
                                    'echo "uid:$(id -u)"\n', mode=0o755),
            D("srv/"), D("srv/app/", uid=1000, gid=1000),
        ])
        self.layout.write_image("config0", [self.layout.layer(show)], base=self._umoci_base())
        run("umoci", "config", "--image", f"{self.layout.path}:config0", "--tag", "config",
            "--config.entrypoint", "/usr/local/bin/show", "--config.cmd", "default", "--config.cmd", "args",
            "--config.env", "GREETING=hello from the image", "--config.workingdir", "/srv/app",
            "--config.user", "app", "--config.label", "org.example.test=yes", "--config.label", "tier=backend",
            "--config.exposedports", "8080/tcp")
        self.registry.push(self.layout, "config", "config", "latest", "--format", "v2s2")
        self.record("config", "config")

    # -- compression -------------------------------------------------------------

    def _payload_image(self, name: str, compression: str = "gzip", parts: int = 1) -> dict:
        payload = random_bytes(300_000, name)
        top = make_tar([F("payload", payload)])
        self.layout.write_image(name, [self.layout.layer(top, compression, parts)], base=self._umoci_base())
        return {"sha256": hashlib.sha256(payload).hexdigest()}

    def _compressed(self, name: str, media_suffix: str, *push_args: str, compression="gzip", parts=1):
        info = self._payload_image(name, compression, parts)
        if push_args:
            self.registry.push(self.layout, name, "compress", name, *push_args)
        else:
            self.registry.upload(self.layout, name, "compress", name)
        p = self.record(name, "compress", name, **info)
        top = p.manifest["layers"][-1]["mediaType"]
        assert top.endswith(media_suffix), (name, top)  # the fixture made what it claims

    def _build_gzip(self):
        self._compressed("gzip", "tar.gzip", "--format", "v2s2")

    def _build_zstd(self):
        self._compressed("zstd", "tar+zstd", "--format", "oci", "--dest-compress-format", "zstd")

    def _build_uncompressed(self):
        self._compressed("uncompressed", ".tar", compression="none")

    def _build_gzip_multi(self):
        self._compressed("gzip-multi", "tar+gzip", "--format", "oci", parts=3)

    def _build_zstd_multi(self):
        self._compressed("zstd-multi", "tar+zstd", "--format", "oci", compression="zstd", parts=3)

    # -- multi-arch --------------------------------------------------------------

    def _build_multi(self):
        """``multi:latest``, an OCI index: an attestation (unknown/unknown) first,
        then linux/OTHER_ARCH (arm64 given as variant v8), then linux/HOST_ARCH.
        Each image's top layer holds /arch naming its architecture."""
        base = self._umoci_base()
        entries, info = [], {}
        for arch in (OTHER_ARCH, HOST_ARCH):
            variant = "v8" if arch == "arm64" else None
            layer = self.layout.layer(make_tar([F("arch", arch + "\n")]))
            desc = self.layout.write_image(f"multi-{arch}", [layer], base=base, arch=arch, variant=variant)
            platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
            entries.append({**desc, "platform": platform})
            info[arch] = {"manifest": desc["digest"], "top_diff_id": layer[1]}
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": []}).encode()
        att_layer = self.layout.put(statement, "application/vnd.in-toto+json",
                                    annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})
        att_config = self.layout.put_json({"architecture": "unknown", "os": "unknown", "config": {},
                                           "rootfs": {"type": "layers", "diff_ids": [sha256(statement)]}},
                                          OCI_CONFIG)
        att = self.layout.put_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": att_config,
                                    "layers": [att_layer]}, OCI_MANIFEST)
        entries.insert(0, {**att, "platform": {"architecture": "unknown", "os": "unknown"},
                           "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                           "vnd.docker.reference.digest": entries[-1]["digest"]}})
        index = self.layout.put_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)
        self.layout.tag("multi", index)
        self.registry.push(self.layout, "multi", "multi", "latest", "--all")
        p = self.record("multi", "multi", **info)
        assert p.media_type == OCI_INDEX and len(p.manifest["manifests"]) == 3, p.manifest
        for arch in (OTHER_ARCH, HOST_ARCH):
            _, m, _ = self.registry.manifest("multi", info[arch]["manifest"])
            info[arch]["config"] = m["config"]["digest"]

    def _build_multi_docker(self):
        """``multi-docker:latest``: a Docker manifest list (schema2 images) of
        linux/OTHER_ARCH and linux/HOST_ARCH, converted from OCI by skopeo."""
        self["multi"]  # reuses its two images
        entries = [{**self.layout.resolve(f"multi-{a}"), "platform": p["platform"]}
                   for a in (OTHER_ARCH, HOST_ARCH)
                   for p in self.cache["multi"].manifest["manifests"] if p["platform"]["architecture"] == a]
        for e in entries:
            e.pop("annotations", None)
        index = self.layout.put_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)
        self.layout.tag("multi-docker", index)
        self.registry.push(self.layout, "multi-docker", "multi-docker", "latest", "--all", "--format", "v2s2")
        p = self.record("multi-docker", "multi-docker")
        assert p.media_type == DOCKER_LIST, p.media_type
        for e in p.manifest["manifests"]:
            _, m, _ = self.registry.manifest("multi-docker", e["digest"])
            p.info[e["platform"]["architecture"]] = {"config": m["config"]["digest"]}

    def _build_repeated(self):
        """busybox + E (/e) + M (deletes /e, adds /m) + E again: a layer twice in one image."""
        e = self.layout.layer(make_tar([F("e", "e\n")]))
        m = self.layout.layer(make_tar([F(".wh.e"), F("m", "m\n")]))
        self.layout.write_image("repeated", [e, m, e], base=self._umoci_base())
        self.registry.push(self.layout, "repeated", "repeated", "latest", "--format", "oci")
        self.record("repeated", "repeated")

    def _build_lying_diff_id(self):
        """A config whose diff_id is not the layer's uncompressed digest."""
        desc, _ = self.layout.layer(make_tar([F("x", random_bytes(5000, "lying"))]))
        wrong = sha256(b"not this layer")
        self.layout.write_image("lying-diff-id", [(desc, wrong)], config={"Cmd": ["/x"]})
        self.registry.push(self.layout, "lying-diff-id", "lying-diff-id", "latest", "--format", "oci")
        self.record("lying-diff-id", "lying-diff-id", layer_digest=desc["digest"], wrong=wrong)

    # -- sizes: two images sharing a base of known size, nothing else -------------

    def _build_sizes(self):
        base = self.layout.layer(make_tar([F("base.bin", random_bytes(200_000, "sizes-base"))]))
        self.layout.write_image("sizes-base", [base], config={"Cmd": ["/bin/true"]})
        for name, n in (("sizes-a", 50_000), ("sizes-b", 70_000)):
            top = self.layout.layer(make_tar([F(f"{name}.bin", random_bytes(n, name))]))
            self.layout.write_image(name, [top], base="sizes-base")
            self.registry.push(self.layout, name, name, "latest", "--format", "oci")
            self.record(name, name)
        self.cache["sizes"] = self.cache["sizes-a"]

    # -- images made to be pulled once, each with layers nobody else has ------------

    def unique(self, name: str, size: int = 200_000, repo: str | None = None, tag: str = "latest",
               base: bool = True, registry: Registry | None = None, compression: str = "gzip") -> Pushed:
        """An image (busybox base unless ``base=False``) with a top layer, /payload
        of ``size`` random bytes, and a config label no other image has.
        ``info``: payload_sha256, layer_digest (the top layer's blob)."""
        key = f"unique:{name}"
        with self.lock:
            if key in self.cache:
                return self.cache[key]
            payload = random_bytes(size, name + uuid.uuid4().hex)
            layer = self.layout.layer(make_tar([F("payload", payload)]), compression)
            cfg = {"Labels": {"unique": uuid.uuid4().hex}}
            self.layout.write_image(name, [layer], base=self._umoci_base() if base else None, config=cfg)
            reg = registry or self.registry
            if compression == "none":
                reg.upload(self.layout, name, repo or name, tag)
            else:
                reg.push(self.layout, name, repo or name, tag, "--format", "oci")
            return self.record(key, repo or name, tag, registry=reg, label=cfg["Labels"]["unique"],
                               payload_sha256=hashlib.sha256(payload).hexdigest(), layer_digest=layer[0]["digest"])

    # -- hostile layers --------------------------------------------------------------

    def hostile(self, kind: str, marker: str) -> Pushed:
        """A one-layer image whose tar tries to write outside its directory.
        ``marker``: a unique name; the attacks aim at /tmp/<marker>*."""
        up = "../" * 12
        entries = {
            "dotdot": [F(f"../{marker}-escape", "pwned\n"), F(f"{up}tmp/{marker}-dotdot", "pwned\n"),
                       D("a/"), F(f"a/../../{marker}-escape2", "pwned\n")],
            "absolute": [F(f"/tmp/{marker}-abs", "pwned\n"), D(f"/tmp/{marker}-absdir/")],
            "symlink": [S("evil", f"/tmp/{marker}-symdir"), F("evil/pwned", "pwned\n"),
                        S("evilfile", f"/tmp/{marker}-symfile"), F("evilfile", "pwned\n")],
            "symlink-relative": [S("x", up.rstrip("/")), F(f"x/tmp/{marker}-rel", "pwned\n"),
                                 S("y", "../../.."), F(f"y/{marker}-rel2", "pwned\n")],
            "hardlink": [H("passwd", "../../etc/passwd"), H("passwd2", up + "etc/passwd"),
                         H("passwd3", "/etc/passwd"), H("hl", f"{up}tmp/{marker}-hlfile"),
                         F("hl", "pwned\n")],
        }[kind]
        tag = f"hostile-{kind}"
        self.layout.write_image(tag, [self.layout.layer(make_tar(entries))], config={"Cmd": ["/x"]})
        self.registry.push(self.layout, tag, "hostile", kind, "--format", "oci")
        return self.record(f"hostile:{kind}:{marker}", "hostile", kind)

    def _build_bomb(self):
        """A layer of ~4 MB gzip expanding to 4 GiB of zeros, with an honest diff_id."""
        size = 4 << 30
        ti = tarfile.TarInfo("zeros")
        ti.size, ti.mode, ti.mtime = size, 0o644, 1_600_000_000
        header = ti.tobuf(format=tarfile.USTAR_FORMAT)
        mib = bytes(1 << 20)
        h = hashlib.sha256(header)
        for _ in range(size >> 20):
            h.update(mib)
        h.update(bytes(1024))
        member = gzip.compress(mib, compresslevel=9, mtime=0)
        blob = gzip.compress(header, mtime=0) + member * (size >> 20) + gzip.compress(bytes(1024), mtime=0)
        desc = self.layout.put(blob, LAYER_TYPES["gzip"])
        self.layout.write_image("bomb", [(desc, "sha256:" + h.hexdigest())], config={"Cmd": ["/x"]})
        self.registry.push(self.layout, "bomb", "bomb", "latest", "--format", "oci")
        self.record("bomb", "bomb", compressed=len(blob), expanded=size)


# --------------------------------------------------------------------------- proxy


@dataclass
class Req:
    server: str  # "registry" (the proxy) or "store" (the redirect target)
    method: str
    path: str
    headers: dict
    status: int = 0
    sent: int = 0  # body bytes sent


class Proxy:
    """An HTTP front for ``registry`` on 127.0.0.1:<free port>; behaviours are
    plain attributes a test sets before pulling:

    ``auth``: None, "bearer" or "basic"; ``users``: {user: password};
    ``token_field``: "token" or "access_token"; ``too_many_once``: "manifest" or
    "blob": that kind of request gets one 429 with ``Retry-After: 1``;
    ``redirect_blobs``: blob GETs answer 307 to a second listener on 127.0.0.2
    that rejects any request carrying Authorization; ``slow``: {digest: n}: send
    n bytes of that blob, set ``slow_reached`` and then trickle; ``break_once``:
    {digest: n}: send n bytes then drop the connection (once); ``hold``:
    {digest: Event}: wait for the event before serving that blob;
    ``manifest_alias``: {ref: other}: answer /manifests/ref with other's manifest.
    ``log``: every request, in order.
    """

    def __init__(self, registry: Registry):
        self.registry = registry
        self.auth: str | None = None
        self.users = {"tester": "s3cret!"}
        self.token_field = "token"
        self.too_many_once: str | None = None
        self.redirect_blobs = False
        self.slow: dict[str, int] = {}
        self.slow_reached = threading.Event()
        self.break_once: dict[str, int] = {}
        self.hold: dict[str, threading.Event] = {}
        self.manifest_alias: dict[str, str] = {}
        self.log: list[Req] = []
        self.tokens: dict[str, str] = {}  # token -> scope
        self.closed = False
        self._lock = threading.Lock()
        self.server = self._serve("127.0.0.1", "registry")
        self.store = self._serve("127.0.0.2", "store")
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.store_host = f"127.0.0.2:{self.store.server_address[1]}"

    def _serve(self, addr: str, role: str) -> http.server.ThreadingHTTPServer:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy._handle(self, role)

            do_HEAD = do_GET

        srv = http.server.ThreadingHTTPServer((addr, 0), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    def close(self) -> None:
        self.closed = True
        for ev in self.hold.values():
            ev.set()
        for srv in (self.server, self.store):
            srv.shutdown()
            srv.server_close()

    # -- views of the log ------------------------------------------------------

    def requests(self, kind: str = "", method: str | None = None, server: str = "registry") -> list[Req]:
        """kind: "blobs", "manifests", "token" or "" for all."""
        return [r for r in list(self.log) if r.server == server and f"/{kind}" in r.path
                and (method is None or r.method == method)]

    def blob_gets(self, digest: str | None = None) -> list[Req]:
        return [r for r in self.requests("blobs/", "GET") if digest is None or digest in r.path]

    def clear(self) -> None:
        self.log.clear()

    # -- serving ---------------------------------------------------------------

    def _send(self, h, req: Req, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        req.status = status
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _handle(self, h, role: str) -> None:
        path = urllib.parse.urlsplit(h.path).path
        req = Req(role, h.command, h.path, {k.lower(): v for k, v in h.headers.items()})
        self.log.append(req)
        try:
            if role == "store":
                return self._store(h, req, path)
            if path == "/token":
                return self._token(h, req)
            if not path.startswith("/v2/"):
                return self._send(h, req, 404)
            repo = path[4:].rsplit("/", 2)[0] if path.count("/") > 3 else ""
            if not self._authorised(h, req, repo):
                return
            kind = "blob" if "/blobs/" in path else "manifest" if "/manifests/" in path else ""
            if kind and self.too_many_once == kind:
                with self._lock:
                    once = self.too_many_once == kind
                    self.too_many_once = None
                if once:
                    return self._send(h, req, 429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}',
                                      {"Retry-After": "1", "Content-Type": "application/json"})
            digest = path.rsplit("/", 1)[1]
            if kind == "blob" and digest in self.hold:
                self.hold[digest].wait(60)
            if kind == "blob" and self.redirect_blobs and h.command == "GET":
                q = urllib.parse.urlencode({"X-Amz-Signature": uuid.uuid4().hex})
                return self._send(h, req, 307, headers={"Location": f"http://{self.store_host}/{repo}/{digest}?{q}"})
            if kind == "manifest" and digest in self.manifest_alias:
                path = path.rsplit("/", 1)[0] + "/" + self.manifest_alias[digest]
            self._forward(h, req, path, digest if kind == "blob" else "")
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _token(self, h, req: Req) -> None:
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(h.path).query))
        if not self._basic_ok(h.headers.get("Authorization", "")):
            return self._send(h, req, 401, b'{"details":"incorrect username or password"}',
                              {"Content-Type": "application/json"})
        token = uuid.uuid4().hex
        self.tokens[token] = q.get("scope", "")
        body = json.dumps({self.token_field: token, "expires_in": 300, "issued_at": "2024-01-01T00:00:00Z"})
        self._send(h, req, 200, body.encode(), {"Content-Type": "application/json"})

    def _basic_ok(self, value: str) -> bool:
        if not value.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(value[6:]).decode().partition(":")
        except ValueError:
            return False
        return self.users.get(user) == pw

    def _authorised(self, h, req: Req, repo: str) -> bool:
        got = h.headers.get("Authorization", "")
        if self.auth == "basic":
            if self._basic_ok(got):
                return True
            self._send(h, req, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                       {"WWW-Authenticate": 'Basic realm="pinnace-tests"', "Content-Type": "application/json"})
            return False
        if self.auth == "bearer":
            scope = self.tokens.get(got[7:]) if got.startswith("Bearer ") else None
            if scope is not None and (not repo or f"repository:{repo}:" in scope):
                return True
            challenge = f'Bearer realm="http://{self.host}/token",service="pinnace-tests"'
            if repo:
                challenge += f',scope="repository:{repo}:pull"'
            self._send(h, req, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                       {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return False
        return True

    def _store(self, h, req: Req, path: str) -> None:
        if "authorization" in req.headers:  # as S3 does with a presigned URL
            return self._send(h, req, 400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                                            b"allowed</Message></Error>", {"Content-Type": "application/xml"})
        repo, digest = path[1:].rsplit("/", 1)
        self._forward(h, req, f"/v2/{repo}/blobs/{digest}", digest)

    def _forward(self, h, req: Req, path: str, digest: str) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("accept", "range", "if-none-match")}
        c = http.client.HTTPConnection("127.0.0.1", self.registry.port, timeout=60)
        try:
            c.request(h.command, path, headers=headers)
            r = c.getresponse()
            req.status = r.status
            h.send_response(r.status)
            length = r.getheader("Content-Length")
            body = None
            if length is None:
                body = r.read()
                length = str(len(body))
            for k, v in r.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "keep-alive", "content-length", "date",
                                     "server"):
                    h.send_header(k, v)
            h.send_header("Content-Length", length)
            h.end_headers()
            if h.command == "HEAD":
                return
            if body is not None:
                h.wfile.write(body)
                req.sent = len(body)
                return
            slow = self.slow.get(digest) if r.status in (200, 206) else None
            with self._lock:
                cut = self.break_once.pop(digest, None) if r.status in (200, 206) else None
            while True:
                chunk = r.read(16384)
                if not chunk:
                    break
                if cut is not None and req.sent + len(chunk) >= cut:
                    h.wfile.write(chunk[:cut - req.sent])
                    h.wfile.flush()
                    req.sent = cut
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(chunk)
                req.sent += len(chunk)
                if slow is not None and req.sent >= slow:
                    h.wfile.flush()
                    self.slow_reached.set()
                    if not self.closed and digest in self.slow:
                        time.sleep(0.2)  # trickle: 80 kB/s, far slower than the rest
                    if self.closed:
                        h.close_connection = True
                        return
        finally:
            c.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def registry():
    """docker-registry on 127.0.0.1:<free port>, storage in a temp dir."""
    work = tempfile.mkdtemp(prefix="pinnace-registry-", dir="/var/tmp")
    reg = Registry(work)
    try:
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def images(registry):
    """``images[name]`` -> :class:`Pushed`, built and pushed on first use. Names:
    busybox (schema2), busybox-oci, autopull, layered (whiteouts, opaque dirs),
    attrs (owners, modes, links), config (Entrypoint/Cmd/Env/...), gzip, zstd,
    uncompressed, gzip-multi, zstd-multi (a /payload of known sha256), multi
    (index: attestation + two arches), multi-docker (a Docker manifest list),
    repeated (one layer twice), lying-diff-id, sizes-a/sizes-b (a shared 200 kB base),
    bomb; and ``images.unique(name)``, ``images.hostile(kind, marker)``."""
    work = tempfile.mkdtemp(prefix="pinnace-images-", dir="/var/tmp")
    try:
        yield Images(registry, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def proxy(registry):
    """A fresh :class:`Proxy` in front of the session registry."""
    p = Proxy(registry)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(autouse=True)
def store_consistent_after_each_registry_test(request):
    """The issue's rule: after each test the image store is consistent (what a
    killed pull leaves to resume from is allowed; the session's end, after
    prune, allows nothing)."""
    yield
    if request.node.get_closest_marker("registry") is None:
        return
    from pinnace.images.store import check

    root = os.environ.get("PINNACE_ROOT")
    if root:
        problems = check(root, leftovers=False)
        assert not problems, f"image store inconsistent after {request.node.name}: {problems}"
