"""``pinnace exec``: run a command in a running container."""

from __future__ import annotations

import sys

import click


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal")
@click.option("-d", "--detach", is_flag=True, help="Start the command and return at once")
@click.option("-e", "--env", multiple=True, help="Set an environment variable (K=V, or K to copy it from here)")
@click.option("--env-file", multiple=True, help="Read environment variables from a file")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container")
@click.option("-u", "--user", default=None, help="User to run as: UID[:GID] or NAME[:GROUP]")
@click.option("--privileged", is_flag=True, help="Keep every capability")
@click.argument("container")
@click.argument("command", nargs=-1, required=True)
@click.pass_obj
def exec_(obj, interactive, tty, detach, env, env_file, workdir, user, privileged, container, command) -> int:
    """Run a command in a running container, in all its namespaces and its cgroup."""
    from pinnace import _core
    from pinnace.config import read_env_file
    from pinnace.containers.exec import exec_in
    from pinnace.errors import UsageError

    if tty and detach:
        raise UsageError("exec -t and -d together are not supported")
    envs = [e for f in env_file for e in read_env_file(f)] + list(env)
    cmd = list(command)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    sys.stdout.flush()
    if tty:
        from pinnace.cli.tty import Terminal

        with Terminal(interactive) as term:
            r = exec_in(obj.store(), container, cmd, env=envs, workdir=workdir, user=user, privileged=privileged,
                        stdin=term.slave, stdout=term.slave, stderr=term.slave, forward_signals=True, tty=True)
        return r.exit_code
    r = exec_in(obj.store(), container, cmd, env=envs, workdir=workdir, user=user, privileged=privileged,
                stdin=0 if interactive and not detach else _core.DEVNULL,
                stdout=_core.DEVNULL if detach else 1, stderr=_core.DEVNULL if detach else 2,
                forward_signals=not detach, detach=detach)
    return 0 if detach else r.exit_code
