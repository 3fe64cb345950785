"""The training configuration (:class:`TrainConfig`, validated on construction) and the optimiser it
describes (:func:`make_optimizer`: clipped Adam(W), linear warm-up, cosine decay)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import jax
import optax

from .._validation import check_positive_int
from ._loss import TIME_SAMPLINGS, WEIGHTINGS


__all__ = ["TrainConfig", "make_optimizer"]


def _real(value: Any, name: str) -> float:
    """``value`` as a finite float, else ``ValueError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"`{name}` must be a real number, got {type(value).__name__} {value!r}.")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return v


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (all validated on construction).

    Args:
        steps: total optimiser steps, ``>= 1`` (the cosine schedule spans them; default 2000).
        batch_size: data points per step, ``>= 1`` (default 128).
        learning_rate: peak learning rate, ``> 0`` (default ``2e-3``).
        warmup_steps: steps of linear warm-up from 0 to the peak, ``>= 0`` (default 100; 0: start at the
            peak).
        final_lr_fraction: the cosine decays to this fraction of the peak, in ``[0, 1]`` (default 0.05).
        grad_clip: global-norm gradient clipping threshold, ``>= 0`` (default 1; 0 disables).
        weight_decay: AdamW's decoupled weight decay when ``> 0``; 0 (default) is plain Adam.
        ema_decay: decay of the parameters' exponential moving average, in ``[0, 1)`` (default 0.999).
        weighting: the DSM weighting, one of :data:`WEIGHTINGS` (default ``"eps"``).
        time_sampling: how training times are drawn, one of :data:`TIME_SAMPLINGS` (default ``"uniform"``).
        t_min: lowest training time, ``> 0``; ``None`` (default): the process's ``t_min``.
        t_max: highest training time, ``> t_min``; ``None`` (default): the process's ``t_max``.
        token_dropout: per-slot probability of replacing a token by its null id, in ``[0, 1)`` (default
            0.1; classifier-free guidance training: every subset of tokens is then trained).
        checkpoint_every: write a checkpoint every this many steps (0, default: only at the end).
        log_every: progress-bar refresh interval in steps (default 25). This and ``checkpoint_every``
            do not change the result and are left out of the fingerprint.
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
        lr = _real(self.learning_rate, "learning_rate")
        if not lr > 0:
            raise ValueError(f"`learning_rate` must be positive and finite, got {self.learning_rate}.")
        if not 0.0 <= _real(self.final_lr_fraction, "final_lr_fraction") <= 1.0:
            raise ValueError(f"`final_lr_fraction` must lie in [0, 1], got {self.final_lr_fraction}.")
        if not _real(self.grad_clip, "grad_clip") >= 0:
            raise ValueError(f"`grad_clip` must be finite and >= 0 (0: no clipping), got {self.grad_clip}.")
        if not _real(self.weight_decay, "weight_decay") >= 0:
            raise ValueError(f"`weight_decay` must be finite and >= 0, got {self.weight_decay}.")
        if not 0.0 <= _real(self.ema_decay, "ema_decay") < 1.0:
            raise ValueError(f"`ema_decay` must lie in [0, 1), got {self.ema_decay}.")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {self.weighting!r}.")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"`time_sampling` must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}.")
        if not 0.0 <= _real(self.token_dropout, "token_dropout") < 1.0:
            raise ValueError(f"`token_dropout` must lie in [0, 1), got {self.token_dropout}.")
        for name in ("t_min", "t_max"):
            value = getattr(self, name)
            if value is not None and not _real(value, name) > 0:
                raise ValueError(
                    f"`{name}` must be None (the process's own) or a positive finite time, got {value}."
                )
        if self.t_min is not None and self.t_max is not None and not self.t_min < self.t_max:
            raise ValueError(f"Need t_min < t_max, got t_min={self.t_min}, t_max={self.t_max}.")

    def result_fields(self) -> dict[str, Any]:
        """The fields that change the trained weights (everything but checkpoint/log cadence)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d.pop("log_every")
        return d


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam(W) with linear warm-up and cosine decay (see module docstring).

    Args:
        config: the :class:`TrainConfig` whose ``learning_rate``, ``warmup_steps``, ``steps``,
            ``final_lr_fraction``, ``weight_decay`` and ``grad_clip`` set the optimiser.

    Returns:
        An ``optax.GradientTransformation``.
    """
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
    return standard_promotion(opt)


def standard_promotion(opt: optax.GradientTransformation) -> optax.GradientTransformation:
    """``opt`` with its ``init`` and ``update`` traced under JAX's standard dtype promotion.

    optax mixes its integer step count with Python floats (schedules, bias corrections), which
    ``jax_numpy_dtype_promotion="strict"`` rejects; diffsim's own code runs under strict promotion in the
    tests, so the dependency gets the promotion rules it was written for. Numbers are unchanged: under
    standard promotion (the default) this wrapper is the identity.

    Args:
        opt: any optax gradient transformation.

    Returns:
        The same transformation, its calls run inside ``jax.numpy_dtype_promotion("standard")``.
    """

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return opt.init(params)

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return opt.update(updates, state, params)

    return optax.GradientTransformation(init, update)
