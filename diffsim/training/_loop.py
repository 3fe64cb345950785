r"""The training loop: one jit-compiled DSM step (optax), the EMA, exact resume, and the cache.

**Optimiser.** Adam (AdamW with ``weight_decay > 0``) with linear warm-up and cosine decay to
``final_lr_fraction * learning_rate``, after global-norm gradient clipping (optax). An exponential moving
average of the weights with decay ``min(ema_decay, (1 + k) / (10 + k))`` at step ``k`` is kept beside them.

**Determinism and resume.** Step ``k`` draws everything (batch indices, times, noise, token dropout) from
``fold_in(key, k)``; the whole training state (weights, EMA, optimiser state, step) is checkpointed
bit-exactly, so training resumed from a checkpoint reproduces uninterrupted training exactly.

**Checkpoints** (:mod:`diffsim.training._checkpoint`: tamper-evident single files, written atomically)
hold the whole state with the loss history and the fingerprint. A non-finite loss stops training with
:class:`NonFiniteLossError`; the last checkpoint on disk (always written from a finite state) is kept.

**Cache.** :func:`train_or_load` keys a checkpoint by a hash of the model (structure and initial
weights), the data, the tokens, the training config and the key, so several studies reuse one trained
network instead of retraining; a cache file that is truncated, corrupted or does not fit the model is a
cache miss (a warning names the file) and is retrained.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._validation import as_float_array, check_key, check_positive_int
from ..processes import AbstractProcess
from ..scores._base import AbstractScore
from ..scores.nn import AbstractTokenScore, check_tokens
from ._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ._config import TrainConfig, make_optimizer
from ._fingerprint import fingerprint
from ._loss import dsm_loss_terms, sample_times


__all__ = [
    "NonFiniteLossError",
    "TrainResult",
    "TrainState",
    "initial_state",
    "train",
    "train_or_load",
    "trainable_filter",
]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint (if any) is kept on disk."""


class TrainState(eqx.Module):
    """Everything that evolves during training: trainable weights, their EMA, optimiser state, step.

    Attributes:
        params: the trainable part of the model (``eqx.partition`` by :func:`trainable_filter`).
        ema: the exponential moving average of ``params``, same structure.
        opt_state: the optax optimiser state of :func:`make_optimizer`.
        step: optimiser steps done, an int32 scalar.
    """

    params: PyTree
    ema: PyTree
    opt_state: PyTree
    step: Array


class TrainResult(eqx.Module):
    """Outcome of :func:`train` / :func:`train_or_load`.

    Attributes:
        model: the model with the final weights.
        ema: the model with the exponential moving average of the weights (use it for sampling).
        losses: the per-step training loss, shape ``(steps,)`` (float64 NumPy array).
        steps: the optimiser steps done.
        checkpoint: the checkpoint file, or ``None`` when none was written.
        from_cache: whether it was loaded from :func:`train_or_load`'s cache instead of trained.
        elapsed_s: the training time of this call in seconds (0 when loaded from the cache).
    """

    model: AbstractScore
    ema: AbstractScore
    losses: np.ndarray
    steps: int
    checkpoint: Path | None
    from_cache: bool
    elapsed_s: float


def trainable_filter(model: PyTree) -> PyTree:
    """Filter spec for ``eqx.partition``: every floating array leaf is trainable except those inside a
    process (schedules are fixed).

    Args:
        model: the model (any pytree).

    Returns:
        A pytree of booleans with the structure of ``model``.
    """

    def spec(node):
        if isinstance(node, AbstractProcess):
            return jax.tree.map(lambda _: False, node)
        return eqx.is_inexact_array(node)

    return jax.tree.map(spec, model, is_leaf=lambda n: isinstance(n, AbstractProcess))


