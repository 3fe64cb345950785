"""One routine that fits a classifier by minibatch cross-entropy (optax, one compiled ``lax.scan``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._validation import check_key, check_positive_int
from ._config import standard_promotion


__all__ = ["fit_classifier"]

_KEY_SCHEMES = ("fold_in", "split")


def _call(model, x):
    return model(x)


def fit_classifier(
    model: PyTree,
    x: Float[ArrayLike, "N d"],
    y: Int[ArrayLike, " N"],
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    input_noise: float = 0.0,
    trainable: Any = eqx.is_inexact_array,
    logits: Callable[[PyTree, Array], Array] | None = None,
    key_scheme: str = "fold_in",
) -> tuple[PyTree, Float[Array, " steps"]]:
    """Fit ``model`` to integer labels ``y`` by ``steps`` minibatch AdamW steps on the softmax
    cross-entropy, in one compiled ``lax.scan``. Returns ``(trained model, per-step losses)``.

    Deterministic given ``key``; optimiser AdamW(``learning_rate``, ``weight_decay``) without schedule.
    Args:
        model: the classifier, a pytree (e.g. an Equinox module) mapping one input to logits.
        x: inputs, shape ``(N, d)``.
        y: integer labels in ``[0, n_classes)``, shape ``(N,)``.
        key: PRNG key; step ``i`` draws its batch indices (uniform with replacement) and noise from
            ``k_i = fold_in(key, i)``.
        steps: number of optimiser steps, ``>= 1``.
        batch_size: inputs per step, ``>= 1``.
        learning_rate: AdamW's learning rate, ``> 0`` (default ``1e-3``).
        weight_decay: AdamW's weight decay, ``>= 0`` (default ``1e-4``).
        input_noise: std of Gaussian noise added to each batch's inputs (a mild regulariser), ``>= 0``
            (default 0).
        trainable: an ``eqx.partition`` filter spec (default: every floating array; pass a pytree of
            booleans to train only some leaves, the rest stay fixed and get no optimiser state).
        logits: ``logits(model, x_i)`` maps ONE input to class logits (default ``None``: ``model(x_i)``).
        key_scheme: with ``"fold_in"`` (default) the indices come from ``k_i`` and the noise from
            ``fold_in(k_i, 1)``; with ``"split"`` from the two halves of ``split(k_i)``.
    """
    key = check_key(key)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if key_scheme not in _KEY_SCHEMES:
        raise ValueError(f"`key_scheme` must be one of {_KEY_SCHEMES}, got {key_scheme!r}.")
    if not (learning_rate > 0 and weight_decay >= 0 and input_noise >= 0):
        raise ValueError("`learning_rate` must be positive, `weight_decay` and `input_noise` non-negative.")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"`x` must have shape (N, d) and `y` shape (N,), got {x.shape} and {y.shape}.")
    return _fit(
        model,
        x,
        y,
        key,
        steps,
        batch_size,
        float(learning_rate),
        float(weight_decay),
        float(input_noise),
        trainable,
        _call if logits is None else logits,
        key_scheme,
    )


@eqx.filter_jit
def _fit(model, x, y, key, steps, batch, lr, wd, noise, trainable, logits, key_scheme):
    opt = standard_promotion(optax.adamw(lr, weight_decay=wd))
    params, static = eqx.partition(model, trainable)

    def step(carry, i):
        params, opt_state = carry
        k = jr.fold_in(key, i)
        if key_scheme == "fold_in":
            k_idx, k_noise = k, jr.fold_in(k, 1)
        else:
            k_idx, k_noise = jr.split(k)
        idx = jr.randint(k_idx, (batch,), 0, x.shape[0])
        xb = x[idx] + noise * jr.normal(k_noise, x[idx].shape, x.dtype)

        def loss_fn(p):
            net = eqx.combine(p, static)
            out = jax.vmap(lambda xi: logits(net, xi))(xb)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, y[idx]))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
    return eqx.combine(params, static), losses
