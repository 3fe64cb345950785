r"""Denoising score matching: loss, optimiser, one jit-compiled train step, checkpoints, cache.

**Loss.** For data ``x_0``, noise ``eps ~ N(0, I)``, ``x_t = alpha_t x_0 + sigma_t eps`` and a model
score ``s_theta``, the per-sample loss is a weighted score error (Vincent 2011; Song et al. 2021, eq. 7),
averaged over the ``d`` coordinates:

    l(t, x_0, eps) = lambda(t) / d * | s_theta(t, x_t) - (-eps / sigma_t) |^2.

Because every parametrisation is affine in the score, each weighting is the plain MSE of one prediction
(the conversions of :mod:`diffsim.scores.networks`):

    ===============  ======================================  =============================================
    ``weighting``    loss                                    ``lambda(t)``
    ===============  ======================================  =============================================
    ``"eps"``        |eps_hat - eps|^2 / d  (Ho et al. 2020)  sigma_t^2
    ``"score"``      |s_hat + eps/sigma_t|^2 / d              1
    ``"x0"``         |x0_hat - x_0|^2 / d                     sigma_t^4 / alpha_t^2
    ``"v"``          |v_hat - v|^2 / d  (Salimans & Ho 2022)  sigma_t^2 (alpha_t^2 + sigma_t^2)^2 / alpha_t^2
    ``"likelihood"`` g(t)^2 |s_hat + eps/sigma_t|^2 / d       g(t)^2  (Song et al. 2021b, likelihood weighting)
    ===============  ======================================  =============================================

with ``v = alpha_t eps - sigma_t x_0``. The minimiser over all functions is the true score whatever the
weighting, and the loss of the true score ``s*`` is the *irreducible minimum*

    L_min(t) = lambda(t) / d * ( E|eps|^2 / sigma_t^2 - E|s*(t, x_t)|^2 ) = lambda(t) (1/sigma_t^2 - J_t / d),

``J_t = E|grad log p_t|^2`` the Fisher information of ``p_t`` (by Tweedie, ``E[eps | x_t] = -sigma_t s*``
is orthogonal to ``eps - E[eps | x_t]``).

**Times.** ``time_sampling="uniform"`` draws ``t`` uniformly on ``[t_min, t_max]``; ``"logsnr"`` draws the
log-SNR uniformly and maps it back with the process's closed-form inverse. Draws are stratified over the
batch (``u_i = (u + i) / B``, Kingma et al. 2021) to reduce variance.

**Optimiser.** Adam (AdamW with ``weight_decay > 0``) with linear warm-up and cosine decay to
``final_lr_fraction * learning_rate``, after global-norm gradient clipping (optax). An exponential moving
average of the weights with decay ``min(ema_decay, (1 + k) / (10 + k))`` at step ``k`` is kept beside them.

**Determinism and resume.** Step ``k`` draws everything (batch indices, times, noise, token dropout) from
``fold_in(key, k)``; the whole training state (weights, EMA, optimiser state, step) is checkpointed
bit-exactly, so training resumed from a checkpoint reproduces uninterrupted training exactly.

**Checkpoints** are single files (a JSON header with the loss history and a fingerprint, then the Equinox
serialisation of the state), written atomically (temporary file + ``os.replace``). A non-finite loss
stops training with :class:`NonFiniteLossError`; the last checkpoint on disk (always written from a
finite state) is kept.

**Cache.** :func:`train_or_load` keys a checkpoint by a hash of the model (structure and initial
weights), the data, the tokens, the training config and the key, so several studies reuse one trained
network instead of retraining.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._io import write_atomic
from .._validation import as_float_array, check_key, check_positive_int
from ..processes import AbstractProcess
from ._base import AbstractScore
from .networks import PARAMETRISATIONS, AbstractTokenScore, check_tokens, convert_parametrisation


__all__ = [
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "dsm_loss",
    "dsm_loss_terms",
    "fingerprint",
    "initial_state",
    "irreducible_loss",
    "load_checkpoint",
    "load_model",
    "loss_weight",
    "make_optimizer",
    "read_checkpoint_meta",
    "sample_times",
    "save_checkpoint",
    "save_model",
    "train",
    "train_or_load",
    "trainable_filter",
]

WEIGHTINGS = ("eps", "score", "x0", "v", "likelihood")
TIME_SAMPLINGS = ("uniform", "logsnr")
_MAGIC = b"DIFFSIM-CHECKPOINT-1\n"
_FINGERPRINT_VERSION = "1"


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint (if any) is kept on disk."""


