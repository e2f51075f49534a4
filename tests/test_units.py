"""Pure-Python pieces that need no root (still run as part of the suite)."""

from __future__ import annotations

import json

import pytest

from pinnace._jsonenc import dumps
from pinnace.cli.flags import fast_parse
from pinnace.config import parse_ulimit, parse_volume
from pinnace.errors import UsageError


@pytest.mark.parametrize("obj", [
    {"a": [1, 2.5, True, False, None, "x\u00e9\n\"\\"], "b": {"c": []}, "d": 2**64 - 1},
    [], {}, "", 0, -3,
])
def test_jsonenc_matches_json(obj):
    assert json.loads(dumps(obj)) == obj


def test_jsonenc_refuses_what_it_cannot_encode():
    with pytest.raises(TypeError):
        dumps({"a": object()})


def test_fast_parse_bundles_values_and_stops_at_image():
    values, rest = fast_parse(["--rm", "-ieA=1", "-e", "B=2", "--name=x", "-v", "/a:/b", "img", "-e", "cmd"])
    assert values == {"remove": True, "interactive": True, "env": ["A=1", "B=2"], "name": "x", "volumes": ["/a:/b"]}
    assert rest == ["img", "-e", "cmd"]
    assert fast_parse(["--help"]) is None
    assert fast_parse(["--unknown", "img"]) is None
    assert fast_parse(["-e"]) is None
    assert fast_parse(["--", "img", "x"]) == ({}, ["img", "x"])


def test_volume_and_ulimit_parsing():
    assert parse_volume("/h:/c:ro")["options"] == ["rbind", "ro", "rprivate"]
    with pytest.raises(UsageError):
        parse_volume("/h:c")
    assert parse_ulimit("nofile=10:20") == {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}
    with pytest.raises(UsageError):
        parse_ulimit("nofile=20:10")


def test_jsonenc_python_fallback_matches_json():
    from pinnace import _jsonenc

    obj = {"a": [1, 2.5, True, None, "x\u00e9"], "b": {}}
    parts: list[str] = []
    _jsonenc._enc(obj, parts.append)
    assert json.loads("".join(parts)) == obj


def test_global_flags_may_follow_the_command():
    from pinnace.cli.flags import hoist_globals

    assert hoist_globals(["ps", "-a", "--root", "/r", "--runroot=/rr"]) == ["--root", "/r", "--runroot=/rr", "ps", "-a"]
    assert hoist_globals(["--root", "/r", "run", "--root", "/x", "img", "--root"]) == ["--root", "/r", "run", "--root", "/x", "img", "--root"]
    assert hoist_globals(["rm", "--", "--root"]) == ["rm", "--", "--root"]


def test_put_archive_without_tarfiles_data_filter_refuses_what_it_would_refuse(tmp_path):
    """Python before 3.11.4 (Debian 12's) has no extraction filters: the
    hand-made checks let a plain tree through and refuse escapes."""
    import io
    import tarfile

    from pinnace.api import _safe_members

    def tar_of(entries) -> io.BytesIO:
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w") as t:
            for name, kind, extra in entries:
                ti = tarfile.TarInfo(name)
                if kind == "file":
                    ti.size = len(extra)
                    t.addfile(ti, io.BytesIO(extra))
                else:
                    ti.type = {"sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE}[kind]
                    ti.linkname = extra or ""
                    ti.mode = 0o4755
                    t.addfile(ti)
        b.seek(0)
        return b

    good = tmp_path / "good"
    good.mkdir()
    with tarfile.open(fileobj=tar_of([("d", "dir", None), ("d/f", "file", b"hi"), ("d/l", "sym", "f")]),
                      mode="r|*") as tar:
        for m in _safe_members(tar, str(good)):
            tar.extract(m, str(good))
    assert (good / "d" / "l").read_text() == "hi"
    assert not (good / "d").stat().st_mode & 0o4000
    for bad in ([("../x", "file", b"")], [("/abs", "file", b"")], [("l", "sym", "/etc/passwd")],
                [("l", "sym", "../../x")], [("h", "lnk", "../../etc/passwd")]):
        dest = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        dest.mkdir()
        with pytest.raises(tarfile.TarError, match="outside the destination"):
            with tarfile.open(fileobj=tar_of(bad), mode="r|*") as tar:
                for m in _safe_members(tar, str(dest)):
                    tar.extract(m, str(dest))
        assert list(dest.iterdir()) == []
