"""Hold a JSON document to its TypedDict in devbox.ui.json: exactly its keys, each of its type.

The pipx pattern (`set(doc) == frozenset(TD.__annotations__)`) at every level: nested objects,
lists and maps of objects are checked against their own shapes, and a value's JSON type
against the annotation (an int where int is promised, never a string; null only if allowed).
"""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict


def keys(shape: Any) -> frozenset[str]:
    """The keys a TypedDict promises (inherited ones included)."""
    return frozenset(shape.__annotations__)


def check(value: Any, shape: Any, path: str = "$") -> None:
    """Raise AssertionError naming the first place `value` breaks `shape`."""
    origin = get_origin(shape)
    if shape is Any:
        return
    if origin in (Union, types.UnionType):
        failures = []
        for option in get_args(shape):
            try:
                check(value, option, path)
                return
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{path}: {value!r} is none of {shape}: {failures}")
    if origin is Literal:
        assert value in get_args(shape), f"{path}: {value!r} is none of {get_args(shape)}"
        return
    if is_typeddict(shape):
        assert isinstance(value, dict), f"{path}: {value!r} is not an object"
        assert set(value) == keys(shape), (
            f"{path} ({shape.__name__}): extra {sorted(set(value) - keys(shape))}, "
            f"missing {sorted(keys(shape) - set(value))}"
        )
        for key, hint in get_type_hints(shape).items():
            check(value[key], hint, f"{path}.{key}")
    elif origin is list:
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        for i, item in enumerate(value):
            check(item, get_args(shape)[0], f"{path}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), f"{path}: {value!r} is not an object"
        key_type, value_type = get_args(shape)
        for key, item in value.items():
            check(key, key_type, f"{path} key")
            check(item, value_type, f"{path}.{key}")
    elif shape is type(None):
        assert value is None, f"{path}: {value!r} is not null"
    elif shape is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r}"
    elif shape is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r} is not an integer"
    else:
        assert isinstance(value, shape), f"{path}: {value!r} is not {shape.__name__}"


def parse(stdout: str, shape: Any) -> Any:
    """The one JSON document on stdout, checked against `shape`; returned for more asserts."""
    doc = json.loads(stdout)  # exactly one document: trailing text would fail here
    check(doc, shape)
    return doc