# =====================================================================================================
# configuration
# =====================================================================================================
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (all validated on construction).

    - ``steps``: total optimiser steps (the cosine schedule spans them);
    - ``batch_size``; ``learning_rate`` (peak); ``warmup_steps`` (linear from 0); ``final_lr_fraction``
      (cosine decays to this fraction of the peak); ``grad_clip`` (global norm, 0 disables);
      ``weight_decay`` (AdamW when > 0);
    - ``ema_decay`` in ``[0, 1)``;
    - ``weighting`` (one of :data:`WEIGHTINGS`); ``time_sampling`` (one of :data:`TIME_SAMPLINGS`);
      ``t_min`` / ``t_max`` (training time range, default the process's);
    - ``token_dropout``: per-slot probability of replacing a token by its null id (classifier-free
      guidance training; every subset of tokens is then trained);
    - ``checkpoint_every`` (0: only at the end) and ``log_every`` (progress-bar refresh): these two do not
      change the result and are left out of the fingerprint.
    """

    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    weighting: str = "eps"
    time_sampling: str = "uniform"
    t_min: float | None = None
    t_max: float | None = None
    token_dropout: float = 0.1
    checkpoint_every: int = 0
    log_every: int = 25

    def __post_init__(self):
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_positive_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        check_positive_int(self.log_every, "log_every")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"`learning_rate` must be positive and finite, got {self.learning_rate}.")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"`final_lr_fraction` must lie in [0, 1], got {self.final_lr_fraction}.")
        if not self.grad_clip >= 0:
            raise ValueError(f"`grad_clip` must be >= 0, got {self.grad_clip}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must lie in [0, 1), got {self.ema_decay}.")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {self.weighting!r}.")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"`time_sampling` must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}.")
        if not 0.0 <= self.token_dropout < 1.0:
            raise ValueError(f"`token_dropout` must lie in [0, 1), got {self.token_dropout}.")
        if self.t_min is not None and self.t_max is not None and not self.t_min < self.t_max:
            raise ValueError(f"Need t_min < t_max, got {self.t_min}, {self.t_max}.")

    def result_fields(self) -> dict[str, Any]:
        """The fields that change the trained weights (everything but checkpoint/log cadence)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d.pop("log_every")
        return d


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam(W) with linear warm-up and cosine decay (see module docstring)."""
    peak = config.learning_rate
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if config.warmup_steps > 0 else peak,
        peak_value=peak,
        warmup_steps=config.warmup_steps,
        decay_steps=max(config.steps, config.warmup_steps + 1),
        end_value=peak * config.final_lr_fraction,
    )
    opt = (
        optax.adamw(schedule, weight_decay=config.weight_decay)
        if config.weight_decay > 0
        else optax.adam(schedule)
    )
    if config.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    return opt


# =====================================================================================================
# the loss
# =====================================================================================================
def loss_weight(process: AbstractProcess, t: ArrayLike, weighting: str) -> Array:
    """``lambda(t)``: the weight of the per-coordinate squared score error in each weighting (module table)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {weighting!r}.")
    a, s2 = process.alpha(t), process.sigma2(t)
    return {
        "eps": s2,
        "score": jnp.ones_like(s2),
        "x0": s2**2 / a**2,
        "v": s2 * (a**2 + s2) ** 2 / a**2,
        "likelihood": process.beta(t),
    }[weighting]


def _prediction(model: AbstractScore, t, x, tokens, kind):
    if isinstance(model, AbstractTokenScore):
        return model.predict(t, x, tokens, kind)
    return convert_parametrisation(model.process, t, x, model.score(t, x), "score", kind)


def _point_loss(model, t, x0, eps, tokens, weighting):
    p = model.process
    a, s = p.alpha(t), p.sigma(t)
    xt = a * x0 + s * eps
    kind = weighting if weighting in PARAMETRISATIONS else "score"
    pred = _prediction(model, t, xt, tokens, kind)
    target = {"eps": eps, "x0": x0, "score": -eps / s, "v": a * eps - s * x0}[kind]
    err = jnp.mean((pred - target) ** 2)
    if weighting == "likelihood":
        err = err * p.beta(t)
    return err


def dsm_loss_terms(
    model: AbstractScore,
    t: Float[Array, " N"],
    x0: Float[Array, "N d"],
    eps: Float[Array, "N d"],
    tokens: Int[Array, "N n"] | None = None,
    *,
    weighting: str = "eps",
) -> Float[Array, " N"]:
    """Per-sample DSM losses ``l(t_i, x0_i, eps_i)`` (module docstring) for any score ``model``.

    ``tokens`` (token-conditional networks only) may contain null ids; ``None`` means unconditional.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {weighting!r}.")
    if tokens is None:
        tok = None
        return jax.vmap(lambda ti, xi, ei: _point_loss(model, ti, xi, ei, tok, weighting))(t, x0, eps)
    return jax.vmap(lambda ti, xi, ei, ki: _point_loss(model, ti, xi, ei, ki, weighting))(t, x0, eps, tokens)


def sample_times(
    key: jax.Array,
    n: int,
    process: AbstractProcess,
    *,
    scheme: str = "uniform",
    t_min: float | None = None,
    t_max: float | None = None,
    stratified: bool = True,
    dtype=None,
) -> Float[Array, " n"]:
    """``n`` training times on ``[t_min, t_max]`` (default the process's), uniform in ``t`` or in log-SNR,
    optionally stratified (``u_i = (u + i) / n``, a random permutation of strata)."""
    if scheme not in TIME_SAMPLINGS:
        raise ValueError(f"`scheme` must be one of {TIME_SAMPLINGS}, got {scheme!r}.")
    lo = process.t_min if t_min is None else t_min
    hi = process.t_max if t_max is None else t_max
    dtype = dtype or jnp.result_type(float)
    k1, k2 = jr.split(key)
    if stratified:
        u = (jr.uniform(k1, (), dtype) + jnp.arange(n, dtype=dtype)) / n
        u = jr.permutation(k2, u)
    else:
        u = jr.uniform(k1, (n,), dtype)
    if scheme == "uniform":
        return lo + (hi - lo) * u
    lam_hi, lam_lo = process.log_snr(jnp.asarray(lo, dtype)), process.log_snr(jnp.asarray(hi, dtype))
    t = process.t_from_log_snr(lam_lo + (lam_hi - lam_lo) * u)
    return jnp.clip(t, lo, hi)


def dsm_loss(
    model: AbstractScore,
    x0: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    weighting: str = "eps",
    tokens: Int[ArrayLike, "N n"] | None = None,
    t: ArrayLike | None = None,
    time_sampling: str = "uniform",
    n_noise: int = 1,
) -> Float[Array, ""]:
    """Monte-Carlo DSM loss of ``model`` on data ``x0``: the mean of :func:`dsm_loss_terms` over the data,
    ``n_noise`` noise draws per point, and times ``t`` (a scalar or one per point) or, when ``t`` is None,
    times drawn with ``time_sampling``."""
    key = check_key(key)
    x = as_float_array(x0, "x0", ndim=2)
    if x.shape[1] != model.dim:
        raise ValueError(f"`x0` must have shape (N, {model.dim}) to match the model, got {x.shape}.")
    n_noise = check_positive_int(n_noise, "n_noise")
    x = jnp.tile(x, (n_noise, 1))
    tok = None
    if tokens is not None:
        tok = check_tokens(tokens, model.alphabet_sizes) if isinstance(model, AbstractTokenScore) else None
        if tok is None:
            raise TypeError("`tokens` are only accepted by token-conditional networks.")
        tok = jnp.tile(tok, (n_noise, 1))
    kt, ke = jr.split(key)
    if t is None:
        ts = sample_times(kt, x.shape[0], model.process, scheme=time_sampling, dtype=x.dtype)
    else:
        model.process.check_time(t, allow_zero=False)
        t_arr = jnp.asarray(t, x.dtype)
        if t_arr.ndim == 0:
            ts = jnp.full((x.shape[0],), t_arr)
        elif t_arr.shape == (x.shape[0] // n_noise,):
            ts = jnp.tile(t_arr, n_noise)
        else:
            raise ValueError(
                f"`t` must be a scalar or have one time per data point ({x.shape[0] // n_noise},), "
                f"got shape {t_arr.shape}."
            )
    eps = jr.normal(ke, x.shape, x.dtype)
    return jnp.mean(dsm_loss_terms(model, ts, x, eps, tok, weighting=weighting))


def irreducible_loss(
    score: AbstractScore, t: ArrayLike, xt: Float[ArrayLike, "N d"], *, weighting: str = "eps"
) -> Float[Array, ""]:
    r"""Irreducible DSM minimum at time ``t`` from samples ``xt ~ p_t``:
    ``lambda(t) (1/sigma_t^2 - mean_i |s(t, xt_i)|^2 / d)`` (module docstring), with ``s`` the exact score."""
    x = as_float_array(xt, "xt", ndim=2)
    s = jax.vmap(lambda xi: score.score(t, xi))(x)
    fisher = jnp.mean(jnp.sum(s**2, axis=-1)) / score.dim
    return loss_weight(score.process, t, weighting) * (1.0 / score.process.sigma2(t) - fisher)


# =====================================================================================================
# training state and the one jit-compiled step
# =====================================================================================================
class TrainState(eqx.Module):
    """Everything that evolves during training: trainable weights, their EMA, optimiser state, step."""

    params: PyTree
    ema: PyTree
    opt_state: PyTree
    step: Array


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of :func:`train` / :func:`train_or_load`.

    ``model`` has the final weights, ``ema`` the exponential moving average (use it for sampling);
    ``losses`` the per-step training loss; ``steps`` the steps done; ``checkpoint`` the checkpoint file
    (or None); ``from_cache`` whether it was loaded instead of trained; ``elapsed_s`` the training time
    of this call.
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
    process (schedules are fixed)."""

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
    skeleton to pass as ``like`` to :func:`load_checkpoint` for a checkpoint written by :func:`train`."""
    return _init_state(eqx.partition(model, trainable_filter(model))[0], config)


# =====================================================================================================
# checkpoints
# =====================================================================================================
def save_checkpoint(path: str | os.PathLike, tree: PyTree, meta: dict[str, Any] | None = None) -> Path:
    """Write ``tree`` (any pytree of arrays, e.g. a :class:`TrainState` or a model) and a JSON ``meta``
    header to ``path`` atomically. Bit-exact: :func:`load_checkpoint` returns identical arrays."""
    header = json.dumps(meta or {}, sort_keys=True).encode()
    buf = io.BytesIO()
    buf.write(_MAGIC)
    buf.write(len(header).to_bytes(8, "little"))
    buf.write(header)
    eqx.tree_serialise_leaves(buf, tree)
    return write_atomic(path, buf.getvalue())


@contextlib.contextmanager
def _open_checkpoint(path: str | os.PathLike):
    """Open a checkpoint, check its magic bytes and read its JSON header; yields ``(file, meta)`` with the
    file positioned at the serialised leaves."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    with open(path, "rb") as fh:
        if fh.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{path} is not a diffsim checkpoint.")
        n = int.from_bytes(fh.read(8), "little")
        yield fh, json.loads(fh.read(n).decode())


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint (without reading the arrays)."""
    with _open_checkpoint(path) as (_, meta):
        return meta


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like`` (same tree
    structure, shapes and dtypes). Returns ``(tree, meta)``."""
    with _open_checkpoint(path) as (fh, meta):
        try:
            tree = eqx.tree_deserialise_leaves(fh, like)
        except Exception as err:
            raise ValueError(
                f"Checkpoint {path} does not match the given model/state structure: {err}"
            ) from err
    return tree, meta


def save_model(path: str | os.PathLike, model: PyTree, meta: dict[str, Any] | None = None) -> Path:
    """Save a model (any Equinox module) atomically; load it with :func:`load_model` and a like-shaped
    skeleton (e.g. the same constructor with any key)."""
    return save_checkpoint(path, model, meta)


def load_model(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Load a model saved with :func:`save_model` into the structure of ``like``."""
    return load_checkpoint(path, like)[0]


# =====================================================================================================
# fingerprints
# =====================================================================================================
def _signature(node: Any) -> Any:
    """A deterministic description of a pytree's structure and static values (no memory addresses)."""
    if isinstance(node, eqx.Module):
        fields = [(f.name, _signature(getattr(node, f.name, None))) for f in dataclasses.fields(node)]
        return [type(node).__module__ + "." + type(node).__qualname__, fields]
    if isinstance(node, (jax.Array, np.ndarray)):
        return ["array", list(node.shape), str(node.dtype)]
    if isinstance(node, (list, tuple)):
        return [type(node).__name__, [_signature(v) for v in node]]
    if isinstance(node, dict):
        return ["dict", [[str(k), _signature(v)] for k, v in sorted(node.items(), key=lambda kv: str(kv[0]))]]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if callable(node):
        return "callable:" + getattr(node, "__qualname__", getattr(node, "__name__", type(node).__qualname__))
    return "object:" + type(node).__qualname__


def fingerprint(*items: Any) -> str:
    """SHA-256 (first 16 hex digits) of models, arrays, keys and JSON-able configs, in order."""
    h = hashlib.sha256(_FINGERPRINT_VERSION.encode())
    for item in items:
        if isinstance(item, jax.Array) and jnp.issubdtype(item.dtype, jax.dtypes.prng_key):
            item = np.asarray(jr.key_data(item))
        if isinstance(item, eqx.Module):
            h.update(json.dumps(_signature(item)).encode())
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


# =====================================================================================================
# training loop
# =====================================================================================================
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

    - ``tokens`` (shape ``(N, n)``): the token ids of each data point, required when the model has token
      slots; they are dropped to the null id with probability ``config.token_dropout`` per slot.
    - ``checkpoint_path``: where to checkpoint (every ``config.checkpoint_every`` steps and at the end);
      with ``resume`` an existing checkpoint of the same fingerprint is continued exactly.
    - ``stop_at``: stop after this global step (time-sliced training; the schedule still spans
      ``config.steps``; a later call with the same arguments resumes).

    Raises :class:`NonFiniteLossError` at the first non-finite loss, leaving the last checkpoint (written
    from a finite state) in place. Returns a :class:`TrainResult`.
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
    last_good = (int(state.step), path) if path is not None and path.exists() else None

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
    An unfinished cache file (an interrupted run) is resumed exactly.
    """
    config = TrainConfig() if config is None else config
    key = check_key(key)
    if not name or any(ch in name for ch in "/\\"):
        raise ValueError(f"`name` must be a plain file-name prefix, got {name!r}.")
    x, tok, _ = _prepare_data(model, data, tokens)
    fp = fingerprint(model, x, tok, config.result_fields(), key)
    path = Path(cache_dir) / f"{name}-{fp}.ckpt"
    if path.exists():
        meta = read_checkpoint_meta(path)
        if meta.get("step") == config.steps and meta.get("fingerprint") == fp:
            params, static = eqx.partition(model, trainable_filter(model))
            state, meta = load_checkpoint(path, _init_state(params, config))
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
        model, x, config, key=key, tokens=tok, checkpoint_path=path, resume=True, progress=progress, desc=name
    )
