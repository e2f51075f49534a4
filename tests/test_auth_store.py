"""Credential stores (docker's config.json, credential helpers, podman's
auth.json) and ``pinnace login``/``logout`` paths that need no registry."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys

import pytest

from conftest import pn
from pinnace.errors import AuthError
from pinnace.images import auth

# A real credential helper speaking docker's protocol, keeping its secrets in
# the JSON file named by $FAKE_HELPER_DB and logging each call to $FAKE_HELPER_LOG.
HELPER = f"""#!{sys.executable}
import json, os, sys
db_path, action = os.environ["FAKE_HELPER_DB"], sys.argv[1]
db = json.load(open(db_path)) if os.path.exists(db_path) else {{}}
data = sys.stdin.read()
with open(os.environ["FAKE_HELPER_LOG"], "a") as log:
    log.write(json.dumps([action, data]) + "\\n")
if action == "store":
    req = json.loads(data)
    db[req["ServerURL"]] = [req["Username"], req["Secret"]]
elif action in ("get", "erase"):
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    if action == "get":
        print(json.dumps({{"ServerURL": data, "Username": db[data][0], "Secret": db[data][1]}}))
    else:
        del db[data]
elif action == "broken":
    sys.exit(3)
else:
    print("unknown action"); sys.exit(1)
json.dump(db, open(db_path, "w"))
"""


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Private docker and podman config locations and a helper on PATH."""
    docker = tmp_path / "docker"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-test"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("FAKE_HELPER_DB", str(tmp_path / "helper-db.json"))
    monkeypatch.setenv("FAKE_HELPER_LOG", str(tmp_path / "helper-log"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    class Env:
        root = tmp_path
        config = docker / "config.json"
        helper_db = tmp_path / "helper-db.json"

        def write_config(self, cfg: dict) -> None:
            docker.mkdir(exist_ok=True)
            self.config.write_text(json.dumps(cfg))

        def read_config(self) -> dict:
            return json.loads(self.config.read_text())

        def helper_has(self, creds: dict) -> None:
            self.helper_db.write_text(json.dumps(creds))

        def helper_calls(self) -> list:
            p = tmp_path / "helper-log"
            return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    return Env()


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io",
                                  "https://index.docker.io/v1/", "DOCKER.IO"])
def test_docker_hub_spellings_share_one_key(host):
    assert auth.normalize_registry(host) == "https://index.docker.io/v1/"
    assert auth.registry_host(host) == "docker.io"


@pytest.mark.parametrize("host,key", [("localhost:5000", "localhost:5000"), ("https://quay.io", "quay.io"),
                                      ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"), ("ghcr.io/", "ghcr.io")])
def test_other_registries_are_host_and_port(host, key):
    assert auth.normalize_registry(host) == key


def test_nothing_configured_is_none(env):
    assert auth.credentials("docker.io") is None
    assert auth.credentials("localhost:5000") is None


def test_auths_base64(env):
    env.write_config({"auths": {"localhost:5000": {"auth": b64("alice:s3cr:et")}}})
    assert auth.credentials("localhost:5000") == ("alice", "s3cr:et")
    assert auth.credentials("localhost:5001") is None


@pytest.mark.parametrize("stored", ["https://myreg.example:5000", "http://myreg.example:5000/v2/", "myreg.example:5000"])
def test_auths_keys_with_or_without_scheme(env, stored):
    env.write_config({"auths": {stored: {"auth": b64("u:p")}}})
    assert auth.credentials("myreg.example:5000") == ("u", "p")


def test_auths_username_password_fields_and_identity_token(env):
    env.write_config({"auths": {"a.example": {"username": "bob", "password": "pw"},
                                "b.example": {"auth": b64("x:y"), "identitytoken": "tok123"}}})
    assert auth.credentials("a.example") == ("bob", "pw")
    assert auth.credentials("b.example") == ("<token>", "tok123")


def test_docker_hub_entry_found_by_any_spelling(env):
    env.write_config({"auths": {"https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")}}})
    for host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert auth.credentials(host) == ("hubuser", "hubpass")


def test_repository_scoped_keys_are_not_a_registrys(env):
    env.write_config({"auths": {"quay.io/someorg": {"auth": b64("u:p")}}})
    assert auth.credentials("quay.io") is None


def test_bad_auth_field_names_the_file(env):
    env.write_config({"auths": {"r.example": {"auth": b64("no-colon-here")}}})
    with pytest.raises(AuthError, match=r"config\.json: auths\[r\.example\]"):
        auth.credentials("r.example")


def test_invalid_json_names_the_file(env):
    env.config.parent.mkdir()
    env.config.write_text("{not json")
    with pytest.raises(AuthError, match=r"config\.json: invalid json"):
        auth.credentials("r.example")


def test_cred_helper_wins_over_auths(env):
    env.write_config({"auths": {"r.example": {"auth": b64("file:pw")}}, "credHelpers": {"r.example": "test"}})
    env.helper_has({"r.example": ["helper", "hpw"]})
    assert auth.credentials("r.example") == ("helper", "hpw")
    assert env.helper_calls() == [["get", "r.example"]]


