"""Registry credentials from docker's and podman's stores, as those tools keep them.

Reading: ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``):
``credHelpers`` for that registry, else ``credsStore``, then the ``auths``
entry; then podman's ``auth.json`` (``$REGISTRY_AUTH_FILE``, else
``$XDG_RUNTIME_DIR/containers/auth.json`` or ``/run/containers/UID/auth.json``,
then ``~/.config/containers/auth.json``). Writing goes to docker's file, as
``docker login`` does, so either tool sees the other's logins.

A helper is the program ``docker-credential-NAME``, run with ``get``,
``store`` or ``erase`` and spoken to in JSON on stdin/stdout. A username of
``<token>`` means the secret is an identity token; it is returned as is.

Only the standard library, and subprocess only once a helper is run:
``pinnace login --help`` and image listing should not pay for it.
"""

from __future__ import annotations

import base64
import json
import os

from pinnace.errors import AuthError

HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
TOKEN_USER = "<token>"


def hostname(server: str) -> str:
    """``server`` without scheme or path, as docker's ConvertToHostname."""
    s = server.strip()
    if "://" in s:
        s = s.split("://", 1)[1]
    return s.split("/", 1)[0]


def normalize_registry(host: str) -> str:
    """The key docker files credentials under: Docker Hub's v1 URL, else ``host[:port]``."""
    h = hostname(host)
    return HUB_KEY if h.lower() in _HUB_HOSTS else h


def registry_host(server: str) -> str:
    """What to dial for ``server``: ``docker.io`` for Docker Hub, else ``host[:port]``."""
    h = hostname(server)
    return "docker.io" if h.lower() in _HUB_HOSTS else h


def _key_of(stored: str) -> str | None:
    """The registry a stored key names, or None for a repository-scoped key
    (podman allows ``quay.io/org``; such a key is not a whole registry's)."""
    s = stored.strip()
    if "://" in s:
        s = s.split("://", 1)[1]
    host, _, path = s.partition("/")
    if path.strip("/") not in ("", "v1", "v2"):
        return None
    return normalize_registry(host) if host else None


def _find(table: dict, key: str):
    """``table``'s entry for registry ``key``: an exact key first, then any
    spelling of the same registry (with scheme, with /v1/ or /v2/)."""
    if key in table:
        return key, table[key]
    for k, v in table.items():
        if isinstance(k, str) and _key_of(k) == key:
            return k, v
    return None, None


def docker_config_path() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    d = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def podman_auth_paths() -> list[str]:
    """Podman's auth files in the order podman reads them."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return [explicit]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    first = (os.path.join(runtime, "containers", "auth.json") if runtime
             else f"/run/containers/{os.geteuid()}/auth.json")
    return [first, os.path.join(os.path.expanduser("~"), ".config", "containers", "auth.json")]


def _load(path: str, required: bool = True) -> dict | None:
    """A JSON config file, None when it does not exist. An unreadable file is
    an error if the user named it (``required``), else skipped."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if not required:
            return None
        raise AuthError(f"{path}: cannot read: {e.strerror or e}") from None
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise AuthError(f"{path}: invalid json: {e}") from None
    if not isinstance(data, dict):
        raise AuthError(f"{path}: not a json object")
    return data


def _table(cfg: dict, name: str, path: str) -> dict:
    t = cfg.get(name)
    if t is None:
        return {}
    if not isinstance(t, dict):
        raise AuthError(f"{path}: {name} is not a json object")
    return t


def _from_entry(entry, where: str) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    if token:
        return TOKEN_USER, token
    encoded = entry.get("auth")
    if encoded:
        try:
            user, sep, secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthError(f"{where}: auth is not base64 of user:password")
        return user, secret
    if entry.get("username") and entry.get("password") is not None:
        return entry["username"], entry["password"]
    return None


def _from_auths(cfg: dict, key: str, path: str) -> tuple[str, str] | None:
    k, entry = _find(_table(cfg, "auths", path), key)
    return _from_entry(entry, f"{path}: auths[{k}]") if k is not None else None


def _helper_for(cfg: dict, key: str, path: str) -> str | None:
    _, name = _find(_table(cfg, "credHelpers", path), key)
    return name or cfg.get("credsStore") or None


class _NotFound(Exception):
    pass


