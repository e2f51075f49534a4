"""A client for the OCI distribution API (registry v2), over httpx.

What it deals with, so the puller need not: plain HTTP for registries on
loopback and HTTPS elsewhere (unverified, then plain, only when the user says
a registry is insecure); bearer-token and basic auth answering the registry's
challenges, with tokens cached per scope; redirects followed by hand so that
``Authorization`` never reaches another host; retries with backoff for
transport errors and 5xx, and ``Retry-After`` for 429; resumable blob
downloads that hash while they stream.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import sys
import threading
import time
from urllib.parse import urlencode, urljoin, urlsplit

# httpx's package imports its command-line tool, which imports rich and click
# (~40 ms of every pull); None in sys.modules is Python's documented way to
# make an import fail, and httpx then leaves its CLI out.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

from pinnace.errors import AuthError, ImageNotFound, LayerError, RegistryError
from pinnace.images.reference import DOCKER_HUB

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

MAX_MANIFEST = 4 << 20
CHUNK = 1 << 20
RETRIES = 6
USER_AGENT = "pinnace/0.1.0"


def settings() -> dict:
    """pinnace's own config file (``$PINNACE_CONFIG``, default /etc/pinnace/config.toml)."""
    path = os.environ.get("PINNACE_CONFIG", "/etc/pinnace/config.toml")
    try:
        with open(path, "rb") as f:
            import tomllib

            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RegistryError(f"config file {path}: {e}") from None


def is_loopback(registry: str) -> bool:
    host = urlsplit("//" + registry).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_host(registry: str) -> str:
    return "registry-1.docker.io" if registry == DOCKER_HUB else registry


def _retry_after(resp: httpx.Response, attempt: int) -> float:
    value = resp.headers.get("retry-after", "")
    if value.isdigit():
        return min(float(value), 120.0)
    if value:
        import email.utils

        try:
            return max(0.0, min(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 120.0))
        except (TypeError, ValueError):
            pass
    return min(0.5 * 2 ** attempt, 10.0)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            end = i + 1
            val = []
            while end < n and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < n:
                    end += 1
                val.append(rest[end])
                end += 1
            params[key] = "".join(val)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


def _error_detail(resp: httpx.Response) -> str:
    """The registry's own words from an errors body, when it sent one."""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            e = errors[0]
            return f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
    except Exception:  # noqa: BLE001 - any body at all is acceptable here
        pass
    return f"HTTP {resp.status_code}"


class _NoHash:
    def update(self, data: bytes) -> None:
        pass


def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    """A whole (small) body; a registry sending more than ``limit`` is refused."""
    try:
        body = bytearray()
        for chunk in resp.iter_raw():
            body += chunk
            if len(body) > limit:
                raise RegistryError(f"{what} larger than {limit} bytes")
    except httpx.HTTPError as e:
        raise RegistryError(f"{what}: {e}") from None
    finally:
        resp.close()
    return bytes(body)


