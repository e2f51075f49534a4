"""Type stubs for the Rust core (``pinnace._core``)."""

from typing import Callable

PIPE: int
DEVNULL: int
__version__: str

ExitTuple = tuple[int, int | None, bytes | None, bytes | None, bool]

def run(
    spec_json: str,
    stdin: int = ...,
    stdout: int = ...,
    stderr: int = ...,
    *,
    input: bytes | None = None,
    forward_signals: bool = False,
    timeout: float | None = None,
    die_with_parent: bool = True,
    on_spawn: Callable[[int], object] | None = None,
) -> tuple[int, ExitTuple]:
    """Create, start and wait for a container: (pid, (code, signal, out, err, timed_out))."""

class Process:
    pid: int
    def start(self) -> None: ...
    def wait(
        self, *, forward_signals: bool = False, timeout: float | None = None, input: bytes | None = None
    ) -> ExitTuple: ...
    def kill(self, signal: int) -> None: ...

def create(
    spec_json: str, stdin: int = ..., stdout: int = ..., stderr: int = ..., *, die_with_parent: bool = True
) -> Process:
    """Clone the container process and park it before exec."""
