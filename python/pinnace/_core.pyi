"""Type stubs for the Rust core (``pinnace._core``)."""

from os import PathLike
from typing import Callable, TypedDict

PIPE: int
DEVNULL: int
__version__: str

#: (exit_code, signal, stdout, stderr, timed_out, oom_killed, stats, warnings)
ExitTuple = tuple[int, int | None, bytes | None, bytes | None, bool, bool, dict | None, list[str]]

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
    on_spawn: Callable[[int, list[str]], object] | None = None,
    keep_cgroup: bool = False,
) -> tuple[int, ExitTuple]:
    """Create, start and wait for a container: (pid, (code, signal, out, err, timed_out,
    oom_killed, stats, warnings)). ``on_spawn(pid, warnings)`` runs as soon as the process
    exists; with ``keep_cgroup`` the emptied cgroup is left for ``cgroup_destroy``."""

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

def exec_in(
    pid: int,
    process_json: str,
    stdin: int = ...,
    stdout: int = ...,
    stderr: int = ...,
    *,
    input: bytes | None = None,
    timeout: float | None = None,
    forward_signals: bool = False,
    detach: bool = False,
) -> tuple[int, int | None, int | None, bytes | None, bytes | None, bool]:
    """Run an OCI "process" object in the running container whose first process is ``pid``:
    (pid, exit_code, signal, stdout, stderr, timed_out); exit_code None when detached."""

class LayerSummary(TypedDict):
    diff_id: str  #: "sha256:..." of the uncompressed tar stream
    digest: str  #: "sha256:..." of the blob as stored
    size: int  #: bytes of the uncompressed tar stream
    disk: int  #: bytes of regular-file content written
    entries: int  #: tar members handled

def unpack_layer(
    blob: str | PathLike[str],
    dest: str | PathLike[str],
    *,
    expected_diff_id: str | None = None,
    expected_digest: str | None = None,
    max_size: int = 0,
) -> LayerSummary:
    """Unpack a layer blob (gzip, zstd or tar, by magic bytes) into the empty
    directory ``dest`` as an overlay lowerdir, without holding the GIL.

    Raises ``pinnace.errors.LayerError`` when the blob is corrupt, hostile,
    larger than ``max_size`` (> 0) uncompressed, or does not match a given
    digest; ``dest`` is then left for the caller to remove.
    """

def shim_path(dir: str) -> str:
    """The pinnace-shim binary embedded in this module, written to
    ``dir/pinnace-shim-<content hash>`` (0755) the first time; its path."""

def flock(fd: int, *, exclusive: bool = True, block: bool = True) -> bool:
    """flock(2): False when not ``block`` and another holds it; OSError otherwise."""

def spread_subdirs(path: str) -> bool:
    """Flag ``path`` so that its new subdirectories are spread over the block groups
    (ext2/3/4 FS_TOPDIR_FL, chattr +T); False where the filesystem has no such flag."""

def remove_tree(path: str) -> None:
    """Remove a directory tree without holding the GIL; errors are ignored."""

def cgroup_mode() -> str:
    """"v1", "v2" or "hybrid"."""

def cgroup_prewarm() -> None:
    """On a thread, get the kernel ready to move a process into a v1 cgroup
    (a move that changes nothing), so that a container started a few ms
    later does not wait for it; nothing on v2 hosts."""

def cgroup_stats(rel: str) -> dict | None:
    """Usage of cgroup ``rel`` (e.g. "pinnace/ID"); None when it does not exist."""

def cgroup_pids(rel: str) -> list[int]: ...
def cgroup_kill(rel: str) -> None: ...
def cgroup_destroy(rel: str) -> None: ...
def cgroup_children(parent: str) -> list[str]: ...
def cgroup_remove_parent_if_empty(parent: str) -> None: ...

class CgroupV2:
    def __init__(self, root: str, rel: str) -> None: ...
    def create(self) -> None: ...
    def add(self, pid: int) -> None: ...
    def freeze(self, frozen: bool) -> None: ...
    def events(self) -> tuple[bool, bool]: ...
    def pids(self) -> list[int]: ...
    def kill(self) -> None: ...
    def destroy(self) -> None: ...

# ---- networking (rtnetlink; as root). Bad names, addresses or MTUs raise
# SpecError, a name already taken Conflict, a failed step SetupError naming it.

def net_namespace() -> int:
    """A new network namespace with lo up, as a close-on-exec descriptor the
    caller owns (the namespace lives while it, or a process in it, does)."""

def net_bridge(name: str, addrs: list[str] = ..., mtu: int = 0) -> bool:
    """Make bridge ``name`` unless it exists (True if this call made it), put
    each address ("10.88.0.1/16") on it and set it up. Safe to race."""

def net_attach(
    netns_fd: int,
    bridge: str,
    host_if: str,
    ifname: str,
    addrs: list[str] = ...,
    gateway: str | None = None,
    mtu: int = 0,
) -> str:
    """Join the network namespace ``netns_fd`` to ``bridge`` with a veth pair:
    ``host_if`` here on the bridge, ``ifname`` there with ``addrs``, up, and a
    default route via ``gateway`` unless one exists. Returns the MAC address
    of ``ifname``; on failure nothing is left behind."""

def net_detach(netns_fd: int, ifname: str) -> bool:
    """Delete ``ifname`` in that namespace (its veth peer goes too); False if absent."""

def net_link_delete(name: str) -> bool:
    """Delete link ``name`` in the caller's network namespace; False if absent."""

def net_link_exists(name: str) -> bool: ...
