"""Image references with docker's rules.

``busybox`` is ``docker.io/library/busybox:latest``; ``user/app`` is
``docker.io/user/app:latest``; a first component holding a ``.`` or a ``:``
or equal to ``localhost`` names a registry host; ``index.docker.io`` is
``docker.io``; ``name@sha256:<hex>`` pins a digest.
"""

from __future__ import annotations

import re

from pinnace.errors import UsageError

DOCKER_HUB = "docker.io"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                   r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z")


class Reference:
    """A parsed reference: ``registry``, ``repository``, ``tag`` and/or ``digest``."""

    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry: str, repository: str, tag: str | None, digest: str | None):
        self.registry, self.repository, self.tag, self.digest = registry, repository, tag, digest

    @property
    def name(self) -> str:
        """``registry/repository``: what tags and digests hang on."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar(self) -> str:
        """The short form docker prints (``busybox:latest``, ``user/app:1``)."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/")
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def tagged(self) -> str | None:
        return f"{self.name}:{self.tag}" if self.tag else None

    @property
    def digested(self) -> str | None:
        return f"{self.name}@{self.digest}" if self.digest else None

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"


def parse(ref: str) -> Reference:
    """Parse a reference the way docker does; a bad one raises UsageError."""
    def bad(why: str) -> UsageError:
        return UsageError(f"invalid reference format: {why}: {ref!r}")

    if not ref or ref != ref.strip():
        raise bad("empty or padded with spaces")
    rest, digest = ref, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise bad("digest must be sha256: and 64 hex digits")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise bad("invalid tag")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST.match(first):
            raise bad("invalid registry host")
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if not path:
        raise bad("no repository name")
    parts = path.split("/")
    for p in parts:
        if p != p.lower() and _COMPONENT.match(p.lower()):
            raise bad("repository name must be lowercase")
        if not _COMPONENT.match(p):
            raise bad("invalid repository name")
    if len(path) > 255:
        raise bad("repository name longer than 255 characters")
    if registry == DOCKER_HUB and len(parts) == 1:
        path = "library/" + path
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)
