"""Typed records from and to JSON: the one reader of dataclasses from dicts.

A job's Config and Results, and every config a person writes (TOML) or greyglass saves (a run's
`config.json`, an SAE folder's `training.json`), are dataclasses. `to_json` turns one into plain
JSON values (dataclasses and named tuples become objects, tuples become lists, an `Estimate`
becomes `{"value", "ci_low", "ci_high"}`); `from_json` builds it back, guided by the type hints,
so every reader gets typed fields instead of looking up strings in a dict. One set of rules holds
for every file:

- a key the record has no field for is an error (a typo in a config file, a folder written by
  another greyglass): nothing is silently dropped;
- a field the data lacks takes its default, and a nested record's defaults come from the field
  around it (`CaptureRunConfig.corpus` reads the train split, `CorpusConfig` alone reads all), or
  from `base` where one is given; a field without a default is an error;
- a union of records told apart by a `name` field (init=False, e.g. an SAE's architecture) is
  chosen by the data's `name`; any other union takes the first member the data fits;
- an int reads as a float, a list (or a tuple, from `dataclasses.asdict`) as a tuple or a list.

A value that does not fit is a `RecordError` (a GreyglassError) naming the file and the field's
path: `runs/x/results.json: layers[3].accuracy.value: expected a number, found 'x'`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import GreyglassError
from .stats import Estimate

T = TypeVar("T")


class RecordError(GreyglassError):
    """A JSON value that does not fit the record type it should be read as."""


def to_json(value: Any) -> Any:
    """Plain JSON values for a record (also inside lists and dicts)."""
    if isinstance(value, Estimate):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {k: to_json(v) for k, v in zip(value._fields, value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(tp: type[T], data: Any, where: str = "record", path: str = "", base: Any = None) -> T:
    """Build a value of type `tp` from JSON-like `data`. `where` names the file (or what the data is)
    and `path` where in it `data` sits, for errors; fields `data` lacks keep `base`'s values (an
    instance of `tp`) instead of the defaults."""
    return _read(tp, data, _At(where, path), base)


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one from its factory); None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def records_held(tp: Any) -> tuple[type, ...]:
    """The record dataclasses a field of type `tp` (None left out) holds: `(tp,)` for a nested record, the
    members of a union of records, `()` for a plain value or a union with anything else in it."""
    members = [a for a in get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    return tuple(members) if all(dataclasses.is_dataclass(m) for m in members) else ()


def member_name(cls: type) -> str | None:
    """What tells a union member apart: the default of its `name` field (None: it has none)."""
    name = getattr(cls, "name", None)
    return name if isinstance(name, str) else None


class _At(typing.NamedTuple):
    """Where a value sits: the file and the field path inside it."""

    where: str
    path: str

    def field(self, name: str) -> _At:
        return self._replace(path=f"{self.path}.{name}" if self.path else name)

    def item(self, i: int) -> _At:
        return self._replace(path=f"{self.path}[{i}]")

    def fail(self, problem: str) -> RecordError:
        return RecordError(f"{self.where}: {self.path}: {problem}" if self.path else f"{self.where}: {problem}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _read(tp: Any, data: Any, at: _At, base: Any = None) -> Any:
    if tp is Any or tp is object:
        return data
    origin = get_origin(tp)
    if _is_union(tp):
        return _read_union(tp, data, at, base)
    if tp is Estimate:
        return _read_estimate(data, at)
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, data, at, base if isinstance(base, tp) else None)
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _read_named_tuple(tp, data, at)
    if origin is Literal:
        if data not in get_args(tp):
            raise at.fail(f"{data!r} is not allowed; choose one of: {', '.join(map(str, get_args(tp)))}")
        return data
    if origin in (tuple, list):
        return _read_sequence(tp, data, at)
    if origin is dict:
        _expect(isinstance(data, dict), at, "an object", data)
        key_t, val_t = get_args(tp)
        return {_read(key_t, k, at): _read(val_t, v, at.field(str(k))) for k, v in data.items()}
    if tp is float:
        _expect(isinstance(data, (int, float)) and not isinstance(data, bool), at, "a number", data)
        return float(data)
    if tp in _SCALARS:
        _expect(type(data) is tp, at, _SCALARS[tp], data)
        return data
    raise at.fail(f"greyglass cannot read values of type {tp!r} (a bug: records use JSON-like types)")


_SCALARS = {int: "an integer", str: "a string", bool: "true or false"}


def _read_union(tp: Any, data: Any, at: _At, base: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    if data is None and len(args) < len(get_args(tp)):
        return None
    named = {member_name(m): m for m in records_held(tp)}
    if len(named) > 1 and None not in named:  # a union of records names its member
        _expect(isinstance(data, dict), at, "an object with a name", data)
        if data.get("name") not in named:
            raise at.fail(f"name = {data.get('name')!r} is not allowed; choose one of: {', '.join(named)}")
        return _read(named[data["name"]], data, at, base)
    errors = []
    for arg in args:
        try:
            return _read(arg, data, at, base)
        except RecordError as e:
            errors.append(str(e))
    raise RecordError(errors[0]) if len(errors) == 1 else at.fail(f"{data!r} fits none of {tp}")


def _read_estimate(data: Any, at: _At) -> Estimate:
    _expect(isinstance(data, dict), at, "an object with value, ci_low, ci_high", data)
    unknown = sorted(set(data) - {"value", "ci_low", "ci_high"})
    if unknown:
        raise at.fail(f"unknown key(s) {', '.join(unknown)}; allowed: value, ci_low, ci_high")
    nan = float("nan")
    value, lo, hi = (_read(float | None, data.get(k, nan), at.field(k)) for k in ("value", "ci_low", "ci_high"))
    _expect(value is not None, at, "an object with a value", data)
    return Estimate(value, nan if lo is None else lo, nan if hi is None else hi)


def _read_dataclass(tp: type, data: Any, at: _At, base: Any) -> Any:
    fields = [f for f in dataclasses.fields(tp) if f.init]  # a field not in __init__ (a member's `name`) is its union's
    values = _read_fields(tp, data, at, {f.name: f for f in fields}, {f.name for f in dataclasses.fields(tp)}, base)
    return tp(**values)


def _read_named_tuple(tp: type, data: Any, at: _At) -> Any:
    return tp(**_read_fields(tp, data, at, dict.fromkeys(tp._fields), set(tp._fields), None))


def _read_fields(tp: type, data: Any, at: _At, fields: dict[str, dataclasses.Field | None], known: set[str],
                 base: Any) -> dict[str, Any]:
    """The init arguments of `tp` from `data`; `fields` holds each dataclass field (None for a named tuple's)."""
    _expect(isinstance(data, dict), at, "an object", data)
    unknown = sorted(set(data) - known)
    if unknown:
        raise at.fail(f"unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(fields)}")
    hints = _hints(tp)
    out = {}
    for name, f in fields.items():
        if name in data:
            out[name] = _read(hints[name], data[name], at.field(name), _outer(f, name, hints[name], base))
        elif base is not None:
            out[name] = getattr(base, name)
        elif not (has_default(f) if f is not None else name in tp._field_defaults):
            raise at.fail(f"the field '{name}' is missing")
    return out


def _outer(f: dataclasses.Field | None, name: str, tp: Any, base: Any) -> Any:
    """What a nested record's missing fields default to: `base`'s value, or the field's own default
    (e.g. the train split of a capture's corpus); None for a field holding no record."""
    if f is None or not records_held(tp):
        return None
    return getattr(base, name) if base is not None else field_default(f)


def _read_sequence(tp: Any, data: Any, at: _At) -> Any:
    _expect(isinstance(data, (list, tuple)), at, "a list", data)
    args = get_args(tp)
    if get_origin(tp) is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
        _expect(len(args) == len(data), at, f"a list of {len(args)} values", data)
        return tuple(_read(a, v, at.item(i)) for i, (a, v) in enumerate(zip(args, data)))
    elem = args[0] if args else Any
    items = [_read(elem, v, at.item(i)) for i, v in enumerate(data)]
    return tuple(items) if get_origin(tp) is tuple else items


def _expect(ok: bool, at: _At, what: str, data: Any) -> None:
    if not ok:
        shown = repr(data)
        raise at.fail(f"expected {what}, found {shown[:80] + '...' if len(shown) > 80 else shown}")
