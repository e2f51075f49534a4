"""``pinnace pull``: fetch an image from a registry into the store."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the image reference")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to pull from a multi-platform image")
@click.option("--tls-verify", type=click.BOOL, default=None, metavar="BOOL",
              help="Verify the registry's TLS certificate (false: also allow plain HTTP)")
@click.argument("reference")
@click.pass_obj
def pull(obj, quiet: bool, platform: str | None, tls_verify: bool | None, reference: str) -> int:
    """Download an image and its layers from a registry."""
    from pinnace.images.progress import for_stream
    from pinnace.images.pull import canonical, pull as do_pull

    name = canonical(reference)
    progress = for_stream(sys.stdout, quiet)
    try:
        do_pull(reference, obj.root, platform=platform, tls_verify=tls_verify, progress=progress)
    finally:
        progress.close()
    click.echo(name)
    return 0