def test_cred_helper_only_for_its_registry(env):
    env.write_config({"auths": {"other.example": {"auth": b64("file:pw")}}, "credHelpers": {"r.example": "nope"}})
    assert auth.credentials("other.example") == ("file", "pw")
    assert env.helper_calls() == []


def test_creds_store_and_docker_hub_key_sent_to_helper(env):
    env.write_config({"credsStore": "test"})
    env.helper_has({"https://index.docker.io/v1/": ["hub", "hubsecret"]})
    assert auth.credentials("registry-1.docker.io") == ("hub", "hubsecret")
    assert env.helper_calls() == [["get", "https://index.docker.io/v1/"]]


def test_helper_identity_token_passes_through(env):
    env.write_config({"credsStore": "test"})
    env.helper_has({"r.example": ["<token>", "refresh-token"]})
    assert auth.credentials("r.example") == ("<token>", "refresh-token")


def test_helper_credentials_not_found_is_none(env):
    env.write_config({"credsStore": "test"})
    assert auth.credentials("r.example") is None
    assert env.helper_calls() == [["get", "r.example"]]


def test_helper_not_found_falls_back_to_auths(env):
    env.write_config({"credsStore": "test", "auths": {"r.example": {"auth": b64("old:pw")}}})
    assert auth.credentials("r.example") == ("old", "pw")


def test_missing_helper_program_is_a_clear_error(env):
    env.write_config({"credsStore": "absent"})
    with pytest.raises(AuthError, match="credential helper docker-credential-absent not found in PATH"):
        auth.credentials("r.example")


def test_failing_helper_is_an_error(env, tmp_path):
    bad = tmp_path / "bin" / "docker-credential-bad"
    bad.write_text("#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n")
    bad.chmod(0o755)
    env.write_config({"credsStore": "bad"})
    with pytest.raises(AuthError, match="docker-credential-bad get: keychain locked"):
        auth.credentials("r.example")


def test_podman_auth_json_under_xdg_runtime_dir(env):
    p = env.root / "xdg" / "containers" / "auth.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("pod:man")}}}))
    assert auth.credentials("quay.io") == ("pod", "man")


def test_docker_config_before_podman(env):
    env.write_config({"auths": {"quay.io": {"auth": b64("dock:er")}}})
    p = env.root / "xdg" / "containers" / "auth.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("pod:man")}}}))
    assert auth.credentials("quay.io") == ("dock", "er")


