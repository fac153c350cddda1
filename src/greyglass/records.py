"""Typed records as JSON: the dataclasses a run writes into `config.json` and `results.json`.

A job's Config and Results are dataclasses. `to_json` turns one into plain JSON values
(dataclasses and named tuples become objects, tuples become lists, an `Estimate` becomes
`{"value", "ci_low", "ci_high"}`); `from_json` builds it back, guided by the type hints, so
every reader gets typed fields instead of looking up strings in a dict. A field missing from
the JSON takes its default; one without a default, or a value of the wrong shape, is a
`RecordError` naming the field's path (`results.layers[3].accuracy.value`).
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


def from_json(tp: type[T], data: Any, where: str = "record") -> T:
    """Build a value of type `tp` from JSON `data`; `where` names it in errors."""
    return _read(tp, data, where)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read(tp: Any, data: Any, where: str) -> Any:
    if tp is Any or tp is object:
        return data
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _read_union(tp, data, where)
    if tp is Estimate:
        return _read_estimate(data, where)
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, data, where)
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return tp(**_read_fields(tp, data, where, {}))
    if origin is Literal:
        if data not in get_args(tp):
            raise RecordError(f"{where}: {data!r} is not one of {', '.join(map(repr, get_args(tp)))}")
        return data
    if origin in (tuple, list):
        return _read_sequence(tp, data, where)
    if origin is dict:
        _expect(isinstance(data, dict), where, "an object", data)
        key_t, val_t = get_args(tp)
        return {_read(key_t, k, where): _read(val_t, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        _expect(isinstance(data, (int, float)) and not isinstance(data, bool), where, "a number", data)
        return float(data)
    if tp in _SCALARS:
        _expect(type(data) is tp, where, _SCALARS[tp], data)
        return data
    raise RecordError(f"{where}: greyglass cannot read values of type {tp!r} (a bug: records use JSON-like types)")


_SCALARS = {int: "an integer", str: "a string", bool: "true or false"}


def _read_union(tp: Any, data: Any, where: str) -> Any:
    args = get_args(tp)
    if data is None and type(None) in args:
        return None
    named = {getattr(a, "name", None): a for a in args if dataclasses.is_dataclass(a)}
    if isinstance(data, dict) and "name" in data and data["name"] in named:
        return _read(named[data["name"]], data, where)  # a union of configs names its member
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _read(arg, data, where)
        except RecordError as e:
            errors.append(str(e))
    raise RecordError(errors[0] if len(errors) == 1 else f"{where}: {data!r} fits none of {tp}")


def _read_estimate(data: Any, where: str) -> Estimate:
    _expect(isinstance(data, dict), where, "an object with value, ci_low, ci_high", data)
    nan = float("nan")
    get = lambda k: _read(float | None, data.get(k, nan), f"{where}.{k}")  # noqa: E731
    value = get("value")
    _expect(value is not None, where, "an object with a value", data)
    lo, hi = get("ci_low"), get("ci_high")
    return Estimate(value, nan if lo is None else lo, nan if hi is None else hi)


def _read_dataclass(tp: type, data: Any, where: str) -> Any:
    init = {f.name: f for f in dataclasses.fields(tp) if f.init}
    return tp(**_read_fields(tp, data, where, init))


def _read_fields(tp: type, data: Any, where: str, fields: dict[str, Any]) -> dict[str, Any]:
    _expect(isinstance(data, dict), where, "an object", data)
    hints = _hints(tp)
    names = list(fields) if fields else list(tp._fields)
    defaults = {} if fields else tp._field_defaults
    out = {}
    for name in names:
        if name in data:
            out[name] = _read(hints[name], data[name], f"{where}.{name}")
        elif not _has_default(fields.get(name)) and name not in defaults:
            raise RecordError(f"{where}: the field '{name}' is missing")
    return out


def _has_default(f: dataclasses.Field | None) -> bool:
    return f is not None and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)


def _read_sequence(tp: Any, data: Any, where: str) -> Any:
    _expect(isinstance(data, list), where, "a list", data)
    args = get_args(tp)
    if get_origin(tp) is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
        _expect(len(args) == len(data), where, f"a list of {len(args)} values", data)
        return tuple(_read(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
    elem = args[0] if args else Any
    items = [_read(elem, v, f"{where}[{i}]") for i, v in enumerate(data)]
    return tuple(items) if get_origin(tp) is tuple else items


def _expect(ok: bool, where: str, what: str, data: Any) -> None:
    if not ok:
        shown = repr(data)
        raise RecordError(f"{where}: expected {what}, found {shown[:80] + '...' if len(shown) > 80 else shown}")
