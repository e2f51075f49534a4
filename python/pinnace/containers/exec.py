"""Run a command in a running container (``docker exec``).

The container's record gives its first process, environment, user and
working directory; the core joins that process's namespaces and cgroups.
Users and groups are looked up in the container's own /etc (through
/proc/PID/root), as they are now, not as the image had them.
"""

from __future__ import annotations

from pinnace import _core
from pinnace._jsonenc import dumps
from pinnace.config import capabilities, merge_env, parse_env, parse_user, supplementary_groups
from pinnace.containers import Store
from pinnace.errors import Conflict, SetupError, UsageError


class ExecResult:
    __slots__ = ("pid", "exit_code", "signal", "stdout", "stderr", "timed_out")

    def __init__(self, *values):
        for k, v in zip(self.__slots__, values):
            setattr(self, k, v)


def process_spec(state: dict, cmd: list[str], env=(), workdir: str | None = None, user: str | None = None,
                 privileged: bool = False, tty: bool = False) -> dict:
    """The OCI "process" object for ``cmd`` in the container ``state`` records."""
    if not cmd:
        raise UsageError("no command specified")
    config = state.get("Config") or {}
    host = state.get("HostConfig") or {}
    root = [f"/proc/{state['State']['Pid']}/root"]
    who = user if user is not None else config.get("User") or ""
    ids = parse_user(who, root) if who else {"uid": 0, "gid": 0}
    cwd = workdir or config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise UsageError(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    process = {
        "terminal": tty,
        "args": list(cmd),
        "env": merge_env(config.get("Env") or [], ["TERM=xterm"] if tty else [], parse_env(env)),
        "cwd": cwd,
        "user": {**ids, "additionalGids": supplementary_groups(ids["uid"], ids["gid"], [], root)},
        "noNewPrivileges": True,
    }
    # privileged: every capability the caller has (no set given keeps them),
    # which is all of them unless the host itself withholds some
    if not privileged:
        caps = capabilities(host.get("CapAdd") or [], host.get("CapDrop") or [])
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    return process


def exec_in(
    store: Store,
    container: str,
    cmd: list[str],
    *,
    env=(),
    workdir: str | None = None,
    user: str | None = None,
    privileged: bool = False,
    stdin: int = _core.DEVNULL,
    stdout: int = _core.PIPE,
    stderr: int = _core.PIPE,
    input: bytes | None = None,
    timeout: float | None = None,
    forward_signals: bool = False,
    detach: bool = False,
    tty: bool = False,
) -> ExecResult:
    """Run ``cmd`` in the running container ``container`` (a name or id).

    ``env`` items are ``K=V`` (or ``K``, taking the caller's value) over the
    container's environment; ``user`` is ``uid[:gid]`` or ``name[:group]``
    (default: the container's). With ``detach`` it returns once the command
    has started; ``exit_code`` is then None. Raises ``ContainerNotFound``,
    ``Conflict`` (not running), ``ExecError`` (126/127) or ``SetupError``.
    """
    cid = store.resolve(container)
    state = store.state(cid) or {}
    pid = (state.get("State") or {}).get("Pid") or 0
    if not state.get("State", {}).get("Running") or pid <= 0:
        raise Conflict(f"container {cid[:12]} is not running")
    process = process_spec(state, cmd, env, workdir, user, privileged, tty)
    try:
        r = _core.exec_in(pid, dumps(process), stdin, stdout, stderr, input=input, timeout=timeout,
                          forward_signals=forward_signals, detach=detach)
    except SetupError:
        # it stopped between the record saying running and the join
        if not (store.state(cid) or {}).get("State", {}).get("Running") or not _alive(pid):
            raise Conflict(f"container {cid[:12]} is not running") from None
        raise
    return ExecResult(*r)


def _alive(pid: int) -> bool:
    import os

    return os.path.exists(f"/proc/{pid}")


__all__ = ["ExecResult", "exec_in", "process_spec"]