class Client:
    """One registry host. Thread-safe: layers download on several threads."""

    def __init__(self, registry: str, *, tls_verify: bool | None = None,
                 credentials: tuple[str, str] | None = None, use_stored_credentials: bool = True):
        self.registry = registry
        host = _api_host(registry)
        insecure = tls_verify is False or registry in (settings().get("insecure_registries") or ())
        if is_loopback(registry):
            self._bases = [f"http://{host}"]
        elif insecure:
            self._bases = [f"https://{host}", f"http://{host}"]
        else:
            self._bases = [f"https://{host}"]
        self._base: str | None = self._bases[0] if len(self._bases) == 1 else None
        plain_only = all(b.startswith("http://") for b in self._bases)
        self._http = httpx.Client(
            # loading a CA bundle costs ~90 ms: only when TLS can happen
            verify=False if plain_only else not insecure, follow_redirects=False, headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(60.0, connect=15.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        self._creds = credentials
        self._creds_loaded = credentials is not None or not use_stored_credentials
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False  # the registry asked for Basic auth

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- auth ---------------------------------------------------------------

    def _credentials(self) -> tuple[str, str] | None:
        if not self._creds_loaded:
            from pinnace.images import auth

            self._creds = auth.credentials(self.registry)
            self._creds_loaded = True
        return self._creds

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            tok = self._tokens.get(scope)
            if tok and tok[1] > time.monotonic():
                return f"Bearer {tok[0]}"
            if self._basic:
                creds = self._credentials()
                if creds:
                    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        return None

    def _answer_challenge(self, resp: httpx.Response, scope: str) -> None:
        header = resp.headers.get("www-authenticate", "")
        scheme, params = _parse_challenge(header)
        if scheme == "basic":
            if not self._credentials():
                raise AuthError(f"{self.registry}: authentication required (no credentials; run pinnace login {self.registry})")
            with self._lock:
                if self._basic:
                    raise AuthError(f"{self.registry}: unauthorized: incorrect username or password")
                self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise AuthError(f"{self.registry}: unauthorized ({_error_detail(resp)})")
        token_scope = params.get("scope") or scope
        token, expires = self._fetch_token(params["realm"], params.get("service"), token_scope)
        with self._lock:
            self._tokens[scope] = (token, expires)
            if token_scope != scope:
                self._tokens[token_scope] = (token, expires)

    def _fetch_token(self, realm: str, service: str | None, scope: str | None,
                     account_check: bool = False) -> tuple[str, float]:
        creds = self._credentials()
        q = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        try:
            if creds and creds[0] == "<token>":
                # an identity token from a previous login: OAuth2 refresh grant
                r = self._http.post(realm, data={**q, "grant_type": "refresh_token", "refresh_token": creds[1],
                                                 "client_id": "pinnace"})
            else:
                if creds and account_check:
                    q["account"] = creds[0]
                url = realm + ("&" if "?" in realm else "?") + urlencode(q) if q else realm
                r = self._http.get(url, auth=(creds[0], creds[1]) if creds else None)
        except httpx.HTTPError as e:
            raise RegistryError(f"{self.registry}: token server {realm}: {e}") from None
        if r.status_code in (401, 403):
            raise AuthError(f"{self.registry}: unauthorized: incorrect username or password" if creds
                            else f"{self.registry}: authentication required (run pinnace login {self.registry})")
        if r.status_code != 200:
            raise RegistryError(f"{self.registry}: token server {realm}: {_error_detail(r)}")
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            raise RegistryError(f"{self.registry}: token server {realm} answered without a token")
        # a little early, so a token never expires between check and use
        return token, time.monotonic() + max(expires_in - 5, 1.0)

    # -- transport ----------------------------------------------------------

    def _pick_base(self) -> str:
        if self._base is not None:
            return self._base
        with self._lock:
            if self._base is not None:
                return self._base
            last: Exception | None = None
            for base in self._bases:
                try:
                    self._http.get(base + "/v2/")
                    self._base = base
                    return base
                except httpx.TransportError as e:
                    last = e
            raise RegistryError(f"cannot reach registry {self.registry}: {last}")

    def send(self, method: str, path: str, scope: str, *, headers: dict | None = None,
             stream: bool = False, not_found: str | None = None) -> httpx.Response:
        """One request with auth, redirects and retries handled. A streamed
        response must be closed by the caller."""
        url = self._pick_base() + path
        origin = urlsplit(url).netloc
        attempt = auth_rounds = redirects = 0
        while True:
            hdrs = dict(headers or {})
            same_host = urlsplit(url).netloc == origin
            if same_host:
                auth = self._auth_header(scope)
                if auth:
                    hdrs["Authorization"] = auth
            try:
                req = self._http.build_request(method, url, headers=hdrs)
                resp = self._http.send(req, stream=stream)
            except httpx.TransportError as e:
                attempt += 1
                connect = isinstance(e, httpx.ConnectError)
                # a refused connection or an unknown host is not worth long retries
                if attempt >= (2 if connect else RETRIES):
                    hint = (f"if you trust it, use --tls-verify=false or list {self.registry} under "
                            "insecure_registries in /etc/pinnace/config.toml")
                    if connect and "CERTIFICATE_VERIFY_FAILED" in str(e):
                        raise RegistryError(f"{self.registry}: TLS certificate not trusted ({e}); {hint}") from None
                    if connect and "WRONG_VERSION_NUMBER" in str(e):
                        raise RegistryError(f"{self.registry}: the registry does not speak HTTPS, and only "
                                            f"registries on loopback are used over plain HTTP; {hint}") from None
                    if connect:
                        raise RegistryError(f"cannot reach registry {urlsplit(url).netloc}: {e}") from None
                    raise RegistryError(f"{self.registry}: {method} {path}: {e}") from None
                time.sleep(min(0.25 * 2 ** attempt, 5.0))
                continue
            code = resp.status_code
            if code == 401 and same_host and auth_rounds < 2:
                auth_rounds += 1
                if stream:
                    resp.read()
                resp.close()
                self._answer_challenge(resp, scope)
                continue
            if code in (301, 302, 303, 307, 308) and "location" in resp.headers and redirects < 10:
                redirects += 1
                resp.close()
                url = urljoin(url, resp.headers["location"])
                if code == 303:
                    method = "GET"
                continue
            if code == 429 or code in (500, 502, 503, 504):
                attempt += 1
                if attempt < RETRIES:
                    resp.close()
                    time.sleep(_retry_after(resp, attempt))
                    continue
            if code < 400:
                return resp
            if stream:
                resp.read()
            resp.close()
            if code == 401:
                raise AuthError(f"{self.registry}: unauthorized: {_error_detail(resp)}")
            if code == 403:
                raise AuthError(f"{self.registry}: denied: {_error_detail(resp)}")
            if code == 404 and not_found:
                raise ImageNotFound(not_found)
            if code == 429:
                raise RegistryError(f"{self.registry}: too many requests (429), still after {RETRIES} tries")
            raise RegistryError(f"{self.registry}: {method} {path}: {_error_detail(resp)}")

    # -- API ----------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` with the auth handshake: the login check."""
        resp = self.send("GET", "/v2/", "")
        resp.close()

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, without downloading the manifest (HEAD
        does not count against Docker Hub's pull limit). None if not told."""
        try:
            resp = self.send("HEAD", f"/v2/{repository}/manifests/{reference}", f"repository:{repository}:pull",
                             headers={"Accept": ACCEPT})
        except (ImageNotFound, RegistryError):
            return None
        digest = resp.headers.get("docker-content-digest")
        return digest if digest and digest.startswith("sha256:") else None

    def get_manifest(self, repository: str, reference: str, what: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; the digest is
        over the exact bytes received and must match a digest reference."""
        resp = self.send("GET", f"/v2/{repository}/manifests/{reference}", f"repository:{repository}:pull",
                         headers={"Accept": ACCEPT}, stream=True,
                         not_found=f"{what}: manifest unknown (no such repository or tag in {self.registry})")
        data = _read_limited(resp, MAX_MANIFEST, f"{what}: manifest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: manifest digest mismatch: asked for {reference}, got {digest}")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        return data, media_type, digest

    def get_blob_bytes(self, repository: str, digest: str, what: str, limit: int = MAX_MANIFEST) -> bytes:
        """A small blob (an image config), verified against its digest."""
        resp = self.send("GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", stream=True,
                         not_found=f"{what}: blob {digest} unknown to {self.registry}")
        body = _read_limited(resp, limit, f"{what}: blob {digest}")
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != digest:
            raise LayerError(f"blob {digest}: digest mismatch (received content hashes to {got})")
        return bytes(body)

    def download_blob(self, repository: str, digest: str, partial: str, size: int | None,
                      progress=None, sink=None, verify: bool = True) -> None:
        """Stream a blob into ``partial`` (appending to what an earlier,
        interrupted download left there, with Range), hashing as it goes.
        Returns once the file holds exactly the blob; raises otherwise.

        ``sink``, when given, receives every byte of the blob once, in order
        (what the file already held first), as it arrives: the unpacker reads
        the layer while it downloads. Should the registry ignore a Range and
        resend from the start, ``sink.restart()`` is called and the sink gets
        nothing more. ``verify=False`` leaves the digest check to whoever
        reads the sink (the unpacker hashes the whole stream itself)."""
        scope = f"repository:{repository}:pull"
        new_hash = hashlib.sha256 if verify else _NoHash
        h = new_hash()
        have = 0
        try:
            with open(partial, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    have += len(chunk)
                    if sink is not None and (size is None or have <= size):
                        sink.write(chunk)
        except FileNotFoundError:
            pass
        if size is not None and have > size:
            h, have = new_hash(), 0
            if sink is not None:
                sink.restart()
                sink = None
        failures = 0
        while True:
            headers = {"Range": f"bytes={have}-"} if have else {}
            if size is not None and have == size:
                break
            resp = self.send("GET", f"/v2/{repository}/blobs/{digest}", scope, headers=headers, stream=True,
                             not_found=f"blob {digest} unknown to {self.registry}")
            try:
                if have and resp.status_code != 206:
                    # the server ignored the range: start over
                    h, have = new_hash(), 0
                    if sink is not None:
                        sink.restart()
                        sink = None
                mode = "ab" if have else "wb"
                with open(partial, mode) as out:
                    if progress:
                        progress(have)
                    # as the bytes arrive: a connection that drops loses nothing
                    # that was received (the next round resumes after it)
                    for chunk in resp.iter_raw():
                        if size is not None and have + len(chunk) > size:
                            raise LayerError(f"blob {digest}: registry sent more than the {size} bytes the manifest says")
                        out.write(chunk)
                        h.update(chunk)
                        have += len(chunk)
                        if sink is not None:
                            sink.write(chunk)
                        if progress:
                            progress(have)
                break
            except httpx.TransportError as e:
                failures += 1
                if failures >= RETRIES:
                    raise RegistryError(f"blob {digest}: download failed: {e}") from None
                # the next round resumes from what reached the file (which is
                # also exactly what reached the sink)
                time.sleep(min(0.25 * 2 ** failures, 5.0))
                have = os.path.getsize(partial)
                h = new_hash()
                with open(partial, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
            finally:
                resp.close()
        got = "sha256:" + h.hexdigest() if verify else digest
        if got != digest or (size is not None and have != size):
            os.unlink(partial)
            raise LayerError(f"blob {digest}: digest mismatch (received {have} bytes hashing to {got})")


def verify_login(server: str, username: str, password: str, tls_verify: bool | None = None) -> None:
    """Check credentials the way ``docker login`` does: the registry's /v2/
    handshake, asking the token server for a token as that account."""
    with Client(server, tls_verify=tls_verify, credentials=(username, password)) as c:
        base = c._pick_base()
        try:
            r = c._http.get(base + "/v2/")
        except httpx.HTTPError as e:
            raise RegistryError(f"{server}: cannot reach the registry: {e}") from None
        if r.status_code == 200:
            return
        if r.status_code != 401:
            raise RegistryError(f"{server}: /v2/: {_error_detail(r)}")
        scheme, params = _parse_challenge(r.headers.get("www-authenticate", ""))
        if scheme == "bearer" and "realm" in params:
            c._fetch_token(params["realm"], params.get("service"), None, account_check=True)
            return
        if scheme == "basic":
            r = c._http.get(base + "/v2/", auth=(username, password))
            if r.status_code == 200:
                return
            raise AuthError(f"{server}: unauthorized: incorrect username or password")
        raise AuthError(f"{server}: unauthorized ({_error_detail(r)})")
