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
