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
]
