"""Tamper-evident checkpoints: one file per pytree (a model or a training state), written atomically.

**Format** (version 2): the magic line ``DIFFSIM-CHECKPOINT-2``, the length of a JSON header (8 bytes,
little endian), the header, then the Equinox serialisation of the array leaves. The header holds the
caller's ``meta`` and a description of what was saved:

- ``class``: the class of the saved tree (e.g. ``diffsim.training.TrainState``), and ``modules``: the
  class of every Equinox module inside it by path (the model class, its layers);
- ``static``: every static field by path (``parametrisation``, ``data_std``, ``image_shape``,
  ``alphabet_sizes``, ...);
- ``leaves``: the path, shape and dtype of every leaf;
- ``data_bytes`` and ``sha256``: the length and SHA-256 checksum of the serialised leaves.

:func:`load_checkpoint` checks all of them against the skeleton it loads into and raises
:class:`CheckpointError` (a ``ValueError``) naming what differs: a truncated file ("truncated"), altered
array data (checksum), another model class, static field, shape or dtype. A checkpoint saved with
``parametrisation="eps"`` therefore never loads into a ``"v"`` model, nor one with another ``data_std``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

from .._io import write_atomic
from ._fingerprint import signature, type_name


__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "read_checkpoint_meta",
    "save_checkpoint",
    "save_model",
]

_MAGIC = b"DIFFSIM-CHECKPOINT-2\n"
_MAGIC_PREFIX = b"DIFFSIM-CHECKPOINT-"


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupted, of an unknown format, or does not fit the model it is loaded
    into (another class, static field, shape or dtype)."""


# --- what a tree is: classes, static fields, leaves ---------------------------------------------------
def _jsonable(value: Any) -> Any:
    """A static field value as it reads back from the JSON header (tuples as lists)."""
    return json.loads(json.dumps(signature(value), default=str))