def _compiled_step(static_rest: PyTree, config: TrainConfig) -> Callable:
    """The jit-compiled train step for one model structure and config, cached on the tree structure and
    the (hashable) non-array leaves so that repeated trainings do not recompile; ``jax.jit`` then caches
    per data shape. Array leaves of the non-trainable part travel as arguments."""
    leaves, treedef = jax.tree_util.tree_flatten(static_rest)
    try:
        return _cached_step(treedef, tuple(leaves), config)
    except TypeError:  # unhashable static leaves: compile for this call only
        return _cached_step.__wrapped__(treedef, tuple(leaves), config)


@functools.lru_cache(maxsize=32)
def _cached_step(treedef, leaves: tuple, config: TrainConfig) -> Callable:
    static_rest = jax.tree_util.tree_unflatten(treedef, leaves)

    @jax.jit
    def step(state, static_arrays, data, tokens, null, key):
        static = eqx.combine(static_arrays, static_rest)
        return _train_step(state, static, data, tokens, null, key, config)

    return step


def _train_step(
    state: TrainState,
    static: PyTree,
    data: Array,
    tokens: Array | None,
    null: Array | None,
    key: jax.Array,
    config: TrainConfig,
):
    """One optimiser step: batch, token dropout, times, noise, DSM loss, clipped Adam update, EMA."""
    opt = make_optimizer(config)
    k = jr.fold_in(key, state.step)
    k_batch, k_time, k_noise, k_drop = jr.split(k, 4)
    idx = jr.randint(k_batch, (config.batch_size,), 0, data.shape[0])
    x0 = data[idx]
    tok = None
    if tokens is not None:
        tok = tokens[idx]
        if config.token_dropout > 0:
            drop = jr.bernoulli(k_drop, config.token_dropout, tok.shape)
            tok = jnp.where(drop, null[None, :], tok)
    process = eqx.combine(state.params, static).process
    t = sample_times(
        k_time,
        config.batch_size,
        process,
        scheme=config.time_sampling,
        t_min=config.t_min,
        t_max=config.t_max,
        dtype=data.dtype,
    )
    eps = jr.normal(k_noise, x0.shape, data.dtype)

    def loss_fn(params):
        model = eqx.combine(params, static)
        return jnp.mean(dsm_loss_terms(model, t, x0, eps, tok, weighting=config.weighting))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stepf = state.step.astype(data.dtype)
    decay = jnp.minimum(config.ema_decay, (1.0 + stepf) / (10.0 + stepf))
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
    return TrainState(params, ema, opt_state, state.step + 1), loss


def _init_state(params: PyTree, config: TrainConfig) -> TrainState:
    # arrays are immutable, so the EMA can start as the weights themselves; the optimiser state is built by
    # one compiled program (eagerly, every new parameter shape would compile its own zeros)
    opt_state = jax.jit(make_optimizer(config).init)(params)
    return TrainState(params, params, opt_state, jnp.asarray(0, jnp.int32))


def initial_state(model: AbstractScore, config: TrainConfig) -> TrainState:
    """The training state at step 0 for ``model`` (weights, EMA = weights, fresh optimiser state): the
    skeleton to pass as ``like`` to :func:`load_checkpoint` for a checkpoint written by :func:`train`.

    Args:
        model: the score model (its trainable part, by :func:`trainable_filter`, becomes ``params``).
        config: the :class:`TrainConfig` whose optimiser (:func:`make_optimizer`) sets ``opt_state``.
    """
    return _init_state(eqx.partition(model, trainable_filter(model))[0], config)


def _prepare_data(model, data, tokens):
    if not isinstance(model, AbstractScore):
        raise TypeError(f"`model` must be a diffsim score (AbstractScore), got {type(model).__name__}.")
    x = as_float_array(data, "data", ndim=2)
    if x.shape[1] != model.dim:
        raise ValueError(f"`data` must have shape (N, {model.dim}) to match the model, got {x.shape}.")
    if x.shape[0] < 1:
        raise ValueError("`data` must hold at least one point.")
    n_slots = model.n_tokens if isinstance(model, AbstractTokenScore) else 0
    if n_slots == 0:
        if tokens is not None and np.size(tokens) > 0:
            raise ValueError("`tokens` were given but the model has no token slots (alphabet_sizes=()).")
        return x, None, None
    if tokens is None:
        raise ValueError(
            f"The model conditions on {n_slots} token(s): pass `tokens` of shape (N, {n_slots})."
        )
    tok = check_tokens(tokens, model.alphabet_sizes)
    if tok.ndim != 2 or tok.shape[0] != x.shape[0]:
        raise ValueError(
            f"`tokens` must have shape ({x.shape[0]}, {n_slots}) (one row per data point), got {tok.shape}."
        )
    return x, tok, model.null_tokens


