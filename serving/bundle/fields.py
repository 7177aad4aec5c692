"""Checking what an unpickler built: every field of every pipeline dataclass against its annotation.

The restricted unpickler decides which classes may be built, not what their fields hold: a tampered
(or hand-made) pickle can put a str where a size belongs, or an object where the tokenizer's JSON
does. `field_problems` walks the dataclasses and says where a value is not of its annotated kind.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np

__all__ = ["field_problems"]

_MISSING = object()


def field_problems(obj: object, where: str) -> list[str]:
    """Where `obj` (a dataclass instance) or anything inside it is not of its annotated kind."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return [f"{where} is a {type(obj).__name__}, not a pipeline part"]
    hints = get_type_hints(type(obj))
    fields = dataclasses.fields(obj)
    problems = [
        f"{where}.{name} is not a field of {type(obj).__name__}"
        for name in set(vars(obj)) - {f.name for f in fields}
    ]
    for f in fields:
        if f.init:  # caches (init=False) are the object's own, rebuilt on use
            problems += _problems(getattr(obj, f.name, _MISSING), hints[f.name], f"{where}.{f.name}")
    return problems


def _problems(value: Any, hint: Any, where: str) -> list[str]:
    if value is _MISSING:
        return [f"{where} is missing"]
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:  # a task's postprocess: whatever dataclass it is, its fields are checked too
        return field_problems(value, where) if dataclasses.is_dataclass(value) else []
    if origin in (Union, types.UnionType):
        if type(value) in args:  # the alternative it claims to be says what is wrong with it
            return _problems(value, type(value), where)
        options = [_problems(value, option, where) for option in args]
        return [] if any(not found for found in options) else min(options, key=len)
    if origin is Literal:
        return [] if value in args else [f"{where} is {value!r}, not one of {list(args)}"]
    if origin is tuple:
        if not isinstance(value, tuple):
            return [f"{where} is a {type(value).__name__}, not a tuple"]
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return [f"{where} has {len(value)} items, not {len(kinds)}"]
        return [
            p
            for i, (item, kind) in enumerate(zip(value, kinds, strict=True))
            for p in _problems(item, kind, f"{where}[{i}]")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where} is a {type(value).__name__}, not a dict"]
        return [
            p
            for key, item in value.items()
            for p in _problems(key, args[0], f"{where} key") + _problems(item, args[1], f"{where}[{key!r}]")
        ]
    return _scalar_problems(value, hint, where)


def _scalar_problems(value: Any, hint: Any, where: str) -> list[str]:
    if hint is type(None):
        ok = value is None
    elif hint is bool:
        ok = type(value) is bool
    elif hint is int:
        ok = type(value) is int
    elif hint is float:
        ok = type(value) in (int, float) and math.isfinite(value)
    elif hint is str:
        ok = type(value) is str
    elif hint is np.ndarray:  # weights: numbers, never objects
        ok = type(value) is np.ndarray and value.dtype.kind in "biuf"
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if type(value) is not hint:
            return [f"{where} is a {type(value).__name__}, not a {hint.__name__}"]
        return field_problems(value, where)
    else:
        ok = isinstance(hint, type) and isinstance(value, hint)
    return (
        []
        if ok
        else [f"{where} is {type(value).__name__} {str(value)[:40]!r}, not {getattr(hint, '__name__', hint)}"]
    )
