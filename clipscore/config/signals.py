"""Options of the curation signals computed in the scoring pass: zero-shot concepts and heads.

``concepts:`` maps a name to prompts, either a list (the column ``concept_<name>`` is the maximum
cosine of the image with them) or ``{positive: [...], negative: [...]}`` (a probability of the
positive side, by the primary model's own rule: docs/curation.md). ``heads:`` maps a name to a
``.safetensors`` MLP over the unit image embedding (``head_<name>``). Both are plain, hashable
values (tuples) so the options stay frozen and travel to the executors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clipscore.config.coerce import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _check_name(kind: str, name: Any) -> str:
    name = str(name).strip()
    if not _NAME.match(name):
        raise ConfigError(f"{kind} name '{name}' must be lower-case letters, digits and _, starting with a letter "
                          f"(it becomes the column {kind}_{name}).")
    return name


def _prompts(kind: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(p, str) and p.strip() for p in value):
        raise ConfigError(f"{kind} needs a non-empty list of non-blank prompt strings; got {value!r}.")
    return tuple(p.strip() for p in value)


@dataclass(frozen=True)
class ConceptSpec:
    """A zero-shot concept: ``positive`` prompts and, for the contrast form, ``negative`` ones."""

    name: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()

    @property
    def contrast(self) -> bool:
        return bool(self.negative)

    @classmethod
    def from_mapping(cls, mapping: dict) -> list["ConceptSpec"]:
        """``{name: [prompts]}`` or ``{name: {positive: [...], negative: [...]}}``, one spec per name."""
        return [cls.coerce((name, value)) for name, value in mapping.items()]

    @classmethod
    def coerce(cls, value: Any) -> "ConceptSpec":
        if isinstance(value, ConceptSpec):
            return value
        if isinstance(value, dict) and set(value) <= {"name", "positive", "negative", "prompts"} and "name" in value:
            name, rest = value["name"], {k: v for k, v in value.items() if k != "name"}
            value = (name, rest.get("prompts") if "prompts" in rest else rest)
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ConfigError(f"A concepts entry is 'name: [prompts]' or 'name: {{positive: [...], negative: [...]}}'; "
                              f"got {value!r}.")
        name, body = value
        name = _check_name("concept", name)
        if isinstance(body, dict):
            unknown = set(body) - {"positive", "negative"}
            if unknown or "positive" not in body:
                raise ConfigError(f"Concept '{name}' takes positive and negative prompt lists; got keys {sorted(body)}.")
            negative = _prompts(f"Concept '{name}' negative", body["negative"]) if body.get("negative") else ()
            if "negative" in body and not negative:
                raise ConfigError(f"Concept '{name}': negative is empty; drop it or give prompts.")
            return cls(name, _prompts(f"Concept '{name}' positive", body["positive"]), negative)
        return cls(name, _prompts(f"Concept '{name}'", body))

    @staticmethod
    def type_name() -> str:
        return "a mapping of concept name -> [prompts] or {positive: [...], negative: [...]}"


@dataclass(frozen=True)
class HeadSpec:
    """A head: ``name`` (column ``head_<name>``) and the ``.safetensors`` file holding its MLP."""

    name: str
    path: str

    @classmethod
    def from_mapping(cls, mapping: dict) -> list["HeadSpec"]:
        return [cls.coerce((name, path)) for name, path in mapping.items()]

    @classmethod
    def coerce(cls, value: Any) -> "HeadSpec":
        if isinstance(value, HeadSpec):
            return value
        if isinstance(value, str) and "=" in value:
            value = tuple(value.split("=", 1))
        if isinstance(value, dict) and set(value) == {"name", "path"}:
            value = (value["name"], value["path"])
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str) and value[1].strip()):
            raise ConfigError(f"A heads entry is 'name: path/to/head.safetensors' (or name=path); got {value!r}.")
        name, path = value
        path = path.strip()
        if not path.endswith(".safetensors"):
            raise ConfigError(f"Head '{name}': {path} is not a .safetensors file; convert a .pth once "
                              "(docs/curation.md shows the one line): we never unpickle weights.")
        return cls(_check_name("head", name), path)

    @staticmethod
    def type_name() -> str:
        return "a mapping of head name -> path/to/head.safetensors"
