"""Hypothesis settings and mutation strategies for the fuzz tests (tests/unit/test_fuzz_*.py).

Profiles: `ci` (the default) runs a small fixed number of examples, derandomized so a CI run is
deterministic; `fuzz` (GREYGLASS_FUZZ=fuzz, what `make fuzz` sets) runs many more, randomly.
GREYGLASS_FUZZ_EXAMPLES overrides the fuzz profile's count.

A mutation starts from a valid file and breaks it the ways files break or are made to break:
bytes (truncated, flipped, deleted, inserted, emptied, re-encoded, NUL, nesting deeper than a
JSON decoder recurses, a line longer than the reader's cap, a number too long to convert),
JSON values (a field dropped, retyped to any JSON value, duplicated with another value), and
tensors (dropped, another dtype, another shape, NaN/inf, an extra key).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from greyglass.errors import GreyglassError

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, suppress_health_check=_SLOW,
                          print_blob=True)
settings.register_profile("fuzz", max_examples=int(os.environ.get("GREYGLASS_FUZZ_EXAMPLES", "1000")),
                          deadline=None, suppress_health_check=_SLOW, print_blob=True)
settings.load_profile(os.environ.get("GREYGLASS_FUZZ", "ci"))

LINE_CAP = 4096
"""The text readers' line cap (`data.files.MAX_TEXT_CHARS`) while fuzzing, so an over-long line is cheap to make."""

HOSTILE_STRINGS = ("", " ", "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "../../../../etc/passwd",
                   "\x00", "NaN", "-1", "1e999", "\u202e\u0301é", "a" * 300, "{{ 7*7 }}", "%s%n")


def hostile_json() -> st.SearchStrategy[Any]:
    """Any JSON value, weighted towards those that break readers (NaN, huge numbers, markup, empties)."""
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
               | st.text(max_size=12) | st.sampled_from(HOSTILE_STRINGS))
    return st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                        max_leaves=6)


def _nodes(obj: Any, at: tuple = ()) -> list[tuple]:
    """The path to every value inside `obj`, the root included."""
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, (*at, i))
    return out


def _dumps_duplicating(obj: Any, at: tuple, extra: Any) -> str:
    """JSON text of `obj` where the object holding `at` lists its last key twice: `extra`, then the real value."""
    if not at:
        return json.dumps(obj)
    head, rest = at[0], at[1:]
    if isinstance(obj, dict):
        parts = [f"{json.dumps(str(k))}: {_dumps_duplicating(v, rest, extra) if k == head else json.dumps(v)}"
                 for k, v in obj.items()]
        if not rest:
            parts.insert(0, f"{json.dumps(str(head))}: {json.dumps(extra)}")
        return "{" + ", ".join(parts) + "}"
    return "[" + ", ".join(_dumps_duplicating(v, rest, extra) if i == head else json.dumps(v)
                           for i, v in enumerate(obj)) + "]"


@st.composite
def mutated_json(draw: st.DrawFn, obj: Any) -> tuple[str, tuple]:
    """(JSON text, the path changed) for `obj` with one value dropped, retyped or duplicated."""
    at = draw(st.sampled_from(_nodes(obj)))
    how = draw(st.sampled_from(["drop", "retype", "duplicate"] if at else ["retype"]))
    if how == "duplicate" and isinstance(_get(obj, at[:-1]), dict):
        return _dumps_duplicating(obj, at, draw(hostile_json())), at
    new = copy.deepcopy(obj)
    if not at:
        return json.dumps(draw(hostile_json())), at
    parent = _get(new, at[:-1])
    if how == "drop":
        del parent[at[-1]]
    else:
        parent[at[-1]] = draw(hostile_json())
    return json.dumps(new), at


def _get(obj: Any, at: tuple) -> Any:
    for k in at:
        obj = obj[k]
    return obj


BYTE_MUTATIONS = ("empty", "truncate", "flip", "delete", "insert", "not_utf8", "utf16", "nul", "deep", "long_line",
                  "long_number")


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` broken in one of `BYTE_MUTATIONS`' ways."""
    how = draw(st.sampled_from(BYTE_MUTATIONS))
    i = draw(st.integers(0, len(data)))
    insert = {"not_utf8": b"\xff\xfe\xc3(", "nul": b"\x00", "deep": b"[" * 20_000 + b"{",
              "long_line": b"x" * (LINE_CAP + 100), "long_number": b"9" * 5000}.get(how)
    if insert is not None:
        return data[:i] + insert + data[i:]
    if how == "empty":
        return b""
    if how == "truncate":
        return data[:i]
    if how == "flip" and i < len(data):
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if how == "delete":
        return data[:i] + data[draw(st.integers(i, len(data))):]
    if how == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]


TENSOR_MUTATIONS = ("drop", "dtype", "shape", "nan", "inf", "extra", "empty")


@st.composite
def mutated_tensors(draw: st.DrawFn, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, the key changed) with one tensor dropped, cast, reshaped, poisoned or joined by another."""
    key = draw(st.sampled_from(sorted(tensors)))
    how = draw(st.sampled_from(TENSOR_MUTATIONS))
    out = dict(tensors)
    t = tensors[key]
    if how == "drop":
        del out[key]
    elif how == "dtype":
        out[key] = t.to(draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8,
                                                torch.bool])))
    elif how == "shape":
        reshape = draw(st.sampled_from(["flat", "transpose", "shorter", "longer", "unsqueeze", "scalar"]))
        out[key] = {"flat": lambda: t.reshape(-1), "transpose": lambda: t.T if t.ndim == 2 else t.unsqueeze(1),
                    "shorter": lambda: t[..., :-1] if t.ndim and t.shape[-1] else t.reshape(-1)[:0],
                    "longer": lambda: torch.cat([t, t[..., :1]], -1) if t.ndim else t.reshape(1),
                    "unsqueeze": lambda: t.unsqueeze(0), "scalar": lambda: t.reshape(-1)[:1].reshape(())}[reshape]()
    elif how in ("nan", "inf") and t.is_floating_point() and t.numel():
        t = t.clone()
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = float(how)
        out[key] = t
    elif how == "extra":
        out["junk"] = torch.zeros(3)
    else:
        out[key] = torch.zeros(0, dtype=t.dtype)
    return {k: v.contiguous() for k, v in out.items()}, key


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path: a reader must leave them all as they were."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def field_names(at: tuple | None) -> tuple[str, ...]:
    """The keys on the path of a mutated JSON value (list indices left out: an error names those by line)."""
    return tuple(k for k in at or () if isinstance(k, str))


def read_cleanly(read: Callable[[], Any], folder: Path, names: tuple[str, ...], field: tuple | None = None) -> Any:
    """`read()`'s result, or None when it raised a GreyglassError naming one of `names` (the file it
    read, or its folder) and, for a mutated JSON value at path `field`, one of the keys on that path;
    any other exception propagates, and no file under `folder` may change."""
    before = folder_hashes(folder)
    try:
        result = read()
    except GreyglassError as e:
        assert any(n in str(e) for n in names), f"the error does not name {' or '.join(names)}: {e}"
        keys = field_names(field)
        assert not keys or any(k in str(e) for k in keys), f"the error does not name the field {'.'.join(keys)}: {e}"
        result = None
    assert folder_hashes(folder) == before, "the reader changed its input"
    return result
