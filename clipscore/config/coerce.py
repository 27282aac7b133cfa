"""Typed coercion shared by every option object: one rule set for YAML, ``--set`` and Python.

``coerce_fields(obj)`` runs in each option dataclass's ``__post_init__``, so ``merge_keys="id"`` is
``("id",)`` whether it came from a YAML file, the command line or a Python call, and a value of the
wrong type is a ``ConfigError`` that names the option, never a late crash inside a Spark task.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any


class Options:
    """The base of every option object: a frozen dataclass that coerces and validates its fields in
    ``__post_init__`` (so building one from Python is as safe as from YAML or flags)."""

    def replace(self, **changes: Any):
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """Bad configuration: raised before any work starts, with a message that says what to change."""


def coerce_fields(obj: Any) -> None:
    """Coerce every field of a frozen dataclass instance in place to its annotated type."""
    hints = type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        coerced = coerce_value(f.name, hints[f.name], value)
        if coerced is not value:
            object.__setattr__(obj, f.name, coerced)


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce_value(key: str, hint: Any, raw: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return raw.strip().lower() in ("true", "yes", "1")
            raise ValueError
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if origin is tuple:
            item_type = args[0]
            if isinstance(raw, (str, dict)) or hasattr(item_type, "coerce") and isinstance(raw, item_type):
                raw = _split_list(raw, item_type)
            if not isinstance(raw, (list, tuple)):
                raise ValueError
            return tuple(_item(item_type, x) for x in raw)
        if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2 \
                and args[0] in (int, float):  # an optional number: None or blank stays unset
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return None
            return coerce_value(key, args[0], raw)
        if hint is str or (origin in (typing.Union, types.UnionType) and str in args):
            if raw is None:
                return None
            return str(raw)
    except ConfigError:  # a structured item's own message (a bad model name) says more
        raise
    except (TypeError, ValueError):
        pass
    else:
        return raw
    raise ConfigError(f"Option '{key}' expects {_type_name(hint)}, got {raw!r}.")


def _split_list(raw: Any, item_type: Any) -> list:
    """A single value where a list is expected: a comma-separated string, or one structured item."""
    if hasattr(item_type, "coerce"):  # structured items (a model spec) are never comma-split
        if isinstance(raw, dict) and hasattr(item_type, "from_mapping"):  # {name: value, ...}: one item per key
            return item_type.from_mapping(raw)
        return [raw]
    return [part for part in raw.split(",") if part.strip()]


def _item(item_type: Any, value: Any) -> Any:
    if hasattr(item_type, "coerce"):
        return item_type.coerce(value)
    return item_type(value) if item_type is not str else str(value).strip()


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if hasattr(item, "type_name"):
            return item.type_name()
        return "a list (e.g. [0.2, 0.3] or 0.2,0.3)"
    return "a string"


def choice(obj: Any, key: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, key)
    if value not in allowed:
        raise ConfigError(f"Option '{key}' must be one of {', '.join(allowed)}; got '{value}'.")
