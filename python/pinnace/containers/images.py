"""Images as containers hold them: which images and layers are in use, and
removing images (``rmi``, ``image prune``) with docker's rules about that
use. Shared by the CLI and the Python API."""

from __future__ import annotations

import os

from pinnace.errors import Conflict, ImageNotFound


def usage(store) -> tuple[dict[str, list[str]], set[str]]:
    """Containers per image id, and every layer directory a container stacks."""
    by_image: dict[str, list[str]] = {}
    layers: set[str] = set()
    for cid in store.ids():
        st = store.state(cid) or {}
        if st.get("ImageID"):
            by_image.setdefault(st["ImageID"], []).append(cid)
        lower = ((st.get("GraphDriver") or {}).get("Data") or {}).get("LowerDir") or ""
        layers.update(os.path.basename(p) for p in lower.split(":") if p)
    return by_image, layers


def remove_image(store, name: str, force: bool = False) -> list[dict[str, str]]:
    """Remove the image ``name`` (a reference, id or unique id prefix) as
    ``docker rmi`` does: one of several tags only untags; an image a
    container uses, or one named by id that has several tags, is refused
    (Conflict) unless ``force``. Layers another image or a container uses
    stay. Returns what was done as docker's API says it:
    ``[{"Untagged": ref}, ..., {"Deleted": id}, ...]``."""
    from pinnace.images.store import ImageStore

    istore = ImageStore(store.root)
    rec = istore.lookup(name)
    if rec is None:
        raise ImageNotFound(f"no such image: {name}")
    image_id = rec["Id"]
    tags, digests = istore.names_of(image_id)
    by_ref = name not in (image_id, image_id[7:]) and not image_id[7:].startswith(name.removeprefix("sha256:"))
    if by_ref and len(tags) > 1:
        # docker: removing one of several tags only untags
        _, removed = istore.untag(name)
        return [{"Untagged": r} for r in removed]
    by_image, in_use = usage(store)
    users = by_image.get(image_id, [])
    if users and not force:
        raise Conflict(f"unable to remove image {name} (must be forced): image is in use by container "
                       f"{users[0][:12]}")
    if not by_ref and len(tags) > 1 and not force:
        raise Conflict(f"unable to delete {image_id[7:19]} (must be forced): image is referenced in "
                       "multiple repositories")
    done = [{"Untagged": t} for t in tags + digests]
    done += [{"Deleted": d} for d in istore.delete_image(image_id, in_use)]
    return done + [{"Deleted": image_id}]


def prune_images(store, all_: bool) -> tuple[list[str], list[str]]:
    """Remove dangling images (all unused ones with ``all_``), then every layer
    and leftover of an interrupted pull nothing needs. (image ids, layer ids)"""
    from pinnace.images.store import ImageStore

    istore = ImageStore(store.root)
    by_image, in_use = usage(store)
    refs = istore.refs()
    deleted, layers = [], []
    for rec in istore.records_all():
        tags, _ = istore.names_of(rec["Id"], refs)
        if rec["Id"] in by_image or (tags and not all_):
            continue
        deleted.append(rec["Id"])
        layers += istore.delete_image(rec["Id"], in_use)
    return deleted, layers + istore.collect_layers(in_use)


__all__ = ["usage", "remove_image", "prune_images"]
