"""Fingerprints: a SHA-256 of models (structure, static values and weights), arrays, keys and configs that
keys the training cache, and the stable structural signature it hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np


__all__ = ["fingerprint", "signature", "type_name"]

_FINGERPRINT_VERSION = "1"


def type_name(cls: type) -> str:
    """``module.QualName`` of a class with private module segments dropped
    (``diffsim.scores.nn._mlp.MLPScore`` -> ``diffsim.scores.nn.MLPScore``), so that moving a class between
    private modules keeps its name."""
    parts = [p for p in cls.__module__.split(".") if not p.startswith("_")]
    return ".".join(parts + [cls.__qualname__])


def signature(node: Any) -> Any:
    """A deterministic description of a pytree's structure and static values (no memory addresses)."""
    if isinstance(node, eqx.Module):
        fields = [(f.name, signature(getattr(node, f.name, None))) for f in dataclasses.fields(node)]
        return [type_name(type(node)), fields]
    if isinstance(node, (jax.Array, np.ndarray)):
        return ["array", list(node.shape), str(node.dtype)]
    if isinstance(node, (list, tuple)):
        return [type(node).__name__, [signature(v) for v in node]]
    if isinstance(node, dict):
        return ["dict", [[str(k), signature(v)] for k, v in sorted(node.items(), key=lambda kv: str(kv[0]))]]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if callable(node):
        return "callable:" + getattr(node, "__qualname__", getattr(node, "__name__", type(node).__qualname__))
    return "object:" + type(node).__qualname__


def fingerprint(*items: Any) -> str:
    """SHA-256 (first 16 hex digits) of models, arrays, keys and JSON-able configs, in order.

    Args:
        *items: Equinox modules (structure, static values and array weights), arrays, PRNG keys, ``None``
            and JSON-able values (other objects through ``str``).

    Returns:
        16 lower-case hex digits.
    """
    h = hashlib.sha256(_FINGERPRINT_VERSION.encode())
    for item in items:
        if isinstance(item, jax.Array) and jnp.issubdtype(item.dtype, jax.dtypes.prng_key):
            item = np.asarray(jr.key_data(item))
        if isinstance(item, eqx.Module):
            h.update(json.dumps(signature(item)).encode())
            buf = io.BytesIO()
            eqx.tree_serialise_leaves(buf, eqx.filter(item, eqx.is_array))
            h.update(buf.getvalue())
        elif isinstance(item, (jax.Array, np.ndarray)):
            arr = np.ascontiguousarray(np.asarray(item))
            h.update(f"{arr.shape}{arr.dtype}".encode())
            h.update(arr.tobytes())
        elif item is None:
            h.update(b"None")
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
