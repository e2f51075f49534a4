"""``pinnace pull`` against a real registry (docker-registry), images made by
umoci/skopeo/hand-written tars: references, manifest kinds, platforms,
compressions, verification, concurrency, interruption, retries, TLS rules."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import PINNACE, pn
from pullhelp import (blob_stored, by_id, entry, half_done, hexes, images_json, inspect, last_line, layer_names,
                      no_repeated_digest, one_error, problems, pull)
from registry import HOST_ARCH, OTHER_ARCH, Registry, free_port

pytestmark = pytest.mark.registry


# --------------------------------------------------------------------------- references


def test_no_tag_means_latest_and_the_image_runs(images, store):
    bb = images["busybox"]
    r = pull(bb.name)
    assert last_line(r) == f"{bb.name}:latest"
    e = entry(f"{bb.name}:latest")
    assert e is not None, images_json()
    assert e["Id"] == bb.id
    assert f"{bb.name}@{bb.digest}" in e["RepoDigests"]
    r = pn("run", "--rm", bb.name, "sh", "-c", "echo hello from $(busybox | head -1 | cut -c1-7)")
    assert (r.returncode, r.out) == (0, "hello from BusyBox\n"), r.err
    assert problems(store["root"]) == []


def test_quiet_prints_only_the_reference(images):
    bb = images["busybox"]
    r = pull(bb.ref, "-q")
    assert r.out == f"{bb.ref}\n"


def test_localhost_is_a_registry_host(images):
    bb = images["busybox"]
    ref = f"localhost:{images.registry.port}/busybox"
    r = pull(ref)
    assert last_line(r) == f"{ref}:latest"
    assert inspect(f"{ref}:latest")["Id"] == bb.id


def test_digest_pins_the_manifest(images, registry):
    bb = images["busybox"]
    ref = f"{bb.name}@{bb.digest}"
    r = pull(ref)
    assert last_line(r) == ref
    assert inspect(ref)["Id"] == bb.id
    r = pn("run", "--rm", ref, "echo", "pinned")
    assert r.out == "pinned\n", r.err
    one_error(pn("pull", f"{bb.name}@sha256:{'0' * 64}"))


def test_manifest_not_matching_the_pinned_digest_is_refused(images, proxy, store):
    """A registry answering a digest with other bytes (here: the tag's current
    manifest) is caught: the digest is over the exact bytes received."""
    old = images.unique("moved-tag-old", size=1000, repo="moved", tag="v1")
    new = images.unique("moved-tag-new", size=1000, repo="moved", tag="v2")
    proxy.manifest_alias[old.digest] = new.tag
    ref = f"{proxy.host}/moved@{old.digest}"
    line = one_error(pn("pull", ref))
    assert old.digest.split(":")[1][:12] in line, line
    assert entry(ref) is None
    assert by_id(new.id) is None and by_id(old.id) is None
    assert problems(store["root"]) == []


@pytest.mark.parametrize("bad", [
    "{host}/UPPER", "{host}/busybox:", "{host}/busybox:bad:tag", "{host}/a//b", "{host}/busybox@sha256:1234",
    "{host}/busybox@md5:" + "0" * 32, "{host}/busybox:" + "t" * 129, "{host}/-leading", "{host}/busybox@",
    "{host}/", ":tag", "",
], ids=["uppercase", "empty-tag", "two-tags", "empty-component", "short-digest", "md5", "long-tag", "leading-dash",
        "empty-digest", "no-repository", "no-name", "empty"])
def test_bad_references_fail_offline_with_one_line(proxy, bad):
    ref = bad.format(host=proxy.host)
    r = pn("pull", ref)
    line = one_error(r)
    assert "invalid" in line.lower(), line
    assert proxy.log == [], "a malformed reference must be refused before any request"


def test_missing_repository_and_tag_are_clear_errors(images, registry):
    bb = images["busybox"]
    line = one_error(pn("pull", f"{registry.host}/no-such-repo"))
    assert "no-such-repo" in line
    line = one_error(pn("pull", f"{bb.name}:no-such-tag"))
    assert "no-such-tag" in line
    assert entry(f"{registry.host}/no-such-repo:latest") is None


def test_unreachable_registry_is_a_clear_error():
    port = free_port()
    line = one_error(pn("pull", f"127.0.0.1:{port}/busybox", timeout=120))
    assert f"127.0.0.1:{port}" in line


# --------------------------------------------------------------------------- manifests and platforms


@pytest.mark.parametrize("name", ["busybox", "busybox-oci"])
def test_docker_schema2_and_oci_manifests(images, name):
    img = images[name]
    pull(img.ref)
    got = inspect(img.ref)
    assert got["Id"] == img.id
    assert got["RootFS"] == {"Type": "layers", "Layers": img.diff_ids}
    assert (got["Os"], got["Architecture"]) == ("linux", HOST_ARCH)
    r = pn("run", "--rm", img.ref, "busybox", "true")
    assert r.returncode == 0, r.err


def test_same_config_under_two_names_is_one_image(images):
    a, b = images["busybox"], images["busybox-oci"]
    assert a.id == b.id  # skopeo kept the config bytes while converting
    pull(a.ref)
    pull(b.ref)
    matching = [e for e in images_json() if e["Id"] == a.id]
    assert len(matching) == 1
    assert {a.ref, b.ref} <= set(matching[0]["RepoTags"])


def test_multi_arch_index_default_and_platform(images):
    m = images["multi"]
    other, native = m.info[OTHER_ARCH], m.info[HOST_ARCH]
    pull(m.ref, "--platform", f"linux/{OTHER_ARCH}")
    got = inspect(m.ref)
    assert (got["Id"], got["Architecture"], got["Os"]) == (other["config"], OTHER_ARCH, "linux")
    assert got["RootFS"]["Layers"][-1] == other["top_diff_id"]
    # default: this machine's platform, never the unknown/unknown attestation listed first
    pull(m.ref)
    got = inspect(m.ref)
    assert (got["Id"], got["Architecture"]) == (native["config"], HOST_ARCH)
    r = pn("run", "--rm", m.ref, "cat", "/arch")
    assert r.out == f"{HOST_ARCH}\n", r.err


def test_docker_manifest_list(images):
    m = images["multi-docker"]
    pull(m.ref)
    assert inspect(m.ref)["Id"] == m.info[HOST_ARCH]["config"]
    pull(m.ref, "--platform", f"linux/{OTHER_ARCH}")
    got = inspect(m.ref)
    assert (got["Id"], got["Architecture"]) == (m.info[OTHER_ARCH]["config"], OTHER_ARCH)


@pytest.mark.skipif(OTHER_ARCH != "arm64", reason="the index's other platform is arm64 on amd64 hosts")
@pytest.mark.parametrize("spelling", ["linux/aarch64", "linux/arm64/v8", "linux/arm64"])
def test_platform_spellings_normalise(images, spelling):
    m = images["multi"]  # its arm64 entry says variant v8
    try:
        pull(m.ref, "--platform", spelling)
        assert inspect(m.ref)["Id"] == m.info["arm64"]["config"]
    finally:
        pull(m.ref)  # back to this machine's


def test_platform_not_in_the_index_is_a_clear_error(images):
    m = images["multi"]
    line = one_error(pn("pull", "--platform", "linux/s390x", m.ref))
    assert "s390x" in line


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("name", ["gzip", "zstd", "uncompressed", "gzip-multi", "zstd-multi"])
def test_layer_compressions(images, name):
    """gzip (schema2), zstd (recompressed by skopeo), plain tar, multi-member gzip
    and multi-frame zstd: decoded to the end, checked from inside a container."""
    img = images[name]
    pull(img.ref)
    assert inspect(img.ref)["RootFS"]["Layers"] == img.diff_ids
    r = pn("run", "--rm", img.ref, "sha256sum", "/payload")
    assert r.returncode == 0, r.err
    assert r.out.split()[0] == img.info["sha256"]


def test_second_pull_downloads_no_blob(images, proxy):
    img = images.unique("repull")
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    pull(ref)
    assert proxy.blob_gets(img.info["layer_digest"]), "the first pull fetched the new layer"
    proxy.clear()
    pull(ref)
    assert proxy.blob_gets() == []
    assert proxy.requests("manifests/"), "a pull still asks the registry what the tag means"


# --------------------------------------------------------------------------- verification


@pytest.mark.parametrize("what", ["layer", "config"])
def test_tampered_blob_is_refused_naming_its_digest(images, registry, store, what):
    img = images.unique(f"tampered-{what}", size=100_000, base=False, compression="none")
    digest = img.info["layer_digest"] if what == "layer" else img.config
    path = registry.blob_path(digest)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if what == "layer":  # still a valid tar: only the digest can tell
        data[len(data) // 2] ^= 0xFF
    else:  # still valid JSON
        label = img.info["label"].encode()
        i = data.index(label)
        data[i:i + len(label)] = label[::-1] if label[::-1] != label else label.upper()
    with open(path, "wb") as f:
        f.write(data)
    before = layer_names(store["root"])
    line = one_error(pn("pull", img.ref))
    assert digest.split(":")[1][:12] in line, line
    no_repeated_digest(line)
    assert entry(img.ref) is None
    assert not blob_stored(store["root"], digest)
    assert layer_names(store["root"]) == before
    assert half_done(store["root"]) == []
    assert problems(store["root"]) == []


def test_config_naming_another_diff_id_is_refused(images, store):
    """The blob is what the manifest says, but the config's diff_id is not its tar's digest."""
    img = images["lying-diff-id"]
    line = one_error(pn("pull", img.ref))
    assert img.info["wrong"].split(":")[1][:12] in line or "diff" in line.lower(), line
    assert entry(img.ref) is None
    assert not (hexes(img.diff_ids) & layer_names(store["root"]))
    assert half_done(store["root"]) == [] and problems(store["root"]) == []


def test_tampered_gzip_layer_is_refused(images, registry, store):
    img = images.unique("tampered-gzip", size=100_000, base=False)
    digest = img.info["layer_digest"]
    path = registry.blob_path(digest)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    before = layer_names(store["root"])
    one_error(pn("pull", img.ref))
    assert entry(img.ref) is None
    assert not blob_stored(store["root"], digest)
    assert layer_names(store["root"]) == before
    assert half_done(store["root"]) == [] and problems(store["root"]) == []


# --------------------------------------------------------------------------- concurrency, interruption


def _manifest_requests_per_pull(images, proxy) -> int:
    calib = images.unique("calibrate", size=1000, base=False)
    proxy.clear()
    pull(f"{proxy.host}/{calib.repo}:{calib.tag}")
    n = len(proxy.requests("manifests/"))
    proxy.clear()
    return max(n, 1)


def test_concurrent_pulls_of_one_image_leave_one_copy(images, proxy, store):
    img = images.unique("concurrent", size=2_000_000)
    per_pull = _manifest_requests_per_pull(images, proxy)
    layer = img.info["layer_digest"]
    gate = proxy.hold[layer] = threading.Event()
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    procs = [subprocess.Popen([PINNACE, "pull", ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    try:
        # hold the layer until all three have resolved the tag, so they overlap
        deadline = time.monotonic() + 60
        while len(proxy.requests("manifests/")) < 3 * per_pull and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.05)
        gate.set()
        results = [(p.wait(timeout=180), *[s.decode() for s in p.communicate()]) for p in procs]
    finally:
        gate.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for code, out, err in results:
        assert code == 0, err
        assert out.strip().splitlines()[-1] == ref
    assert len([e for e in images_json() if ref in e["RepoTags"]]) == 1
    assert len([r for r in proxy.blob_gets(layer) if r.status == 200]) == 1, \
        "one process downloads a blob, the others wait for it"
    assert hexes(img.diff_ids) <= layer_names(store["root"])
    assert half_done(store["root"]) == [] and problems(store["root"]) == []
    r = pn("run", "--rm", ref, "sha256sum", "/payload")
    assert r.out.split()[0] == img.info["payload_sha256"], r.err


def _session_leftovers(sid: int) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.getsid(int(pid)) == sid:
                    out.append(int(pid))
            except OSError:
                pass
    return out


def test_pull_killed_mid_download_leaves_no_half_blob_and_next_pull_resumes(images, proxy, store):
    img = images.unique("killed", size=6_000_000)
    layer = img.info["layer_digest"]
    diff_id = img.diff_ids[-1]
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    proxy.slow[layer] = 3_500_000  # then a trickle: the pull is surely mid-download
    p = subprocess.Popen([PINNACE, "pull", ref], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        assert proxy.slow_reached.wait(120), "the pull never got to the layer"
        # kill once a good part of the blob has reached the store's partial file
        partial = os.path.join(store["root"], "images", "blobs", "sha256", layer.split(":")[1] + ".partial")
        deadline = time.monotonic() + 120
        while not (os.path.exists(partial) and os.path.getsize(partial) >= 1 << 20):
            assert time.monotonic() < deadline and p.poll() is None, "no partial download appeared"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    stragglers = _session_leftovers(p.pid)
    for pid in stragglers:
        os.kill(pid, signal.SIGKILL)
    assert stragglers == [], "a killed pull left processes behind"
    root = store["root"]
    assert entry(ref) is None
    assert not os.path.exists(os.path.join(root, "images", "blobs", "sha256", layer.split(":")[1]))
    assert diff_id.split(":")[1] not in layer_names(root)
    proxy.slow.clear()
    proxy.clear()
    r = pull(ref)
    assert last_line(r) == ref
    r = pn("run", "--rm", ref, "sha256sum", "/payload")
    assert r.out.split()[0] == img.info["payload_sha256"], r.err
    assert half_done(root) == [] and problems(root) == []
    gets = proxy.blob_gets(layer)
    assert any(_range_start(g) > 0 for g in gets), \
        f"the download after the kill started over: {[g.headers.get('range') for g in gets]}"


def _range_start(req) -> int:
    rg = req.headers.get("range", "")
    return int(rg[6:].split("-")[0]) if rg.startswith("bytes=") else 0


def test_broken_download_is_resumed_with_range(images, proxy, store):
    img = images.unique("broken", size=6_000_000)
    layer = img.info["layer_digest"]
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    cut = 3_500_000
    proxy.break_once[layer] = cut
    pull(ref)
    gets = proxy.blob_gets(layer)
    assert len(gets) >= 2, gets
    assert gets[0].sent == cut
    starts = [_range_start(g) for g in gets[1:]]
    assert any(0 < s <= cut for s in starts), f"not resumed: {[g.headers.get('range') for g in gets]}"
    r = pn("run", "--rm", ref, "sha256sum", "/payload")
    assert r.out.split()[0] == img.info["payload_sha256"], r.err
    assert half_done(store["root"]) == []


@pytest.mark.parametrize("kind", ["manifest", "blob"])
def test_429_with_retry_after_is_retried(images, proxy, kind):
    img = images.unique(f"ratelimited-{kind}", size=10_000)
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    proxy.too_many_once = kind
    pull(ref)
    log = proxy.requests()
    limited = [i for i, r in enumerate(log) if r.status == 429]
    assert len(limited) == 1, [(r.method, r.path, r.status) for r in log]
    again = [r for r in log[limited[0] + 1:] if r.path == log[limited[0]].path and r.status in (200, 206, 307)]
    assert again, "the rate-limited request was not retried"
    assert entry(ref) is not None


# --------------------------------------------------------------------------- TLS rules


@pytest.fixture
def netns_registry(images, tmp_path):
    """A registry on 10.213.7.1:5000 (plain HTTP) inside a network namespace made for the test."""
    ns = f"pinnace-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    reg = None
    try:
        # a non-loopback address (on lo: this kernel may lack the dummy and veth drivers)
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.213.7.1/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        work = tmp_path / "netns-registry"
        work.mkdir()
        reg = Registry(str(work), host="10.213.7.1", port=5000, netns=ns)
        images["busybox"]  # the layout holds the busybox base from here on
        reg.push(images.layout, "busybox", "busybox", "latest", "--format", "v2s2")
        yield ns, reg
    finally:
        if reg is not None:
            reg.stop()
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_non_loopback_registry_needs_tls_opt_out(netns_registry, images, tmp_path, monkeypatch):
    ns, reg = netns_registry
    ref = f"{reg.host}/busybox"
    config = tmp_path / "config.toml"
    config.write_text("# nothing insecure\n")
    monkeypatch.setenv("PINNACE_CONFIG", str(config))

    def in_ns(*args):
        r = subprocess.run(["ip", "netns", "exec", ns, PINNACE, *args], capture_output=True, timeout=120)
        r.out, r.err = r.stdout.decode(), r.stderr.decode()
        return r

    try:
        line = one_error(in_ns("pull", ref))
        assert reg.host in line, line
        assert entry(f"{ref}:latest") is None
        r = in_ns("pull", "--tls-verify=false", ref)
        assert r.returncode == 0, r.err
        assert last_line(r) == f"{ref}:latest"
        assert inspect(f"{ref}:latest")["Id"] == images["busybox"].id
        assert pn("rmi", f"{ref}:latest").returncode == 0
        config.write_text(f'insecure_registries = ["{reg.host}"]\n')
        r = in_ns("pull", ref)
        assert r.returncode == 0, r.err
        assert entry(f"{ref}:latest") is not None
    finally:
        pn("rmi", f"{ref}:latest")
    # the refusal says how to get past it, as the untrusted-certificate one does
    assert "--tls-verify=false" in line or "insecure" in line.lower(), f"says what to do about it: {line}"


# --------------------------------------------------------------------------- Python API


def test_python_api_pull_and_images(images, registry):
    import pinnace
    from pinnace.errors import PinnaceError

    img = images.unique("api", size=1000)
    info = pinnace.pull(img.ref)
    assert info.id == img.id
    assert info.layers == img.diff_ids
    assert img.ref in info.tags
    assert info.config["Labels"]["unique"] == img.info["label"]
    listed = {i.id: i for i in pinnace.images()}
    assert img.id in listed and listed[img.id].size > 0
    with pytest.raises(PinnaceError) as e:
        pinnace.pull(f"{registry.host}/no-such-repo")
    assert "no-such-repo" in str(e.value)
