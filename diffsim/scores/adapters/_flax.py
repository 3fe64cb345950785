"""Flax modules (linen and nnx) as batched JAX callables for :class:`~diffsim.scores.adapters.CallableScore`.

Flax is an optional extra (``pip install diffsim[flax]``): it is imported only when a Flax module is wrapped.
The parameters are array leaves of these Equinox modules, so they are traced, differentiated and trained
like any diffsim network's.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree


__all__ = ["LinenCall", "NnxCall", "import_flax"]


def import_flax() -> ModuleType:
    """``import flax`` (and ``flax.nnx``), with an install hint when it is missing."""
    try:
        flax = importlib.import_module("flax")
        importlib.import_module("flax.nnx")
    except ImportError as err:
        raise ImportError(
            f"Wrapping a Flax module needs the optional dependency flax: `pip install diffsim[flax]`. ({err})"
        ) from err
    return flax


class LinenCall(eqx.Module):
    """``module.apply(variables, x, t[, cond])`` with ``variables`` as array leaves."""

    variables: PyTree
    module: Any = eqx.field(static=True)

    def __init__(self, module: Any, variables: PyTree):
        import_flax()
        if not hasattr(module, "apply"):
            raise TypeError(f"`module` must be a flax.linen Module, got {type(module).__name__}.")
        self.module = module
        self.variables = variables

    def __call__(self, x, t, *cond):
        with jax.numpy_dtype_promotion("standard"):  # Flax's layers promote inputs with their parameters
            return self.module.apply(self.variables, x, t, *cond)


class NnxCall(eqx.Module):
    """``nnx.merge(graphdef, state)(x, t[, cond])`` with the nnx state as array leaves."""

    state: PyTree
    graphdef: Any = eqx.field(static=True)

    @classmethod
    def from_model(cls, model: Any) -> NnxCall:
        graphdef, state = import_flax().nnx.split(model)
        return cls(state=state, graphdef=graphdef)

    def __call__(self, x, t, *cond):
        with jax.numpy_dtype_promotion("standard"):  # Flax's layers promote inputs with their parameters
            return import_flax().nnx.merge(self.graphdef, self.state)(x, t, *cond)
