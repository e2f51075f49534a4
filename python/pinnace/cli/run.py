"""``pinnace run``: the container runs in the foreground with this terminal's
stdio, its exit code becomes ours and SIGINT/SIGTERM reach it."""

from __future__ import annotations

import sys

from pinnace.cli.flags import RUN_FLAGS


def execute(globals_: dict, values: dict, rest: list[str]) -> int:
    """Run with parsed flags; ``rest`` is IMAGE [CMD...] (or CMD... with --rootfs)."""
    from pinnace import _core

    # first: the kernel gets ready for the container's cgroup join while
    # Python imports and prepares the rest (v1 hosts; see the core's doc)
    _core.cgroup_prewarm()
    from pinnace import images
    from pinnace.config import RunOptions
    from pinnace.containers import Store, default_root, default_runroot
    from pinnace.containers.runner import run
    from pinnace.errors import UsageError

    root = values.pop("root", None) or globals_.get("root") or default_root()
    runroot = values.pop("runroot", None) or globals_.get("runroot") or default_runroot()
    rootfs = values.pop("rootfs", None)
    if rootfs is not None:
        if values.pop("pull", None) not in (None, "missing", "never") or values.pop("platform", None):
            raise UsageError("--pull and --platform do not apply to --rootfs")
        image = images.from_rootfs(rootfs)
        command = rest
    else:
        if not rest:
            raise UsageError('"pinnace run" requires at least 1 argument: IMAGE [COMMAND] [ARG...]')
        image = images.for_run(rest[0], root, values.pop("pull", None) or "missing", values.pop("platform", None),
                               progress_stream=sys.stderr)
        command = rest[1:]
    if command[:1] == ["--"]:
        # `run IMAGE -- CMD`: the separator only marks where the command starts
        command = command[1:]
    entrypoint = values.pop("entrypoint", None)
    if entrypoint is not None:
        values["entrypoint"] = [entrypoint] if entrypoint else []
    interactive = values.get("interactive", False)
    detach = values.pop("detach", False)
    opts = RunOptions(command=command or None, **values)
    if detach:
        from pinnace.containers.detached import start_detached

        cid, _ = start_detached(Store(root, runroot), image, opts, tty=bool(opts.tty))
        sys.stdout.write(cid + "\n")
        return 0
    sys.stdout.flush()
    if opts.tty:
        from pinnace.cli.tty import Terminal

        with Terminal(interactive) as term:
            out = run(Store(root, runroot), image, opts, stdin=term.slave, stdout=term.slave, stderr=term.slave,
                      forward_signals=True, print_warnings=True, on_started=term.started)
        return out.exit_code
    out = run(Store(root, runroot), image, opts, stdin=0 if interactive else _core.DEVNULL,
              stdout=1, stderr=2, forward_signals=True, print_warnings=True)
    return out.exit_code


def make_command():
    """The click command, built from the same flag table as the fast path."""
    import click

    params = [click.Argument(["args"], nargs=-1, required=False)]
    for names, dest, kind, help_ in RUN_FLAGS:
        if kind == "bool":
            params.append(click.Option(list(names) + [dest], is_flag=True, default=None, help=help_))
        else:
            params.append(click.Option(list(names) + [dest], multiple=kind == "many",
                                       default=None, help=help_))

    def callback(args, **values):
        ctx = click.get_current_context()
        values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()
                  if v is not None and v != ()}
        return execute({"root": ctx.obj.root, "runroot": ctx.obj.runroot}, values, list(args))

    return click.Command(
        "run", params=params, callback=callback,
        help="Run a command in a new container.\n\nIMAGE [COMMAND [ARG...]]; `host` is the built-in image.",
        context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
        short_help="Run a command in a new container",
    )

