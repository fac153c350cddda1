"""Config dataclasses become CLI flags: each field's docstring is its `--help` text.

A component's config is a frozen dataclass whose fields carry a string literal right below
them (as in EleutherAI sparsify). `add_arguments` turns the fields into argparse flags with
those strings as help; `from_namespace` builds the dataclass back, so its `__post_init__`
validation runs on CLI input too. `from_toml` does the same from a TOML table.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import tomllib
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import GreyglassError

T = TypeVar("T")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each field of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) for `X | None`."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _nested(tp: Any) -> bool:
    """A field holding a config of its own: its fields become flags of the same command."""
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def _field_default(f: dataclasses.Field) -> Any:
    """A field's default value (made by its factory), or None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), defaults: Any = None) -> None:
    """Add one `--flag` per dataclass field (underscores become dashes); a field that is itself a config
    dataclass adds its own fields' flags, unprefixed (so two nested configs must not share a field name),
    with the defaults of the outer field's default value. `field(metadata={"flag": ...})` names a field's
    flag instead (`--site` for a repeatable `sites`), or makes it positional (a name without dashes,
    which must be the field's name). `defaults`: an instance whose values are the flags' defaults."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        if _nested(tp):
            add_arguments(parser, tp, skip, default)
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        help_text = docs.get(f.name, "")
        if default not in (None, (), []):
            help_text += f" (default: {default})"
        # argparse %-formats help strings; a docstring is plain text, so its % must not be read as a format
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        if flag.startswith("-"):  # a positional argument's dest is its name
            kwargs["dest"] = f.name
        if "flag" in f.metadata and flag.startswith("-") and tp is not bool and get_origin(tp) is not Literal:
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # `--site SITE`, not `--site SITES`
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif get_origin(tp) is Literal:
            parser.add_argument(flag, choices=list(get_args(tp)), **kwargs)
        elif get_origin(tp) in (tuple, list):
            elem = get_args(tp)[0]
            parser.add_argument(flag, type=elem, action="append", **kwargs)
        else:
            parser.add_argument(flag, type=tp, **kwargs)


def from_namespace(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build `cls` from parsed flags (absent flags keep the dataclass default; in a nested config, the
    outer field's default value)."""
    return _build(cls, vars(ns), None, overrides)


def _build(cls: type[T], given: dict[str, Any], base: Any, overrides: dict[str, Any]) -> T:
    """`cls` from the values `given` for its fields, the rest from `base` (an instance) or the defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        tp = _unwrap_optional(hints[f.name])[0]
        if _nested(tp):
            values[f.name] = _build(tp, given, getattr(base, f.name) if base is not None else _field_default(f), {})
        elif f.name in given:
            values[f.name] = given[f.name]
    values.update(overrides)
    for k, v in values.items():
        if get_origin(_unwrap_optional(hints[k])[0]) is tuple and isinstance(v, list):
            values[k] = tuple(v)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def from_toml(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Build `cls` from a TOML file (optionally one table of it); unknown keys are errors."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GreyglassError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise GreyglassError(f"{path}: not valid TOML ({e})") from None
    if table is not None:
        data = data.get(table, {})
    return _from_table(cls, data, str(path))


def _from_table(cls: type[T], data: dict[str, Any], where: str, base: Any = None) -> T:
    """`cls` from one TOML table, the keys it lacks from `base` (an instance) or the defaults; a nested
    config is a sub-table named like its field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise GreyglassError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        tp = _unwrap_optional(hints[k])[0]
        if _nested(tp):
            if not isinstance(v, dict):
                raise GreyglassError(f"{where}: {k} must be a table ([{k}]), found {v!r}")
            inner = getattr(base, k) if base is not None else _field_default(fields[k])
            data[k] = _from_table(tp, v, f"{where} [{k}]", inner)
        elif get_origin(tp) is tuple and isinstance(v, list):
            data[k] = tuple(v)
    return dataclasses.replace(base, **data) if base is not None else cls(**data)


def check_choice(cls_name: str, field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Raise a GreyglassError naming the field and its allowed values."""
    if value not in allowed:
        raise GreyglassError(
            f"{cls_name}.{field} = {value!r} is not allowed; choose one of: "
            + ", ".join(map(str, allowed))
        )


def check_positive(cls_name: str, field: str, value: float | int | None) -> None:
    """Raise a GreyglassError unless `value` is None or > 0."""
    if value is not None and value <= 0:
        raise GreyglassError(f"{cls_name}.{field} must be > 0, got {value!r}")