def test_registry_auth_file_replaces_default_podman_paths(env, monkeypatch):
    xdg = env.root / "xdg" / "containers" / "auth.json"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(json.dumps({"auths": {"a.example": {"auth": b64("xdg:pw")}}}))
    explicit = env.root / "mine.json"
    explicit.write_text(json.dumps({"auths": {"https://b.example": {"auth": b64("file:pw")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert auth.credentials("b.example") == ("file", "pw")
    assert auth.credentials("a.example") is None


def test_podman_root_default_without_xdg_runtime_dir(env, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert auth.podman_auth_paths()[0] == f"/run/containers/{os.geteuid()}/auth.json"


def test_save_preserves_other_keys_with_mode_0600(env):
    env.write_config({"auths": {"keep.example": {"auth": b64("k:k")}}, "psFormat": "table {{.ID}}",
                      "proxies": {"default": {"httpProxy": "http://p:3128"}}})
    os.chmod(env.config, 0o644)
    assert auth.save("docker.io", "me", "pw") == str(env.config)
    cfg = env.read_config()
    assert cfg["psFormat"] == "table {{.ID}}"
    assert cfg["proxies"] == {"default": {"httpProxy": "http://p:3128"}}
    assert cfg["auths"]["keep.example"] == {"auth": b64("k:k")}
    assert cfg["auths"]["https://index.docker.io/v1/"] == {"auth": b64("me:pw")}
    assert stat.S_IMODE(os.stat(env.config).st_mode) == 0o600
    assert auth.credentials("registry-1.docker.io") == ("me", "pw")
    assert [n for n in os.listdir(env.config.parent) if n != "config.json"] == []  # no temp file left


def test_save_creates_dir_0700_and_file_0600(env):
    assert not env.config.parent.exists()
    auth.save("localhost:5000", "u", "p")
    assert stat.S_IMODE(os.stat(env.config.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(env.config).st_mode) == 0o600
    assert env.read_config() == {"auths": {"localhost:5000": {"auth": b64("u:p")}}}


def test_save_replaces_old_secret_fields(env):
    env.write_config({"auths": {"r.example": {"username": "old", "password": "old", "email": "a@b"}}})
    auth.save("https://r.example", "new", "pw")
    assert env.read_config()["auths"]["r.example"] == {"email": "a@b", "auth": b64("new:pw")}


def test_save_through_helper_keeps_secret_out_of_file(env):
    env.write_config({"credsStore": "test"})
    assert auth.save("r.example", "u", "p") is None
    assert env.read_config() == {"credsStore": "test", "auths": {"r.example": {}}}
    assert json.loads(env.helper_db.read_text()) == {"r.example": ["u", "p"]}
    assert env.helper_calls()[0] == ["store", json.dumps({"ServerURL": "r.example", "Username": "u", "Secret": "p"})]
    assert auth.credentials("r.example") == ("u", "p")


def test_save_uses_cred_helper_for_that_registry(env):
    env.write_config({"credHelpers": {"docker.io": "test"}})
    assert auth.save("docker.io", "u", "p") is None
    assert json.loads(env.helper_db.read_text()) == {"https://index.docker.io/v1/": ["u", "p"]}


def test_erase_removes_every_spelling(env):
    env.write_config({"auths": {"r.example": {"auth": b64("a:b")}, "https://r.example": {"auth": b64("c:d")},
                                "other.example": {"auth": b64("e:f")}}, "detachKeys": "ctrl-p"})
    assert auth.erase("r.example") is True
    assert env.read_config() == {"auths": {"other.example": {"auth": b64("e:f")}}, "detachKeys": "ctrl-p"}
    assert auth.credentials("r.example") is None
    assert auth.erase("r.example") is False


def test_erase_through_helper(env):
    env.write_config({"credsStore": "test"})
    auth.save("r.example", "u", "p")
    assert auth.erase("r.example") is True
    assert json.loads(env.helper_db.read_text()) == {}
    assert env.read_config()["auths"] == {}
    assert auth.erase("r.example") is False


def test_erase_without_config_is_false(env):
    assert auth.erase("docker.io") is False
    assert not env.config.exists()


def test_cli_logout_not_logged_in(env):
    r = pn("logout", "never.example:5000")
    assert (r.returncode, r.out, r.err) == (0, "Not logged in to never.example:5000\n", "")
    r = pn("logout")
    assert (r.returncode, r.out) == (0, "Not logged in to https://index.docker.io/v1/\n")


def test_cli_logout_removes(env):
    auth.save("docker.io", "u", "p")
    r = pn("logout")
    assert (r.returncode, r.out) == (0, "Removing login credentials for https://index.docker.io/v1/\n")
    assert env.read_config()["auths"] == {}


def test_cli_login_usage_errors(env):
    r = pn("login", "--password-stdin", "localhost:5000", input=b"pw\n")
    assert (r.returncode, r.err) == (125, "Error: must provide --username with --password-stdin\n")
    r = pn("login", "-u", "u", "-p", "x", "--password-stdin", input=b"pw\n")
    assert (r.returncode, r.err) == (125, "Error: --password and --password-stdin are mutually exclusive\n")
    r = pn("login", "localhost:5000", input=b"")
    assert (r.returncode, r.err) == (125, "Error: cannot perform an interactive login from a non TTY device\n")
    assert not env.config.exists()


@pytest.fixture(params=["basic", "bearer"])
def fake_registry(request):
    """A stdlib HTTP server answering only the /v2/ login handshake, for user
    alice with password wonderland, by Basic auth or via a token server."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    good = "Basic " + b64("alice:wonderland")
    mode = request.param

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code, body=b"{}", headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            given = self.headers.get("Authorization")
            if self.path.startswith("/token"):
                if given == good:
                    return self._send(200, json.dumps({"token": "t0k"}).encode())
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
            if self.path.rstrip("/") != "/v2":
                return self._send(404)
            if given in (good, "Bearer t0k"):
                return self._send(200)
            port = self.server.server_address[1]
            challenge = ('Basic realm="fake"' if mode == "basic"
                         else f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"')
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", challenge)])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cli_login_verifies_then_saves(env, fake_registry):
    r = pn("login", "-u", "alice", "--password-stdin", fake_registry, input=b"wrong\n")
    assert r.returncode == 125 and r.err.startswith("Error: ") and "Login Succeeded" not in r.out
    assert not env.config.exists()
    r = pn("login", "-u", "alice", "--password-stdin", fake_registry, input=b"wonderland\n")
    assert r.returncode == 0, r.err
    assert r.out == "Login Succeeded\n"
    assert "stored unencrypted" in r.err
    assert auth.credentials(fake_registry) == ("alice", "wonderland")
    # with nothing given, docker tries what is stored first
    r = pn("login", fake_registry, input=b"")
    assert (r.returncode, r.out) == (0, "Authenticating with existing credentials...\nLogin Succeeded\n")
    r = pn("logout", f"http://{fake_registry}/v2/")
    assert r.out == f"Removing login credentials for {fake_registry}\n"
    assert auth.credentials(fake_registry) is None


def test_cli_login_password_flag_warns(env, fake_registry):
    r = pn("login", "-u", "alice", "-p", "wonderland", "--tls-verify=false", fake_registry)
    assert r.returncode == 0, r.err
    assert r.err.startswith("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
