r"""One batched model call per step: the batching rule behind every adapter.

A diffsim score acts on ONE point (``score(t, x)`` with ``x`` of shape ``(d,)``) and ``simulate`` vmaps it
over particles. External models are batched: ``f(x_batch, t_batch[, cond_batch])``. :func:`batched_call`
bridges the two. Called on one point it calls ``f`` with a batch of one; under ``jax.vmap`` (any number of
nested vmaps) a :func:`jax.custom_batching.custom_vmap` rule flattens the vmapped axes into the model's
batch axis, so ``vmap(score.score)`` over ``N`` particles is ONE call ``f(x (N, *event), t (N,))``.

``custom_vmap`` has no reverse-mode rule, so the call is wrapped in a ``jax.custom_jvp`` whose tangent is
``jax.jvp`` of the plain model: derivatives (``jax.grad``, ``jax.jacfwd``, ``jax.jacrev``, also with respect
to the model's parameters, which travel as an explicit argument and never as a closure) are the model's own
JAX derivatives. Models that batch themselves under ``vmap`` (the PyTorch bridge, whose
``jax.pure_callback`` has a ``vmap_method``) set ``natively_batched = True`` and are called directly.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree


__all__ = ["TIME_INPUTS", "batched_call", "check_time_input"]

#: what the model receives as its time argument (see :func:`model_time`).
TIME_INPUTS = ("t", "log_snr", "sigma", "timestep")


def check_time_input(time_input: str) -> str:
    """Return ``time_input`` if it is one of :data:`TIME_INPUTS`, else raise ``ValueError``."""
    if time_input not in TIME_INPUTS:
        raise ValueError(f"`time_input` must be one of {TIME_INPUTS}, got {time_input!r}.")
    return time_input


def _call_model(fn: Any, x: Array, t: Array, cond: PyTree | None) -> Array:
    return fn(x, t) if cond is None else fn(x, t, cond)


def _lead(a: Array, size: int, batched: bool) -> Array:
    return a if batched else jnp.broadcast_to(a, (size,) + a.shape)


def batched_call(fn: Any, x: Array, t: Array, cond: PyTree | None = None, *, batched: bool = True) -> Array:
    r"""``fn(x, t[, cond])`` on a batch ``x (B, *event)``, ``t (B,)``, ``cond (B, ...)``, collapsing vmaps.

    Under ``jax.vmap`` over an axis of size ``A`` the rule reshapes ``(A, B, ...) -> (A B, ...)`` (unbatched
    arguments are broadcast first), makes one call, and reshapes back; nested vmaps repeat this, so the
    model always sees one flat batch. If the model's own parameters are batched (a vmap over an ensemble)
    there is no single call and the rule falls back to ``jax.vmap`` of the model. With ``batched=False``
    ``fn`` takes ONE point (``fn(x_i, t_i[, cond_i])``, e.g. a per-example Equinox module) and plain
    ``jax.vmap`` batches it.

    Args:
        fn: the model, called as ``fn(x, t)`` or ``fn(x, t, cond)``; its array leaves (an Equinox module's
            parameters) are passed as an explicit argument, so derivatives reach them. A ``fn`` with
            ``natively_batched = True`` is called directly.
        x: the batch of states ``(B, *event)``.
        t: the model's time inputs ``(B,)``.
        cond: optional conditioning, a pytree of arrays with leading axis ``B``; ``None`` calls ``fn(x, t)``.
        batched: whether ``fn`` takes a batch (default) or one point.

    Returns:
        ``fn``'s output for the batch, shape ``(B, ...)``.
    """
    if not batched:
        per_point = lambda xi, ti, ci: _call_model(fn, xi, ti, ci)  # noqa: E731
        return jax.vmap(per_point)(x, t, cond)
    if getattr(fn, "natively_batched", False):
        return _call_model(fn, x, t, cond)
    dyn, static = eqx.partition(fn, eqx.is_array)

    def native(dyn_, x_, t_, cond_):
        return _call_model(eqx.combine(dyn_, static), x_, t_, cond_)

    @jax.custom_batching.custom_vmap
    def one_call(dyn_, x_, t_, cond_):
        return native(dyn_, x_, t_, cond_)

    @one_call.def_vmap
    def _rule(axis_size, in_batched, dyn_, x_, t_, cond_):
        dyn_b, x_b, t_b, cond_b = in_batched
        if any(jax.tree.leaves(dyn_b)):  # batched parameters: no single model call exists
            axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            return jax.vmap(native, in_axes=axes)(dyn_, x_, t_, cond_), True
        xa = _lead(x_, axis_size, x_b)
        ta = _lead(t_, axis_size, t_b)
        ca = jax.tree.map(lambda c, b: _lead(c, axis_size, b), cond_, cond_b)
        n_inner = xa.shape[1]
        flat = lambda a: a.reshape((axis_size * n_inner,) + a.shape[2:])  # noqa: E731
        out = one_call(dyn_, flat(xa), flat(ta), jax.tree.map(flat, ca))
        return out.reshape((axis_size, n_inner) + out.shape[1:]), True

    @jax.custom_jvp
    def call(dyn_, x_, t_, cond_):
        return one_call(dyn_, x_, t_, cond_)

    @call.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(native, primals, tangents)

    return call(dyn, x, t, cond)


def event_size(event_shape: tuple[int, ...]) -> int:
    """``prod(event_shape)``: the dimension ``d`` of a flattened state."""
    return int(math.prod(event_shape))
