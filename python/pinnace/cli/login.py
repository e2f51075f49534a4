"""``pinnace login`` and ``pinnace logout``, like ``docker login``/``docker logout``."""

from __future__ import annotations

import sys

import click


class _TlsCommand(click.Command):
    """Takes podman's ``--tls-verify=BOOL`` spelling as well as the flag pair."""

    def parse_args(self, ctx, args):
        out = []
        for i, a in enumerate(args):
            if a == "--":
                out += args[i:]
                break
            if a.startswith("--tls-verify="):
                value = click.BOOL.convert(a.partition("=")[2], None, ctx)
                a = "--tls-verify" if value else "--no-tls-verify"
            out.append(a)
        return super().parse_args(ctx, out)


def _stored_login(host: str, server: str, tls_verify: bool | None) -> bool:
    """docker tries what is already stored before asking."""
    from pinnace.errors import AuthError
    from pinnace.images.auth import credentials

    stored = credentials(server)
    if not stored:
        return False
    from pinnace.images.registry import verify_login

    click.echo("Authenticating with existing credentials...")
    try:
        verify_login(host, stored[0], stored[1], tls_verify)
    except AuthError as e:
        click.echo(f"Login did not succeed, error: {e}", err=True)
        return False
    return True


def _ask(what: str, hide: bool) -> str:
    from pinnace.errors import UsageError

    if not sys.stdin.isatty():
        raise UsageError("cannot perform an interactive login from a non TTY device")
    value = click.prompt(what, default="", show_default=False, hide_input=hide).strip()
    if not value:
        raise UsageError(f"{what.lower()} required")
    return value


@click.command(cls=_TlsCommand)
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="Require verified HTTPS (default: yes, except for localhost and insecure_registries)")
@click.argument("server", required=False, default="docker.io")
def login(username: str | None, password: str | None, password_stdin: bool, tls_verify: bool | None,
          server: str) -> int:
    """Log in to a registry (Docker Hub by default)."""
    from pinnace.errors import UsageError
    from pinnace.images.auth import registry_host, save

    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise UsageError("must provide --username with --password-stdin")
        password = sys.stdin.read()
        if password.endswith("\n"):
            password = password[:-1]
        if password.endswith("\r"):
            password = password[:-1]
    elif password is not None:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    host = registry_host(server)
    if username is None and password is None and _stored_login(host, server, tls_verify):
        click.echo("Login Succeeded")
        return 0
    if not username:
        username = _ask("Username", hide=False)
    if not password:
        password = _ask("Password", hide=True)

    from pinnace.images.registry import verify_login

    verify_login(host, username, password, tls_verify)
    plain = save(server, username, password)
    if plain:
        click.echo(f"WARNING! Your credentials are stored unencrypted in '{plain}'.\n"
                   "Configure a credential helper to remove this warning. See\n"
                   "https://docs.docker.com/go/credential-store/\n", err=True)
    click.echo("Login Succeeded")
    return 0


@click.command()
@click.argument("server", required=False)
def logout(server: str | None) -> int:
    """Log out from a registry (Docker Hub by default)."""
    from pinnace.images.auth import HUB_KEY, erase, hostname

    # docker names Docker Hub by its key when no server is given, else as typed
    name = HUB_KEY if server is None else hostname(server)
    if erase(server or "docker.io"):
        click.echo(f"Removing login credentials for {name}")
    else:
        click.echo(f"Not logged in to {name}")
    return 0
