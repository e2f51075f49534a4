"""Which containers ``ps`` (and the Python API's listings) show: docker's
``--filter`` rules over the store's records."""

from __future__ import annotations

from collections.abc import Iterable

from pinnace.containers import Store


def record_filter(spec: str):
    """``key=value`` -> (key, predicate on a record), with docker's meanings."""
    from pinnace.errors import UsageError

    key, eq, value = spec.partition("=")
    if not eq and key != "label":
        raise UsageError(f"invalid filter {spec!r}: expected KEY=VALUE")
    if key == "name":
        return key, lambda r: value in r.get("Name", "").lstrip("/")
    if key == "id":
        return key, lambda r: r.get("Id", "").startswith(value)
    if key == "status":
        if value not in ("created", "running", "exited", "paused", "restarting", "removing", "dead"):
            raise UsageError(f"invalid filter 'status={value}'")
        return key, lambda r: r.get("State", {}).get("Status") == value
    if key == "label":
        lk, has_value, lv = value.partition("=")
        return key, lambda r: lk in ((r.get("Config") or {}).get("Labels") or {}) and (
            not has_value or r["Config"]["Labels"][lk] == lv)
    if key == "ancestor":
        return key, lambda r: value in (r.get("Image", ""), r.get("ImageID", "")) or (
            value.startswith("sha256:") is False and r.get("ImageID", "").removeprefix("sha256:").startswith(value))
    raise UsageError(f"invalid filter {key!r}: use name, id, status, label or ancestor")


def select(store: Store, all_: bool, filters: Iterable[str] = ()) -> list[dict]:
    """The records of running containers (``all_``: of every container)
    that pass ``filters`` (``KEY=VALUE`` strings), newest first."""
    filters = list(filters)
    rows = [st for st in (store.state(i) for i in store.ids()) if st]
    tests = [record_filter(f) for f in filters]
    # docker: a status filter looks at every container, as -a does
    if not all_ and not any(f.partition("=")[0] == "status" for f in filters):
        rows = [r for r in rows if r.get("State", {}).get("Running")]
    # several values for one key: any may match; different keys: all must
    by_key: dict[str, list] = {}
    for key, test in tests:
        by_key.setdefault(key, []).append(test)
    rows = [r for r in rows if all(any(t(r) for t in ts) for ts in by_key.values())]
    rows.sort(key=lambda r: r.get("Created", ""), reverse=True)
    return rows