def _run_helper(name: str, action: str, payload: str) -> str:
    import shutil
    import subprocess

    prog = f"docker-credential-{name}"
    exe = shutil.which(prog)
    if exe is None:
        raise AuthError(f"credential helper {prog} not found in PATH (configured in {docker_config_path()})")
    try:
        r = subprocess.run([exe, action], input=payload, capture_output=True, text=True)
    except OSError as e:
        raise AuthError(f"credential helper {prog}: cannot run: {e.strerror or e}") from None
    if r.returncode != 0:
        said = (r.stdout.strip() or r.stderr.strip())
        if "credentials not found" in (r.stdout + r.stderr).lower():
            raise _NotFound(said)
        raise AuthError(f"credential helper {prog} {action}: {said or f'exit status {r.returncode}'}")
    return r.stdout


def _helper_get(name: str, key: str) -> tuple[str, str] | None:
    try:
        out = _run_helper(name, "get", key)
    except _NotFound:
        return None
    try:
        data = json.loads(out)
        user, secret = data.get("Username") or "", data.get("Secret") or ""
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper docker-credential-{name} get: answer is not json") from None
    if not user and not secret:
        return None
    return user, secret


def credentials(registry: str) -> tuple[str, str] | None:
    """``(username, secret)`` stored for ``registry`` (a host, ``host:port``,
    ``docker.io`` or a URL), or None. A username of ``<token>`` means the
    secret is an identity token."""
    key = normalize_registry(registry)
    path = docker_config_path()
    cfg = _load(path, required="DOCKER_CONFIG" in os.environ)
    if cfg:
        helper = _helper_for(cfg, key, path)
        found = _helper_get(helper, key) if helper else None
        if found is None:
            found = _from_auths(cfg, key, path)
        if found is not None:
            return found
    paths = podman_auth_paths()
    for p in paths:
        cfg = _load(p, required=p == os.environ.get("REGISTRY_AUTH_FILE"))
        if cfg:
            found = _from_auths(cfg, key, p)
            if found is not None:
                return found
    return None


def _write(path: str, cfg: dict) -> None:
    """Replace ``path`` atomically with ``cfg``, mode 0600; a symlinked
    config.json (dotfiles) stays a symlink and its target is replaced."""
    import tempfile

    path = os.path.realpath(path)
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        try:
            os.makedirs(d, mode=0o700)
            os.chmod(d, 0o700)
        except OSError as e:
            raise AuthError(f"{d}: cannot create: {e.strerror or e}") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".config.json.")  # mkstemp makes it 0600
    except OSError as e:
        raise AuthError(f"{d}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise AuthError(f"{path}: cannot write: {e.strerror or e}") from None


_SECRET_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")


def save(registry: str, username: str, secret: str) -> str | None:
    """Store credentials as ``docker login`` does: in the configured helper
    (keeping an empty ``auths`` entry, so ``docker logout`` finds it), else
    base64 in config.json. Returns the file's path when the secret went into
    it unencrypted, None when a helper holds it."""
    key = normalize_registry(registry)
    path = docker_config_path()
    cfg = _load(path) or {}
    auths = _table(cfg, "auths", path)
    cfg["auths"] = auths
    entry = auths.get(key)
    entry = {k: v for k, v in entry.items() if k not in _SECRET_FIELDS} if isinstance(entry, dict) else {}
    helper = _helper_for(cfg, key, path)
    if helper:
        try:
            _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": secret}))
        except _NotFound as e:
            raise AuthError(f"credential helper docker-credential-{helper} store: {e}") from None
    elif username == TOKEN_USER:
        entry["identitytoken"] = secret
    else:
        entry["auth"] = base64.b64encode(f"{username}:{secret}".encode()).decode()
    auths[key] = entry
    _write(path, cfg)
    return None if helper else path


def erase(registry: str) -> bool:
    """Forget ``registry``'s credentials as ``docker logout`` does (every
    spelling of it in ``auths``, and the helper's copy). Returns whether
    there was anything to forget."""
    key = normalize_registry(registry)
    path = docker_config_path()
    cfg = _load(path)
    if not cfg:
        return False
    auths = _table(cfg, "auths", path)
    stale = [k for k in auths if k == key or (isinstance(k, str) and _key_of(k) == key)]
    helper = _helper_for(cfg, key, path)
    if stale:
        for k in stale:
            del auths[k]
        _write(path, cfg)
    held = False
    if helper and _helper_get(helper, key) is not None:
        held = True
        try:
            _run_helper(helper, "erase", key)
        except _NotFound:
            pass
    return bool(stale) or held
