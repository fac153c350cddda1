"""Config dataclasses become CLI flags: each field's docstring is its `--help` text.

A component's config is a frozen dataclass whose fields carry a string literal right below
them (as in EleutherAI sparsify). `add_arguments` turns the fields into argparse flags with
those strings as help; `from_namespace` builds the dataclass back, so its `__post_init__`
validation runs on CLI input too. `from_toml` does the same from a TOML table, through the one
reader of dataclasses from dicts (`records.from_json`, which also reads run folders).

Configs nest. A field holding a config dataclass brings that config's flags; a field holding
one of several configs (a union whose members each have a `name` field, init=False, that
tells them apart, e.g. an SAE's architecture) gets a flag choosing the member, and each
member's flags say which members they belong to (one given for a member not chosen is an
error). Flags share one flat namespace, so a nested field may name its own flag
(`flagged("jumprelu_bandwidth", default=...)`) to stay readable; in TOML and JSON
a nested config is a table, a union member's table holding its `name`. A nested config can leave
some of its fields to the config around it (`nested(SAEConfig, skip=("d_in", ...))`: `sae train`
takes an SAE's width and site from the data).
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
from typing import Any, Literal, NamedTuple, TypeVar, get_args, get_origin

from .errors import GreyglassError
from .records import field_default, from_json, has_default, member_name, records_held

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


def flagged(flag: str, **field_options: Any) -> Any:
    """A dataclass field whose flag is `--flag` (dashes for underscores) instead of its own name:
    a nested config's field keeps a flag that is readable and unambiguous on its own."""
    return dataclasses.field(metadata={"flag": flag}, **field_options)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) for `X | None`."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _dest(f: dataclasses.Field) -> str:
    """The argparse dest of a field: its name, or the flag it names."""
    return f.metadata.get("flag", f.name)


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


class _Flag(NamedTuple):
    tp: Any
    default: Any
    help: str
    needed: bool = False
    """The field has no default: a job's command cannot build its config without it."""
    positional: bool = False
    """Declared with `positional()`: a job's command takes it as a positional argument."""


def positional(**field_options: Any) -> Any:
    """A field a job's command takes as a positional argument, e.g. `sae: str = positional()` for
    `greyglass sae eval SAE`; without a default it must be given."""
    return dataclasses.field(metadata={"positional": True}, **field_options)


def nested(factory: Any, skip: tuple[str, ...] = ()) -> Any:
    """A field holding a config (`factory()` is its default) whose flags leave out the dests in `skip`,
    also in the configs nested in it: values the enclosing config sets itself (an SAE's width and site,
    which `sae train` takes from the data). Those fields keep the default's values."""
    return dataclasses.field(default_factory=factory, metadata={"skip": skip})


def _without(values: dict[str, Any], f: dataclasses.Field) -> dict[str, Any]:
    """`values` less the dests a nested config field leaves to the config around it (`nested(skip=...)`)."""
    skip = f.metadata.get("skip", ())
    return {k: v for k, v in values.items() if k not in skip}


def _needed(f: dataclasses.Field) -> bool:
    return not has_default(f)