def describe(tree: PyTree) -> dict[str, Any]:
    """``{"class", "modules", "static", "leaves"}`` of a pytree (see the module docstring)."""
    modules: dict[str, str] = {}
    static: dict[str, Any] = {}

    def visit(node: Any, path: str) -> None:
        if isinstance(node, eqx.Module):
            modules[path or "."] = type_name(type(node))
            for f in dataclasses.fields(node):
                value = getattr(node, f.name, None)
                if f.metadata.get("static", False):
                    static[f"{path}.{f.name}"] = _jsonable(value)
                else:
                    visit(value, f"{path}.{f.name}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")
        elif isinstance(node, dict):
            for k in sorted(node, key=str):
                visit(node[k], f"{path}[{k!r}]")

    visit(tree, "")
    leaves = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(key_path)
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            leaves.append([name, list(np.shape(leaf)), str(leaf.dtype)])
        else:
            leaves.append([name, [], type(leaf).__name__])
    return {"class": type_name(type(tree)), "modules": modules, "static": static, "leaves": leaves}


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Human-readable differences between the description in a header and that of the skeleton."""
    if saved["class"] != wanted["class"]:
        return [f"it holds a {saved['class']}, not a {wanted['class']}"]
    out = []
    for path in sorted(set(saved["modules"]) | set(wanted["modules"])):
        a, b = saved["modules"].get(path), wanted["modules"].get(path)
        if a != b:
            out.append(f"model class at {path}: checkpoint {a}, model {b}")
    if out:
        return out
    for path in sorted(set(saved["static"]) | set(wanted["static"])):
        a, b = saved["static"].get(path, "<absent>"), wanted["static"].get(path, "<absent>")
        if a != b:
            out.append(f"static field {path}: checkpoint {a!r}, model {b!r}")
    if len(saved["leaves"]) != len(wanted["leaves"]):
        out.append(f"{len(saved['leaves'])} leaves in the checkpoint, {len(wanted['leaves'])} in the model")
        return out
    for (pa, sa, da), (pb, sb, db) in zip(saved["leaves"], wanted["leaves"], strict=True):
        if pa != pb:
            out.append(f"leaf {pb}: the checkpoint has {pa} in its place")
        elif sa != sb:
            out.append(f"shape of {pb}: checkpoint {tuple(sa)}, model {tuple(sb)}")
        elif da != db:
            out.append(f"dtype of {pb}: checkpoint {da}, model {db}")
    return out


# --- writing and reading ----------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, tree: PyTree, meta: dict[str, Any] | None = None) -> Path:
    """Write ``tree`` (any pytree of arrays, e.g. a :class:`~diffsim.training.TrainState` or a model) and a
    JSON ``meta`` header to ``path`` atomically, with its description and checksum (module docstring).
    Bit-exact: :func:`load_checkpoint` returns identical arrays.

    Args:
        path: the file to write (replaced atomically if it exists).
        tree: the pytree to save; its array leaves are serialised, its structure and static fields described.
        meta: JSON-able metadata stored in the header (default ``None``: ``{}``); read it back with
            :func:`read_checkpoint_meta`.

    Returns:
        The path written.
    """
    data = io.BytesIO()
    eqx.tree_serialise_leaves(data, tree)
    payload = data.getvalue()
    header = {
        "meta": meta or {},
        "tree": describe(tree),
        "data_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    head = json.dumps(header, sort_keys=True).encode()
    return write_atomic(path, _MAGIC + len(head).to_bytes(8, "little") + head + payload)


def _read_exact(fh, n: int, path: Path, what: str) -> bytes:
    out = fh.read(n)
    if len(out) < n:
        raise CheckpointError(
            f"Checkpoint {path} is truncated: {what} needs {n} bytes, the file holds {len(out)} more."
        )
    return out


@contextlib.contextmanager
def _open_checkpoint(path: str | os.PathLike):
    """Open a checkpoint, check its magic bytes and read its JSON header; yields ``(file, header)`` with
    the file positioned at the serialised leaves."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    with open(path, "rb") as fh:
        magic = fh.read(len(_MAGIC))
        if magic != _MAGIC:
            if len(magic) < len(_MAGIC) and _MAGIC.startswith(magic) and magic:
                raise CheckpointError(f"Checkpoint {path} is truncated (inside its magic bytes).")
            if magic.startswith(_MAGIC_PREFIX):
                found = magic.strip().decode(errors="replace")
                raise CheckpointError(
                    f"{path} is a diffsim checkpoint of another format ({found}; this version reads "
                    f"{_MAGIC.strip().decode()}, with checksums); delete it and retrain."
                )
            raise CheckpointError(f"{path} is not a diffsim checkpoint.")
        n = int.from_bytes(_read_exact(fh, 8, path, "the header length"), "little")
        try:
            header = json.loads(_read_exact(fh, n, path, "the header").decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"Checkpoint {path} has a corrupted header: {err}") from err
        if not isinstance(header, dict) or not {"meta", "tree", "data_bytes", "sha256"} <= set(header):
            raise CheckpointError(f"Checkpoint {path} has a corrupted header (missing fields).")
        yield fh, header


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The caller's ``meta`` stored in a checkpoint's header (without reading the arrays).

    Args:
        path: a checkpoint file; ``FileNotFoundError`` when absent, :class:`CheckpointError` when it is not
            a readable diffsim checkpoint.
    """
    with _open_checkpoint(path) as (_, header):
        return header["meta"]


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like`` (same classes,
    static fields, tree structure, shapes and dtypes). Returns ``(tree, meta)``.

    Raises :class:`CheckpointError` naming what is wrong: a truncated file, array data that fails the
    checksum, or every difference between the saved tree and ``like``.

    Args:
        path: a checkpoint file written by :func:`save_checkpoint`.
        like: a skeleton of the saved tree (e.g. a freshly initialised model or :class:`TrainState`);
            only its structure, static fields, shapes and dtypes are used.
    """
    path = Path(path)
    with _open_checkpoint(path) as (fh, header):
        payload = fh.read()
    expected = int(header["data_bytes"])
    if len(payload) < expected:
        raise CheckpointError(
            f"Checkpoint {path} is truncated: {len(payload)} of {expected} bytes of array data."
        )
    if len(payload) > expected:
        raise CheckpointError(
            f"Checkpoint {path} is corrupted: {len(payload) - expected} bytes after the array data."
        )
    digest = hashlib.sha256(payload).hexdigest()
    if digest != header["sha256"]:
        raise CheckpointError(
            f"Checkpoint {path} is corrupted: the SHA-256 checksum of its array data is {digest[:16]}..., "
            f"the header says {str(header['sha256'])[:16]}...."
        )
    diffs = _differences(header["tree"], describe(like))
    if diffs:
        more = f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""
        raise CheckpointError(
            f"Checkpoint {path} does not match the given model/state: " + "; ".join(diffs[:8]) + more
        )
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:
        raise CheckpointError(
            f"Checkpoint {path} does not match the given model/state structure: {err}"
        ) from err
    return tree, header["meta"]


def save_model(path: str | os.PathLike, model: PyTree, meta: dict[str, Any] | None = None) -> Path:
    """Save a model (any Equinox module) atomically; load it with :func:`load_model` and a like-shaped
    skeleton (e.g. the same constructor with any key).

    Args:
        path: the file to write (replaced atomically).
        model: the model to save.
        meta: JSON-able metadata for the header (default ``None``: ``{}``).

    Returns:
        The path written.
    """
    return save_checkpoint(path, model, meta)


def load_model(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Load a model saved with :func:`save_model` into the structure of ``like`` (checked as in
    :func:`load_checkpoint`).

    Args:
        path: a file written by :func:`save_model`.
        like: a model of the same class, static fields, shapes and dtypes (e.g. the same constructor with any
            key) whose arrays are replaced by the saved ones.

    Returns:
        The loaded model.
    """
    return load_checkpoint(path, like)[0]
