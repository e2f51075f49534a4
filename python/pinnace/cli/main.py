"""Entry point. ``pinnace run`` takes a fast path that never imports click:
start-up time is product time. Everything else goes through click."""

from __future__ import annotations

import os
import sys


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"Error: {message}\n")
    return code


def _split_globals(argv: list[str]) -> tuple[dict, list[str]] | None:
    from pinnace.cli.flags import GLOBAL_FLAGS

    names = dict(GLOBAL_FLAGS)
    out: dict = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        name, eq, value = argv[i].partition("=")
        if name not in names:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        out[names[name]] = value
        i += 1
    return out, argv[i:]


def _fast_run(argv: list[str]) -> int | None:
    split = _split_globals(argv)
    if split is None or not split[1] or split[1][0] != "run":
        return None
    from pinnace.cli.flags import fast_parse

    parsed = fast_parse(split[1][1:])
    if parsed is None:
        return None
    values, rest = parsed
    from pinnace.cli.run import execute

    return execute(split[0], values, rest)


def main(argv: list[str] | None = None) -> None:
    # as the command itself (not called with arguments from Python): see _exit_now
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("PINNACE_DEBUG") == "1"
    from pinnace.cli.flags import hoist_globals

    argv = hoist_globals(argv)
    from pinnace.errors import PinnaceError

    fast = False
    try:
        code = _fast_run(argv)
        fast = code is not None
        if not fast:
            code = _click_main(argv)
    except PinnaceError as e:
        if debug:
            raise
        code = _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        if debug:
            raise
        code = _fail(f"internal error: {type(e).__name__}: {e} (set PINNACE_DEBUG=1 for a traceback)", 125)
    sys.stdout.flush()
    if fast and as_command:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End a finished ``run`` without the interpreter's teardown, which frees
    every module and object one by one (~2 ms of a ``pinnace run --rm``):
    atexit handlers still run and our streams are flushed; only a thread
    that is not a daemon (which a normal exit would wait for) makes us
    leave the ordinary way."""
    threading = sys.modules.get("threading")
    if threading is not None and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        return
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _click_main(argv: list[str]) -> int:
    import click

    from pinnace.cli.app import cli

    try:
        rv = cli.main(args=argv, prog_name="pinnace", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        # docker: a bad flag is exit 125 with one line
        return _fail(e.format_message(), 125)
    except click.Abort:
        return 130
    return rv if isinstance(rv, int) else 0
