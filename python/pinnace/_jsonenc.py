"""JSON encoding for the CLI's hot path without importing :mod:`json`.

``import json`` pulls in ``re`` and ``enum`` (~6 ms of every ``pinnace run``);
the C accelerator ``_json`` that json itself uses for strings does not. Only
what runtime specs and state records hold is supported: dict, list, tuple,
str, int, float, bool and None.
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _str


def _refuse(obj):
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


try:
    # The same C encoder json.dumps uses, built the way json.encoder builds it.
    from _json import make_encoder as _make_encoder

    _c_encode = _make_encoder(None, _refuse, _str, None, ":", ",", False, False, True)
except (ImportError, TypeError):  # another interpreter: the pure-Python walk below
    _c_encode = None


def dumps(obj) -> str:
    if _c_encode is not None:
        return "".join(_c_encode(obj, 0))
    parts: list[str] = []
    _enc(obj, parts.append)
    return "".join(parts)


def _enc(obj, out) -> None:
    if isinstance(obj, str):
        out(_str(obj))
    elif obj is None:
        out("null")
    elif obj is True:
        out("true")
    elif obj is False:
        out("false")
    elif isinstance(obj, (int, float)):
        out(repr(obj) if isinstance(obj, float) else str(int(obj)))
    elif isinstance(obj, dict):
        out("{")
        first = True
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"keys must be str, not {type(k).__name__}")
            if not first:
                out(",")
            first = False
            out(_str(k))
            out(":")
            _enc(v, out)
        out("}")
    elif isinstance(obj, (list, tuple)):
        out("[")
        for i, v in enumerate(obj):
            if i:
                out(",")
            _enc(v, out)
        out("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


class _DecodeContext:
    # what the C scanner reads from json.JSONDecoder; the plain types make it
    # parse numbers natively instead of through json.decoder's regex
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict = {}


try:
    from _json import make_scanner as _make_scanner

    _ctx = _DecodeContext()
    _ctx.parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__
    _c_scan = _make_scanner(_ctx)
except (ImportError, TypeError):
    _c_scan = None


def loads(text: str | bytes):
    """Parse JSON with json's C scanner, without importing json (and re)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode()
    if _c_scan is None:
        import json

        return json.loads(text)
    i = 0
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    try:
        obj, end = _c_scan(text, i)
    except StopIteration:
        raise ValueError("not JSON") from None
    while end < n and text[end] in " \t\r\n":
        end += 1
    if end != n:
        raise ValueError("extra data after JSON")
    return obj
