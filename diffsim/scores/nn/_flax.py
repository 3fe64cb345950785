"""Adapter: any Flax module (linen or nnx) with its parameters as a token-conditional diffsim score.

Flax is an optional extra: this module imports it lazily (:func:`_import_flax`), so ``import diffsim`` works
without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ..._validation import check_positive_int
from ...processes import AbstractProcess
from .._conversions import check_parametrisation
from ._checks import check_alphabets, check_point, check_process
from ._token import AbstractTokenScore


__all__ = ["FlaxScore"]


def _import_flax() -> ModuleType:
    """Import ``flax`` (and ``flax.nnx``) on first use, with an install hint when it is missing."""
    try:
        flax = importlib.import_module("flax")
        importlib.import_module("flax.nnx")
    except ImportError as err:
        raise ImportError(
            "FlaxScore needs the optional dependency flax: install it with `pip install diffsim[flax]` "
            f"(or `pip install flax>=0.10`). ({err})"
        ) from err
    return flax


class FlaxScore(AbstractTokenScore):
    r"""Any Flax module (linen or nnx) with its parameters as a diffsim score.

    The module is called on ONE point, ``module(t_in, x)`` or, when ``alphabet_sizes`` is non-empty,
    ``module(t_in, x, tokens)``, with ``t_in`` the time ``t`` (``time_input="t"``) or the log-SNR
    (``time_input="log_snr"``), and must return an array of shape ``(d,)`` in :attr:`parametrisation`.

    The parameters are a pytree field (:attr:`params`), so :func:`diffsim.training.train`
    trains them like any Equinox model. Build with :meth:`from_linen` or :meth:`from_nnx`.

    Flax is an optional dependency (``pip install diffsim[flax]``): it is imported only when a Flax module
    is wrapped or an nnx model is called.

    Args:
        params: the parameter pytree (linen ``variables`` or an nnx state), passed first to ``apply_fn``.
        apply_fn: ``apply_fn(params, t_in, x[, tokens]) -> (d,)``, for one point.
        dim: the dimension ``d`` of one point (a positive integer).
        process: the forward process; ``None`` takes :meth:`~diffsim.processes.VP.ou`.
        alphabet_sizes: the token alphabet sizes ``(A_1, ..., A_n)``; empty (default) for an unconditional
            module, which is then called without tokens.
        parametrisation: what the module returns: ``"eps"`` (default), ``"x0"``, ``"score"`` or ``"v"``.
        time_input: ``"log_snr"`` (default) or ``"t"``.
    """

    params: PyTree
    apply_fn: Callable = eqx.field(static=True)
    process: AbstractProcess
    data_dim: int = eqx.field(static=True)
    alphabet_sizes: tuple[int, ...] = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)
    time_input: str = eqx.field(static=True)

    def __init__(
        self,
        params: PyTree,
        apply_fn: Callable,
        dim: int,
        *,
        process: AbstractProcess | None = None,
        alphabet_sizes: Sequence[int] = (),
        parametrisation: str = "eps",
        time_input: str = "log_snr",
    ):
        if not callable(apply_fn):
            raise TypeError(
                "`apply_fn` must be callable apply_fn(params, t, x[, tokens]), "
                f"got {type(apply_fn).__name__}."
            )
        if time_input not in ("t", "log_snr"):
            raise ValueError(f"`time_input` must be 't' or 'log_snr', got {time_input!r}.")
        self.params = params
        self.apply_fn = apply_fn
        self.data_dim = check_positive_int(dim, "dim")
        self.process = check_process(process)
        self.alphabet_sizes = check_alphabets(alphabet_sizes)
        self.parametrisation = check_parametrisation(parametrisation)
        self.time_input = time_input

    @classmethod
    def from_linen(cls, module: Any, variables: PyTree, dim: int, **kwargs) -> FlaxScore:
        """Wrap a ``flax.linen.Module`` and its ``variables`` (the dict returned by ``module.init``)."""
        _import_flax()
        if not hasattr(module, "apply"):
            raise TypeError(f"`module` must be a flax.linen Module, got {type(module).__name__}.")
        return cls(variables, _LinenApply(module), dim, **kwargs)

    @classmethod
    def from_nnx(cls, model: Any, dim: int, **kwargs) -> FlaxScore:
        """Wrap a ``flax.nnx.Module`` (split into a static graph definition and a state pytree)."""
        nnx = _import_flax().nnx
        graphdef, state = nnx.split(model)
        return cls(state, _NnxApply(graphdef), dim, **kwargs)

    @property
    def dim(self) -> int:
        return self.data_dim

    def raw(self, t, x, tokens):
        check_point(x, self.data_dim)
        t = jnp.asarray(t, dtype=x.dtype)
        t_in = t if self.time_input == "t" else self.process.log_snr(t)
        args = (t_in, x) if self.n_tokens == 0 else (t_in, x, tokens)
        out = self.apply_fn(self.params, *args)
        if jnp.shape(out) != (self.data_dim,):
            raise ValueError(f"The Flax module must return shape ({self.data_dim},), got {jnp.shape(out)}.")
        return out.astype(x.dtype)


class _LinenApply(eqx.Module):
    """Hashable static wrapper around a linen module's ``apply`` (compared by identity)."""

    module: Any = eqx.field(static=True)

    def __call__(self, variables, *args):
        with jax.numpy_dtype_promotion("standard"):  # Flax's layers promote inputs with their parameters
            return self.module.apply(variables, *args)

    def __hash__(self):
        return id(self.module)

    def __eq__(self, other):
        return isinstance(other, _LinenApply) and other.module is self.module


class _NnxApply(eqx.Module):
    graphdef: Any = eqx.field(static=True)

    def __call__(self, state, *args):
        with jax.numpy_dtype_promotion("standard"):  # Flax's layers promote inputs with their parameters
            return _import_flax().nnx.merge(self.graphdef, state)(*args)
