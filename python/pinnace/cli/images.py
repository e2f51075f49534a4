"""``pinnace images``, ``pinnace rmi`` and the ``pinnace image`` group."""

from __future__ import annotations

import json

import click


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return str(n)


def _ago(ts: str) -> str:
    from pinnace.cli.ps import _ago as ago

    return ago(ts) if ts else "N/A"


def _list(obj, fmt: str, quiet: bool, no_trunc: bool, all_: bool = False) -> int:
    from pinnace.containers.images import usage
    from pinnace.images import list_images

    by_image, _ = usage(obj.store())
    infos = list_images(obj.root, {k: len(v) for k, v in by_image.items()})
    if fmt == "json":
        click.echo(json.dumps([{
            "Id": i.id, "RepoTags": i.tags, "RepoDigests": i.digests, "Created": i.created, "Size": i.size,
            "SharedSize": i.shared_size, "UniqueSize": i.size - i.shared_size, "Containers": i.containers,
            "Labels": i.config.get("Labels") or {}} for i in infos], indent=2))
        return 0
    if quiet:
        seen = set()
        for i in infos:
            if i.id not in seen:
                seen.add(i.id)
                click.echo(i.id if no_trunc else i.id[7:19])
        return 0
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE")]
    for i in infos:
        iid = i.id if no_trunc else i.id[7:19]
        names = [(t.rpartition(":")[0], t.rpartition(":")[2]) for t in i.tags] or \
                [(d.partition("@")[0], "<none>") for d in i.digests[:1]] or [("<none>", "<none>")]
        for repo, tag in names:
            table.append((repo, tag, iid, _ago(i.created), _human(i.size), _human(i.shared_size)))
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    for row in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


_list_options = [
    click.option("-q", "--quiet", is_flag=True, help="Only show image IDs"),
    click.option("--no-trunc", is_flag=True, help="Don't truncate output"),
    click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format"),
    click.option("-a", "--all", "all_", is_flag=True, help="Show all images (there are no intermediate ones)"),
]


def _with_list_options(f):
    for opt in reversed(_list_options):
        f = opt(f)
    return f


@click.command()
@_with_list_options
@click.pass_obj
def images(obj, quiet: bool, no_trunc: bool, fmt: str, all_: bool) -> int:
    """List images."""
    return _list(obj, fmt, quiet, no_trunc)


def _remove(obj, names: tuple[str, ...], force: bool) -> int:
    from pinnace.containers.images import remove_image
    from pinnace.errors import PinnaceError

    store = obj.store()
    code = 0
    for name in names:
        try:
            for done in remove_image(store, name, force):
                (what, ref), = done.items()
                click.echo(f"{what}: {ref}")
        except PinnaceError as e:
            click.echo(f"Error: {e}", err=True)
            code = 1
    return code


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even when containers use the image")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rmi(obj, force: bool, names: tuple[str, ...]) -> int:
    """Remove one or more images."""
    return _remove(obj, names, force)


@click.group()
def image() -> None:
    """Manage images."""


@image.command("ls")
@_with_list_options
@click.pass_obj
def image_ls(obj, quiet: bool, no_trunc: bool, fmt: str, all_: bool) -> int:
    """List images."""
    return _list(obj, fmt, quiet, no_trunc)


@image.command("rm")
@click.option("-f", "--force", is_flag=True, help="Remove even when containers use the image")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def image_rm(obj, force: bool, names: tuple[str, ...]) -> int:
    """Remove one or more images."""
    return _remove(obj, names, force)


def inspect_image(istore, rec: dict) -> dict:
    """An image record shaped as ``docker image inspect`` shows one."""
    tags, digests = istore.names_of(rec["Id"])
    return {
        "Id": rec["Id"], "RepoTags": tags, "RepoDigests": digests, "Created": rec.get("Created", ""),
        "Author": rec.get("Author", ""), "Architecture": rec.get("Architecture", ""), "Os": rec.get("Os", ""),
        **({"Variant": rec["Variant"]} if rec.get("Variant") else {}),
        "Size": rec.get("Size", 0), "Config": rec.get("Config") or {},
        "RootFS": rec["RootFS"],
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(
            istore.layer_dir(d) for d in reversed(rec["RootFS"]["Layers"]))}},
        "Metadata": {"ManifestDigest": rec.get("ManifestDigest")},
    }


@image.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def image_inspect(obj, names: tuple[str, ...]) -> int:
    """Show an image's details as JSON."""
    from pinnace.errors import ImageNotFound
    from pinnace.images.store import ImageStore

    istore = ImageStore(obj.root)
    out, missing = [], []
    for name in names:
        rec = istore.lookup(name)
        if rec is None:
            missing.append(name)
            continue
        out.append(inspect_image(istore, rec))
    click.echo(json.dumps(out, indent=4))
    if missing:
        raise ImageNotFound(f"no such image: {missing[0]}")
    return 0


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images no container uses, not just untagged ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (there is no prompt)")
@click.pass_obj
def image_prune(obj, all_: bool, force: bool) -> int:
    """Remove unused images (untagged ones; with -a every image no container uses)."""
    from pinnace.containers.images import prune_images

    deleted, layers = prune_images(obj.store(), all_)
    if deleted:
        click.echo("Deleted Images:")
        for d in deleted:
            click.echo(f"deleted: {d}")
    click.echo(f"Total reclaimed images: {len(deleted)} ({len(layers)} layers)")
    return 0


@image.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image reference")
@click.option("--platform", default=None, help="Platform to pull from a multi-platform image")
@click.option("--tls-verify", type=click.BOOL, default=None, help="Verify the registry's TLS certificate")
@click.argument("reference")
@click.pass_context
def image_pull(ctx, quiet, platform, tls_verify, reference) -> int:
    """Download an image from a registry."""
    from pinnace.cli.pull import pull

    return ctx.invoke(pull, quiet=quiet, platform=platform, tls_verify=tls_verify, reference=reference)
