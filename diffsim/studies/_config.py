"""Study configs: frozen dataclasses, the ``quick`` preset and ``--set key=value`` overrides parsed against
the fields' type hints (non-finite numbers are rejected: a config field is never NaN by accident)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable
from typing import Any


__all__ = ["build_config", "check_fields", "parse_overrides"]


def check_fields(
    config: Any,
    *,
    counts: Iterable[str] = (),
    positive: Iterable[str] = (),
    nonnegative: Iterable[str] = (),
    fractions: Iterable[str] = (),
) -> None:
    """Validate a study config's numeric fields, raising ``ValueError`` that names the field (never an
    internal argument of the function the field is passed to later): ``counts`` positive integers,
    ``positive`` numbers > 0, ``nonnegative`` numbers >= 0, ``fractions`` numbers in [0, 1)."""

    def value(name: str) -> Any:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"`{name}` must be a number, got {v!r}.")
        return v

    for name in counts:
        v = value(name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
    for name in positive:
        if not value(name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}.")
    for name in nonnegative:
        if not value(name) >= 0:
            raise ValueError(f"`{name}` must be >= 0, got {getattr(config, name)!r}.")
    for name in fractions:
        if not 0 <= value(name) < 1:
            raise ValueError(f"`{name}` must lie in [0, 1), got {getattr(config, name)!r}.")


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse_value(text, a, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"--set {key}: cannot parse {text!r} as {annotation}.")
    if origin in (tuple, list):
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        if args and args[-1] is Ellipsis:
            vals = [_parse_value(p, args[0], key) for p in parts]
        elif args:
            if len(parts) != len(args):
                raise ValueError(f"--set {key}: expected {len(args)} comma-separated values, got {text!r}.")
            vals = [_parse_value(p, a, key) for p, a in zip(parts, args, strict=False)]
        else:
            vals = parts
        return tuple(vals) if origin is tuple else vals
    if annotation is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"--set {key}: expected a boolean (true/false), got {text!r}.")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--set {key}: expected an integer, got {text!r}.") from None
    if annotation is float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"--set {key}: expected a number, got {text!r}.") from None
        if not math.isfinite(v):
            raise ValueError(f"--set {key}: expected a finite number, got {text!r}.")
        return v
    if annotation is str:
        return text
    if annotation is Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    raise ValueError(f"--set {key}: fields of type {annotation} cannot be set from the command line.")


def parse_overrides(config_cls: type, items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings against the fields (and type hints) of ``config_cls``."""
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"Malformed override {item!r}: expected key=value.")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"Malformed override {item!r}: empty key.")
        if key not in names:
            raise ValueError(
                f"Unknown config field {key!r} for {config_cls.__qualname__}; "
                f"fields are: {', '.join(sorted(names))}."
            )
        out[key] = _parse_value(value.strip(), hints[key], key)
    return out


def build_config(spec: Any, overrides: dict[str, Any] | None = None, *, quick: bool = False) -> Any:
    """Defaults, then the quick preset (if asked), then overrides; validated by the config's own checks."""
    values = dict(spec.quick) if quick else {}
    values.update(overrides or {})
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"Unknown config fields for study {spec.name!r}: {sorted(unknown)}.")
    return spec.config_cls(**values)