def _flags(cls: type, defaults: Any = None) -> dict[str, _Flag]:
    """Every flag of `cls` and of the configs nested in it, by dest, in field order. `defaults`: an
    instance of `cls` whose values are the defaults (a nested config's come from the outer field's
    default, e.g. capture reads the train split while CorpusConfig alone reads all)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    flags: dict[str, _Flag] = {}
    for f in _init_fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        held = records_held(tp)
        default = getattr(defaults, f.name) if defaults is not None else field_default(f)
        if not held:
            flags[_dest(f)] = _Flag(tp, default, docs.get(f.name, ""), _needed(f), f.metadata.get("positional", False))
        elif len(held) == 1:  # an optional config's fields are never required flags: leaving them all out means None
            inner = _without(_flags(held[0], default if isinstance(default, held[0]) else None), f)
            flags.update({d: fl._replace(needed=fl.needed and not optional) for d, fl in inner.items()})
        else:
            names = tuple(member_name(m) for m in held)
            flags[_dest(f)] = _Flag(Literal[names], member_name(type(field_default(f))), docs.get(f.name, ""))
            flags.update(_without(_member_flags(_dest(f), held), f))
    return flags


def _member_flags(chooser: str, members: tuple[type, ...]) -> dict[str, _Flag]:
    """The flags of a union's members, each flag's help ending with the members it applies to."""
    flags: dict[str, _Flag] = {}
    users: dict[str, list[str]] = {}
    for member in members:
        for dest, flag in _flags(member).items():
            flags.setdefault(dest, flag)
            users.setdefault(dest, []).append(member_name(member))
    option = "--" + chooser.replace("_", "-")
    return {dest: flag._replace(help=f"{flag.help} [{option} {'/'.join(users[dest])}]") for dest, flag in flags.items()}


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), required: bool = False) -> None:
    """Add one `--flag` per dataclass field, nested configs' fields included (underscores become
    dashes); `skip` names dests (field names, or the flags fields name) to leave out. With `required`
    (a job's whole config: it cannot be built without them) a field without a default is a required
    flag, or a positional argument where it is declared with `positional()`."""
    for dest, flag in _flags(cls).items():
        if dest in skip:
            continue
        tp, default = flag.tp, flag.default
        help_text = flag.help
        if default not in (None, (), []):
            help_text += f" (default: {default})"
        # argparse %-formats help strings; a docstring is plain text, so its % must not be read as a format
        if required and flag.positional:
            parser.add_argument(dest, type=tp, metavar=dest.upper(), help=help_text.replace("%", "%%"))
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%"),
                                  "required": required and flag.needed}
        option = "--" + dest.replace("_", "-")
        if tp is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, **kwargs)
        elif get_origin(tp) is Literal:
            parser.add_argument(option, choices=list(get_args(tp)), **kwargs)
        elif get_origin(tp) in (tuple, list):
            elem = get_args(tp)[0]
            parser.add_argument(option, type=elem, action="append", **kwargs)
        else:
            parser.add_argument(option, type=tp, **kwargs)


def from_namespace(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build `cls` from parsed flags (absent flags keep the dataclass default); a flag of a union
    member other than the one chosen is an error."""
    return _from_flags(cls, vars(ns), None, strict=True, overrides=overrides)


def from_flat(cls: type[T], values: dict[str, Any]) -> T:
    """Build `cls` from values keyed by dest (one flat dict, as greyglass wrote configs before they
    nested); values belonging to union members not chosen are ignored."""
    return _from_flags(cls, values, None, strict=False)


def _from_flags(cls: type[T], given: dict[str, Any], base: Any, strict: bool, overrides: dict[str, Any] | None = None) -> T:
    """`cls` from dest-keyed values; fields not given keep `base`'s values (or the defaults)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in _init_fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        held = records_held(tp)
        current = field_default(f) if base is None else getattr(base, f.name)
        if not held:
            if _dest(f) in given:
                values[f.name] = _as_field_type(tp, given[_dest(f)])
        elif len(held) == 1:
            # an optional config (e.g. an eval's server settings) stays None unless one of its flags is given
            if not (optional and current is None and not set(_flags(held[0])) & set(given)):
                values[f.name] = _from_flags(held[0], _without(given, f), current, strict)
        else:
            values[f.name] = _chosen_member(_dest(f), held, _without(given, f), current, strict)
    values.update(overrides or {})
    if base is not None:
        return dataclasses.replace(base, **values)
    missing = ["--" + _dest(f).replace("_", "-") for f in _init_fields(cls) if f.name not in values and _needed(f)]
    if missing:
        raise GreyglassError(f"{cls.__name__} needs {' and '.join(missing)}")
    return cls(**values)


def _chosen_member(chooser: str, members: tuple[type, ...], given: dict[str, Any], current: Any, strict: bool) -> Any:
    """The union member `given` chooses (or `current`'s), built from `given`."""
    by_name = {member_name(m): m for m in members}
    name = given.get(chooser, member_name(type(current)))
    if name not in by_name:
        raise GreyglassError(f"{chooser} = {name!r} is not allowed; choose one of: {', '.join(by_name)}")
    chosen = by_name[name]
    if strict:
        own = _flags(chosen)
        foreign = [d for m in members for d in _flags(m) if d in given and d not in own]
        if foreign:
            owners = [member_name(m) for m in members if foreign[0] in _flags(m)]
            raise GreyglassError(f"--{foreign[0].replace('_', '-')} does not apply to --{chooser.replace('_', '-')} "
                                 f"{name}; it is a setting of {', '.join(owners)}: leave it out or choose one of those")
    return _from_flags(chosen, given, current if type(current) is chosen else None, strict)


def _as_field_type(tp: Any, value: Any) -> Any:
    """JSON and argparse give lists where a field holds a tuple."""
    return tuple(value) if get_origin(tp) is tuple and isinstance(value, list) else value


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
    return from_json(cls, data, str(path), table or "")


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
