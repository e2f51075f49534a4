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
