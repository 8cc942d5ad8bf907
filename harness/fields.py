"""Typed YAML fields: a value checked against a dataclass field, a section, a list of names.

    python -c "from harness.fields import check_type; print(check_type('x', 3, 'float'))"

Scenarios (harness.config) and link profiles (harness.emulation.links) are validated with
these, so every error names its field the same way.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from harness.errors import HarnessError


def check_type(where: str, value: Any, annotation: str) -> Any:
    """Coerce/check one scalar against a dataclass field's annotation string."""
    optional = "None" in annotation
    base = annotation.replace(" | None", "")
    if value is None:
        if optional:
            return None
        expected = {"int": "an integer", "float": "a number"}.get(base)
        raise HarnessError(f"{where}: expected {expected}, got None" if expected
                           else f"{where}: must not be empty")
    if base == "str":
        if not isinstance(value, str):
            raise HarnessError(f"{where}: expected a string, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise HarnessError(f"{where}: expected an integer, got {value!r}")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HarnessError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if base == "bool":
        if not isinstance(value, bool):
            raise HarnessError(f"{where}: expected true or false, got {value!r}")
        return value
    raise AssertionError(f"unhandled annotation {annotation}")


def top_mapping(raw: Any, where: str, keys, required=()) -> dict:
    """A YAML document's top level: a mapping with only `keys`, every `required` one present."""
    if not isinstance(raw, dict):
        raise HarnessError(f"{where}: expected a mapping at the top level")
    for key in raw:
        if key not in keys:
            raise HarnessError(f"{where}: {key}: unknown key (known: {', '.join(keys)})")
    for key in required:
        if key not in raw:
            raise HarnessError(f"{where}: {key}: missing")
    return raw


def section(cls, raw: Any, where: str, removed: dict | None = None):
    """A dataclass from a mapping: unknown keys refused by name, each value checked."""
    removed = removed or {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HarnessError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if f"{where}.{key}" in removed:
            raise HarnessError(f"{where}.{key}: {removed[f'{where}.{key}']}")
        if key not in known:
            raise HarnessError(f"{where}.{key}: unknown key (known: {', '.join(known)})")
    values = {k: check_type(f"{where}.{k}", v, str(known[k].type)) for k, v in raw.items()}
    return cls(**values)


def str_list(raw: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A name or a list of distinct names (from `allowed`, when given)."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise HarnessError(f"{where}: must not be empty")
    for item in items:
        if not isinstance(item, str):
            raise HarnessError(f"{where}: expected a name or a list of names, got {item!r}")
        if allowed is not None and item not in allowed:
            raise HarnessError(f"{where}: unknown value '{item}' (known: {', '.join(allowed)})")
    if len(set(items)) != len(items):
        raise HarnessError(f"{where}: duplicate entries in {items}")
    return tuple(items)
