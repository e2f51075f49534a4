"""The exceptions pinnace raises, each with the docker-like exit code a CLI uses.

The Rust core maps its one error type onto these classes (``SpecError``,
``SetupError``, ``ExecError``, ``LayerError``); the Python layers raise the rest.
"""

from __future__ import annotations


class PinnaceError(Exception):
    """Base class. ``exit_code`` follows docker: 125 when pinnace itself failed."""

    exit_code = 125

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(PinnaceError):
    """A bad flag or option value."""


class SpecError(PinnaceError):
    """The runtime spec asks for something malformed or unsupported."""


class SetupError(PinnaceError):
    """Setting up the container failed before the command ran."""


class ExecError(PinnaceError):
    """The command could not be run: 127 not found, 126 not executable."""

    exit_code = 127


class ImageNotFound(PinnaceError):
    """No such image in the store."""


class RegistryError(PinnaceError):
    """A registry refused or failed a request (after retries), or sent something malformed."""


class AuthError(PinnaceError):
    """Credentials were refused, or could not be read or stored (config file, credential helper)."""


class LayerError(PinnaceError):
    """A layer blob is corrupt, hostile or does not match its digest."""


class ContainerNotFound(PinnaceError):
    """No container with that name or id."""


class NetworkNotFound(PinnaceError):
    """No network with that name or id."""


class Conflict(PinnaceError):
    """A name already in use, or an operation the container's state forbids."""


class ContainerError(PinnaceError):
    """A container's command exited non-zero (docker-py's ``ContainerError``):
    ``exit_status``, ``stderr`` (bytes), ``command``, ``image``, ``container``
    (kept containers only, else None)."""

    def __init__(self, container, exit_status: int, command, image: str, stderr: bytes | None):
        self.container, self.exit_status, self.command, self.image = container, exit_status, command, image
        self.stderr = stderr
        err = f": {stderr.decode('utf-8', 'replace').strip()}" if stderr else ""
        super().__init__(f"command {command!r} in image {image!r} returned non-zero exit status {exit_status}{err}",
                         exit_status)


class ExecTimeout(PinnaceError, TimeoutError):
    """An exec ran past its ``timeout`` and was killed; ``output`` holds what
    it wrote until then (bytes, or a (stdout, stderr) pair with ``demux``)."""

    def __init__(self, message: str, output=None):
        super().__init__(message)
        self.output = output


class NotReady(PinnaceError, TimeoutError):
    """A readiness wait (``wait_for_log``, ``wait_for_port``, ...) reached its
    deadline, or the container stopped first; the message says what never
    became ready and what was seen last."""


__all__ = [
    "PinnaceError",
    "UsageError",
    "SpecError",
    "SetupError",
    "ExecError",
    "ImageNotFound",
    "RegistryError",
    "AuthError",
    "LayerError",
    "ContainerNotFound",
    "NetworkNotFound",
    "Conflict",
    "ContainerError",
    "ExecTimeout",
    "NotReady",
]
