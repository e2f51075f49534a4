"""Registry authentication through the real CLI: bearer tokens and basic auth
with docker's config.json, ``pinnace login``/``logout`` against a registry
that checks the password, and blob redirects that must not carry credentials."""

from __future__ import annotations

import base64
import json
import os

import pytest

from conftest import pn
from pullhelp import entry, last_line, one_error, pull

pytestmark = pytest.mark.registry

USER, PASSWORD = "tester", "s3cret!"


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """$DOCKER_CONFIG in a temp dir; no podman auth.json to fall back on."""
    d = tmp_path / "docker"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    run = tmp_path / "xdg"
    run.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return d


def save_auth(d, server: str, user: str = USER, password: str = PASSWORD) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {server: {"auth": auth}}}))


def saved(d) -> dict:
    p = d / "config.json"
    return json.loads(p.read_text()).get("auths", {}) if p.exists() else {}


def _basic(user=USER, password=PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("field", ["token", "access_token"])
def test_bearer_token_with_credentials_from_config_json(images, proxy, docker_config, field):
    img = images.unique(f"bearer-{field}", size=20_000)
    proxy.auth, proxy.token_field = "bearer", field
    save_auth(docker_config, proxy.host)
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    r = pull(ref)
    assert last_line(r) == ref
    tokens = proxy.requests("token")
    assert tokens and all(t.headers.get("authorization") == _basic() for t in tokens)
    assert any(f"repository:{img.repo}:pull" in t.path.replace("%3A", ":") for t in tokens)
    assert len(tokens) <= 2, "tokens are cached per scope, not fetched per request"
    blobs = [b for b in proxy.blob_gets() if b.status == 200]
    assert blobs and all(b.headers.get("authorization", "").startswith("Bearer ") for b in blobs)
    r = pn("run", "--rm", ref, "sha256sum", "/payload")
    assert r.out.split()[0] == img.info["payload_sha256"], r.err


def test_basic_auth_with_credentials_from_config_json(images, proxy, docker_config):
    img = images.unique("basic", size=20_000)
    proxy.auth = "basic"
    save_auth(docker_config, f"http://{proxy.host}")  # docker accepts keys with a scheme
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    pull(ref)
    ok = [r for r in proxy.requests() if r.status in (200, 206)]
    assert ok and all(r.headers.get("authorization") == _basic() for r in ok)
    assert entry(ref)["Id"] == img.id


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_missing_or_wrong_credentials_are_clear_errors(images, proxy, docker_config, scheme):
    img = images.unique(f"denied-{scheme}", size=1_000)
    proxy.auth = scheme
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    for creds in (None, "wrong password"):
        if creds:
            save_auth(docker_config, proxy.host, password=creds)
        line = one_error(pn("pull", ref))
        low = line.lower()
        assert any(w in low for w in ("auth", "denied", "credential", "401", "password")), line
        assert PASSWORD not in line and "wrong password" not in line
        assert entry(ref) is None


def test_login_and_logout_write_and_erase_config_json(images, proxy, docker_config):
    img = images.unique("login", size=1_000)
    proxy.auth = "bearer"
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    r = pn("login", "-u", USER, "--password-stdin", proxy.host, input=f"{PASSWORD}\n".encode())
    assert r.returncode == 0, r.err
    assert "Login Succeeded" in r.out
    auth = saved(docker_config)[proxy.host]["auth"]
    assert base64.b64decode(auth).decode() == f"{USER}:{PASSWORD}"
    assert os.stat(docker_config / "config.json").st_mode & 0o077 == 0
    pull(ref)
    assert pn("rmi", ref).returncode == 0
    r = pn("logout", proxy.host)
    assert r.returncode == 0, r.err
    assert proxy.host not in saved(docker_config)
    one_error(pn("pull", ref))


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_login_with_a_wrong_password_fails_and_saves_nothing(proxy, docker_config, scheme):
    proxy.auth = scheme
    r = pn("login", "-u", USER, "--password-stdin", proxy.host, input=b"not-the-password\n")
    assert r.returncode != 0
    lines = r.err.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in r.err, r.err
    assert "not-the-password" not in r.err
    assert proxy.host not in saved(docker_config)
    r = pn("login", "-u", USER, "-p", PASSWORD, proxy.host)
    assert r.returncode == 0, r.err
    assert proxy.host in saved(docker_config)


def test_blob_redirect_to_another_host_drops_authorization(images, proxy, docker_config):
    img = images.unique("redirected", size=300_000)
    proxy.auth, proxy.redirect_blobs = "bearer", True
    save_auth(docker_config, proxy.host)
    ref = f"{proxy.host}/{img.repo}:{img.tag}"
    pull(ref)
    store = proxy.requests(server="store")
    assert store, "blobs came through the redirect"
    assert all("authorization" not in s.headers for s in store), "credentials were sent to the object store"
    assert all(s.status == 200 for s in store)
    r = pn("run", "--rm", ref, "sha256sum", "/payload")
    assert r.out.split()[0] == img.info["payload_sha256"], r.err