def _tree_finite(tree) -> bool:
    leaves = [np.asarray(v) for v in jax.tree.leaves(tree) if eqx.is_inexact_array(v)]
    return all(np.all(np.isfinite(v)) for v in leaves)


def train(
    model: AbstractScore,
    data: Float[ArrayLike, "N d"],
    config: TrainConfig | None = None,
    *,
    key: jax.Array,
    tokens: Int[ArrayLike, "N n"] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    stop_at: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` by denoising score matching on ``data`` (shape ``(N, d)``).

    Raises :class:`NonFiniteLossError` at the first non-finite loss, leaving the last checkpoint (written
    from a finite state) in place. Returns a :class:`TrainResult`.

    Args:
        model: the score model to train (any :class:`~diffsim.scores.AbstractScore`; its process is not
            trained).
        data: training data, shape ``(N, d)`` with ``d = model.dim``.
        config: the :class:`TrainConfig`; ``None`` (default): ``TrainConfig()``.
        key: PRNG key; step ``k`` draws everything from ``fold_in(key, k)``.
        tokens: the token ids of each data point, shape ``(N, n)``, required when the model has token
            slots; they are dropped to the null id with probability ``config.token_dropout`` per slot.
        checkpoint_path: where to checkpoint (every ``config.checkpoint_every`` steps and at the end);
            ``None`` (default): no checkpoint.
        resume: continue an existing checkpoint at ``checkpoint_path`` exactly (default ``True``; one of
            another fingerprint raises ``ValueError``); ``False`` starts afresh and overwrites it.
        stop_at: stop after this global step (time-sliced training; the schedule still spans
            ``config.steps``; a later call with the same arguments resumes). ``None``: ``config.steps``.
        progress: show a tqdm progress bar (default ``True``).
        desc: the progress bar's label (default ``"train"``).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}.")
    key = check_key(key)
    x, tok, null = _prepare_data(model, data, tokens)
    end = config.steps if stop_at is None else min(check_positive_int(stop_at, "stop_at"), config.steps)
    params, static = eqx.partition(model, trainable_filter(model))
    fp = fingerprint(model, x, tok, config.result_fields(), key)
    state = _init_state(params, config)
    losses: list[float] = []
    path = None if checkpoint_path is None else Path(checkpoint_path)
    if path is not None and resume and path.exists():
        state, meta = load_checkpoint(path, state)
        if meta.get("fingerprint") != fp:
            raise ValueError(
                f"Checkpoint {path} was written for a different model, data, config or key "
                f"(fingerprint {meta.get('fingerprint')} != {fp}); pass resume=False or another path."
            )
        losses = list(meta.get("losses", []))[: int(state.step)]
    # only a checkpoint this call resumed from (or writes) counts as the last good one
    last_good = (int(state.step), path) if path is not None and resume and path.exists() else None

    def write(st):
        if path is None:
            return
        if not _tree_finite(st.params):
            raise NonFiniteLossError("Refusing to checkpoint non-finite weights.")
        save_checkpoint(
            path,
            st,
            {"fingerprint": fp, "step": int(st.step), "losses": losses, "config": dataclasses.asdict(config)},
        )

    static_arrays, static_rest = eqx.partition(static, eqx.is_array)
    step_fn = _compiled_step(static_rest, config)
    start = int(state.step)
    bar = None
    if progress and end > start:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=start, desc=desc, leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for k in range(start, end):
            new_state, loss = step_fn(state, static_arrays, x, tok, null, key)
            loss_f = float(loss)
            if not math.isfinite(loss_f):
                where = (
                    f"the last good checkpoint is {last_good[1]} (step {last_good[0]})"
                    if last_good
                    else "no checkpoint was written"
                    if path is None
                    else f"no checkpoint had been written yet to {path}"
                )
                raise NonFiniteLossError(
                    f"Training stopped: non-finite loss ({loss_f}) at step {k}; {where}. Lower the learning "
                    f"rate, enable gradient clipping or check the data."
                )
            state = new_state
            losses.append(loss_f)
            done = k + 1
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < end:
                write(state)
                last_good = (done, path)
            if bar is not None and (done % config.log_every == 0 or done == end):
                bar.set_postfix(loss=f"{np.mean(losses[-config.log_every :]):.4g}")
                bar.update(done - bar.n)
    finally:
        if bar is not None:
            bar.close()
    if end > start or (path is not None and not path.exists()):
        write(state)
    return TrainResult(
        model=eqx.combine(state.params, static),
        ema=eqx.combine(state.ema, static),
        losses=np.asarray(losses, dtype=float),
        steps=int(state.step),
        checkpoint=path,
        from_cache=False,
        elapsed_s=time.perf_counter() - t0,
    )


def train_or_load(
    model: AbstractScore,
    data: Float[ArrayLike, "N d"],
    config: TrainConfig | None = None,
    *,
    key: jax.Array,
    cache_dir: str | os.PathLike,
    tokens: Int[ArrayLike, "N n"] | None = None,
    name: str = "score-net",
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (see :func:`train`) or load it from ``cache_dir``.

    The cache file is ``<cache_dir>/<name>-<fingerprint>.ckpt`` where the fingerprint hashes the model
    (structure and initial weights), the data, the tokens, the result-relevant config fields and the key.
    An unfinished cache file (an interrupted run) is resumed exactly. A cache file that cannot be used
    (truncated, corrupted, another format, or not matching the model) is a cache miss: a ``RuntimeWarning``
    names the file and the model is retrained from scratch, overwriting it.

    Args:
        model: the score model (its structure and initial weights enter the fingerprint).
        data: training data, shape ``(N, d)``.
        config: the :class:`TrainConfig`; ``None`` (default): ``TrainConfig()``.
        key: PRNG key, as for :func:`train`.
        cache_dir: the directory of the cache files.
        tokens: the token ids of each data point, shape ``(N, n)``, for token-conditional models.
        name: the cache file's prefix, a plain file name without ``/`` (default ``"score-net"``; also the
            progress bar's label).
        progress: show a progress bar while training (default ``True``).
    """
    config = TrainConfig() if config is None else config
    key = check_key(key)
    if not name or any(ch in name for ch in "/\\"):
        raise ValueError(f"`name` must be a plain file-name prefix, got {name!r}.")
    x, tok, _ = _prepare_data(model, data, tokens)
    fp = fingerprint(model, x, tok, config.result_fields(), key)
    path = Path(cache_dir) / f"{name}-{fp}.ckpt"
    resume = True
    if path.exists():
        params, static = eqx.partition(model, trainable_filter(model))
        try:
            state, meta = load_checkpoint(path, _init_state(params, config))
            if meta.get("fingerprint") != fp:
                raise CheckpointError(f"its fingerprint {meta.get('fingerprint')} is not {fp}")
        except (ValueError, OSError) as err:  # CheckpointError is a ValueError
            warnings.warn(
                f"Ignoring the unusable cache file {path} ({err}); retraining and overwriting it.",
                RuntimeWarning,
                stacklevel=2,
            )
            resume = False
        else:
            if int(state.step) == config.steps:
                return TrainResult(
                    eqx.combine(state.params, static),
                    eqx.combine(state.ema, static),
                    np.asarray(meta.get("losses", []), float),
                    int(state.step),
                    path,
                    True,
                    0.0,
                )
    return train(
        model,
        x,
        config,
        key=key,
        tokens=tok,
        checkpoint_path=path,
        resume=resume,
        progress=progress,
        desc=name,
    )
