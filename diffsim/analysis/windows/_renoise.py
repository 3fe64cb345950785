r"""The Stable Diffusion noising-denoising protocol of Li & Chen (ICML 2024) on a discrete DDPM schedule.

The critical-windows paper measures windows on Stable Diffusion with diffusers' own machinery: a discrete
DDPM schedule of ``N`` training timesteps (``alpha_bar_n = prod_{m <= n} (1 - beta_m)``), ``n`` inference
timesteps ``tau_0 > ... > tau_{n-1}`` (``set_timesteps``), a clean latent noised with the scheduler's
``add_noise`` to the timestep ``k`` steps before the end,

    x_{tau_{n-k}} = sqrt(alpha_bar_{tau_{n-k}}) x_0 + sqrt(1 - alpha_bar_{tau_{n-k}}) eps,    eps ~ N(0, I),

and re-denoised over the remaining ``k`` timesteps ``tau_{n-k}, ..., tau_{n-1}`` (diffusers' img2img with
``strength = k / n``) with classifier-free guidance; a classifier reads which feature survives. In diffsim the
schedule is the process :meth:`diffsim.VP.from_alpha_bar` (timestep ``m`` at ``t = (m + 1) / N``,
:func:`diffsim.sampling.grids.from_timesteps`), the re-denoising is :func:`diffsim.simulate` over the times of
the remaining timesteps with ``final_denoise=True`` (diffusers' last step, to ``alpha_bar = 1``, returns the
denoiser's ``x_0`` prediction), so ``k`` model evaluations as in diffusers.

The feature retention at ``k`` is ``R(k) = P(c(Y) = c(x_0))`` over clean samples and ``n_repeats``
re-denoisings each, with a cluster standard error over the clean samples (repeats of one sample are
correlated). It is the retention of :func:`~diffsim.analysis.windows.feature_retention` at ``T_hat =
t(tau_{n-k})`` with the schedule as grid: the same law, reached through diffusers' formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ..._validation import check_key, check_positive_int
from ...sampling import grids as _grids, simulate as _simulate
from ...scores._base import AbstractScore


__all__ = [
    "BETA_SCHEDULES",
    "RenoiseRetention",
    "add_noise",
    "ddpm_alphas_cumprod",
    "renoise_denoise",
    "renoise_retention",
]

#: diffusers' ``beta_schedule`` names implemented by :func:`ddpm_alphas_cumprod`
BETA_SCHEDULES = ("linear", "scaled_linear")


def ddpm_alphas_cumprod(
    beta_schedule: str = "scaled_linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> Float[np.ndarray, " N"]:
    r"""``alphas_cumprod`` of diffusers' ``DDPMScheduler`` (float64; diffusers computes in float32).

    ``"linear"``: ``beta_m = linspace(beta_start, beta_end, N)_m`` (Ho et al. 2020 use ``1e-4 .. 0.02``);
    ``"scaled_linear"``: ``beta_m = linspace(sqrt(beta_start), sqrt(beta_end), N)_m^2`` (Stable Diffusion,
    ``0.00085 .. 0.012``); ``alpha_bar_n = prod_{m <= n} (1 - beta_m)``.

    Args:
        beta_schedule: ``"linear"`` or ``"scaled_linear"``.
        num_train_timesteps: ``N``.
        beta_start: first ``beta``.
        beta_end: last ``beta``.

    Returns:
        ``alpha_bar`` of shape ``(N,)``, strictly decreasing in ``(0, 1)``.
    """
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"`beta_schedule` must be one of {BETA_SCHEDULES}, got {beta_schedule!r}.")
    n = check_positive_int(num_train_timesteps, "num_train_timesteps", minimum=2)
    for name, b in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (isinstance(b, (int, float)) and 0.0 < float(b) < 1.0):
            raise ValueError(f"`{name}` must lie in (0, 1), got {b!r}.")
    if beta_end < beta_start:
        raise ValueError(f"`beta_end` ({beta_end}) must be >= `beta_start` ({beta_start}).")
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n)
    else:
        betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), n) ** 2
    return np.exp(np.cumsum(np.log1p(-betas)))


def _check_timesteps(timesteps: Any, n_train: int, name: str = "timesteps") -> np.ndarray:
    arr = np.asarray(timesteps)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"`{name}` must be integer timesteps (diffusers' numbering), got dtype {arr.dtype}.")
    if arr.size and (arr.min() < 0 or arr.max() >= n_train):
        raise ValueError(f"`{name}` must lie in [0, {n_train - 1}], got range [{arr.min()}, {arr.max()}].")
    return arr.astype(np.int64)


def add_noise(
    alphas_cumprod: Float[ArrayLike, " N"],
    x0: Float[Array, " B *event"],
    noise: Float[Array, " *noise_shape"],
    timesteps: int | Int[ArrayLike, "*batch"],
) -> Float[Array, " B *event"]:
    r"""diffusers' ``DDPMScheduler.add_noise`` in JAX: ``sqrt(alpha_bar_tau) x_0 + sqrt(1 - alpha_bar_tau)
    noise`` per row (Ho et al. 2020, eq. 4), ``alpha_bar`` cast to ``x0``'s dtype before the square roots
    as diffusers does; a scalar timestep serves every row.

    Args:
        alphas_cumprod: the schedule's ``alpha_bar`` ``(N,)`` (e.g. :func:`ddpm_alphas_cumprod` or a
            scheduler's ``alphas_cumprod``).
        x0: clean samples ``(B, *event)``.
        noise: standard normals of the same shape.
        timesteps: integer timesteps in ``[0, N)``: one per row ``(B,)`` or a scalar.

    Returns:
        The noised samples, shape and dtype of ``x0``.
    """
    ab = np.asarray(alphas_cumprod, dtype=np.float64)
    if ab.ndim != 1 or ab.size < 1 or np.any(ab <= 0) or np.any(ab > 1):
        raise ValueError("`alphas_cumprod` must be a non-empty 1-D array in (0, 1].")
    x0, noise = jnp.asarray(x0), jnp.asarray(noise)
    if x0.ndim < 1 or noise.shape != x0.shape:
        raise ValueError(f"`noise` must have the shape of `x0` {x0.shape}, got {noise.shape}.")
    steps = _check_timesteps(timesteps, ab.size)
    if steps.ndim > 1 or (steps.ndim == 1 and steps.shape[0] != x0.shape[0]):
        raise ValueError(f"`timesteps` must be a scalar or of shape ({x0.shape[0]},), got {steps.shape}.")
    abar = jnp.asarray(ab, x0.dtype)[jnp.asarray(steps.reshape(-1))]
    shape = (abar.shape[0],) + (1,) * (x0.ndim - 1)
    return jnp.sqrt(abar).reshape(shape) * x0 + jnp.sqrt(1 - abar).reshape(shape) * noise


def _check_process(score: AbstractScore, ab: np.ndarray) -> None:
    """The score's process must be ``VP.from_alpha_bar(alphas_cumprod)`` (its ``alpha_bar`` at every step)."""
    proc = score.process
    ts = (np.arange(ab.size) + 1.0) / ab.size  # from_timesteps' convention, t = (tau + 1) / T
    alpha = proc.alpha(jnp.asarray(ts))
    if isinstance(alpha, jax.core.Tracer):  # inside jit/vmap over the score: checked by the caller
        return
    got = np.asarray(alpha, np.float64) ** 2
    if not np.allclose(got, ab, rtol=1e-4, atol=1e-7):
        raise ValueError(
            "`score.process` is not the discrete schedule of `alphas_cumprod`: build it with "
            "diffsim.VP.from_alpha_bar(alphas_cumprod) (max |alpha_bar difference| "
            f"{np.max(np.abs(got - ab)):.2e})."
        )


def _check_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise ValueError(f"`k` (steps before the end) must be an integer in [1, {n}], got {k!r}.")
    return int(k)


def renoise_denoise(
    score: AbstractScore,
    x0: Float[ArrayLike, "N d"],
    k: int,
    *,
    alphas_cumprod: Float[ArrayLike, " T"],
    timesteps: Int[ArrayLike, " n"],
    key: jax.Array,
    n_repeats: int = 1,
    method: str = "ddpm",
    chunk_size: int | None = None,
) -> Float[Array, "M d"]:
    r"""Noise clean samples with :func:`add_noise` to ``tau_{n-k}`` (``k`` inference steps before the end)
    and re-denoise them over the last ``k`` timesteps (module docstring; diffusers' img2img with
    ``strength = k / n``).

    Row ``i n_repeats + r`` (sample ``i``, repeat ``r``) draws its forward normals from
    ``fold_in(k_noise, i n_repeats + r)`` for every ``k`` (common random numbers across ``k``).

    Args:
        score: any diffsim score on ``VP.from_alpha_bar(alphas_cumprod)`` (e.g. a
            :class:`~diffsim.scores.ClassifierFreeGuidance` of a model adapted with integer timesteps).
        x0: clean samples ``(N, d)``.
        k: inference steps before the end, ``1 <= k <= n``.
        alphas_cumprod: the schedule's ``alpha_bar`` ``(T,)``.
        timesteps: decreasing inference timesteps ``(n,)`` (e.g.
            :func:`diffsim.sampling.grids.diffusers_timesteps`).
        key: PRNG key.
        n_repeats: re-denoisings per clean sample.
        method: the sampler (``"ddpm"``: diffusers' ``DDPMScheduler``; ``"ddim"``: ``DDIMScheduler`` with
            ``eta = 0``).
        chunk_size: :func:`diffsim.simulate`'s ``chunk_size``.

    Returns:
        The outputs ``(N n_repeats, d)``.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    ab = np.asarray(alphas_cumprod, dtype=np.float64)
    steps = _check_timesteps(timesteps, ab.size)
    if steps.ndim != 1 or steps.size < 1 or np.any(np.diff(steps) >= 0):
        raise ValueError("`timesteps` must be a non-empty, strictly decreasing 1-D array.")
    k = _check_k(k, steps.size)
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    key = check_key(key)
    _check_process(score, ab)
    x = jnp.asarray(x0)
    if x.ndim != 2 or x.shape[1] != score.dim:
        raise ValueError(f"`x0` must have shape (N, {score.dim}), got {tuple(x.shape)}.")
    k_noise, k_rev = jr.split(key)
    rows = jnp.repeat(x, n_repeats, axis=0)
    noise = _row_normals(k_noise, rows)
    tail = steps[steps.size - k :]
    x_t = add_noise(ab, rows, noise, tail[0])
    grid = _grids.from_timesteps(score.process, tail, ab.size).astype(x.dtype)
    if k == 1:  # diffusers' one remaining step, to alpha_bar = 1, is the denoiser's x0 prediction
        return _denoise(score, grid[0], x_t)
    return _simulate(score, method, grid, x=x_t, key=k_rev, final_denoise=True, chunk_size=chunk_size).x


@eqx.filter_jit
def _denoise(score: AbstractScore, t: Array, x: Array) -> Array:
    return jax.vmap(lambda xi: score.denoise(t, xi))(x)


@eqx.filter_jit
def _row_normals(key: jax.Array, rows: Array) -> Array:
    keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(rows.shape[0]))
    return jax.vmap(lambda kk: jr.normal(kk, rows.shape[1:], rows.dtype))(keys)


class RenoiseRetention(eqx.Module):
    """Result of :func:`renoise_retention`, per ``k`` (sorted ascending; ``N`` clean samples).

    Attributes:
        ks: the numbers of remaining timesteps ``k``, sorted ascending, shape ``(n_k,)``.
        start_timesteps: the starting timesteps ``tau_{n-k}``, shape ``(n_k,)``.
        start_times: their diffsim times ``(tau + 1) / T``.
        start_log_snr: ``log(alpha_bar / (1 - alpha_bar))`` at the start.
        retention: fraction of outputs whose class equals the original's, shape ``(n_k,)``.
        retention_stderr: cluster standard error of ``retention`` over clean samples.
        per_sample: ``(n_k, N)``: each sample's retained fraction.
        labels: ``(N,)``: the original classes.
        n_repeats: re-denoisings per clean sample and ``k``.
        method: the sampler method used.
    """

    ks: np.ndarray
    start_timesteps: np.ndarray
    start_times: np.ndarray
    start_log_snr: np.ndarray
    retention: np.ndarray
    retention_stderr: np.ndarray
    per_sample: np.ndarray
    labels: np.ndarray
    n_repeats: int
    method: str


def _classes(classifier: Callable[[Array], Any], x: Array) -> np.ndarray:
    out = np.asarray(classifier(x))
    if out.ndim != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 2:
        raise ValueError(
            f"`classifier` must return logits (B, C >= 2) for a batch of {x.shape[0]}, got {out.shape}."
        )
    return np.argmax(out, axis=1)


def renoise_retention(
    score: AbstractScore,
    x0: Float[ArrayLike, "N d"],
    ks: Sequence[int],
    *,
    classifier: Callable[[Array], Any],
    alphas_cumprod: Float[ArrayLike, " T"],
    timesteps: Int[ArrayLike, " n"],
    key: jax.Array,
    n_repeats: int = 4,
    labels: Int[ArrayLike, " N"] | None = None,
    method: str = "ddpm",
    chunk_size: int | None = None,
) -> RenoiseRetention:
    r"""Feature retention ``R(k) = P(c(Y) = c(x_0))`` of the Stable Diffusion protocol
    (:func:`renoise_denoise` for each ``k``, one ``key`` for all: common random numbers), read by
    ``classifier``.

    Args:
        score: any diffsim score on ``VP.from_alpha_bar(alphas_cumprod)``.
        x0: clean samples ``(N, d)``.
        ks: distinct numbers of inference steps before the end, each in ``[1, n]``.
        classifier: a function ``(B, d) -> logits (B, C)`` (class = argmax).
        alphas_cumprod: the schedule's ``alpha_bar``.
        timesteps: decreasing inference timesteps ``(n,)``.
        key: PRNG key.
        n_repeats: re-denoisings per clean sample and ``k``.
        labels: original classes ``(N,)`` (default: the classifier's class of ``x0``).
        method: ``"ddpm"`` or ``"ddim"`` (any diffsim sampler).
        chunk_size: :func:`diffsim.simulate`'s ``chunk_size``.

    Returns:
        A :class:`RenoiseRetention`.
    """
    if not callable(classifier):
        raise TypeError(f"`classifier` must be a callable batch -> logits, got {type(classifier).__name__}.")
    steps = np.asarray(timesteps)
    ks_arr = np.asarray(sorted(int(_check_k(k, steps.size)) for k in ks), dtype=np.int64)
    if ks_arr.size == 0 or np.unique(ks_arr).size != ks_arr.size:
        raise ValueError(f"`ks` must be a non-empty sequence of distinct step counts, got {list(ks)}.")
    x = jnp.asarray(x0)
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    orig = _classes(classifier, x) if labels is None else np.asarray(labels)
    if orig.shape != (x.shape[0],):
        raise ValueError(f"`labels` must have shape ({x.shape[0]},), got {orig.shape}.")
    per_sample = []
    for k in ks_arr:
        y = renoise_denoise(
            score,
            x,
            int(k),
            alphas_cumprod=alphas_cumprod,
            timesteps=timesteps,
            key=key,
            n_repeats=n_repeats,
            method=method,
            chunk_size=chunk_size,
        )
        hit = _classes(classifier, y).reshape(x.shape[0], n_repeats) == orig[:, None]
        per_sample.append(hit.mean(axis=1))
    per = np.stack(per_sample)
    ab = np.asarray(alphas_cumprod, dtype=np.float64)
    starts = steps[steps.size - ks_arr]
    return RenoiseRetention(
        ks=ks_arr,
        start_timesteps=starts,
        start_times=(starts + 1.0) / ab.size,
        start_log_snr=np.log(ab[starts]) - np.log1p(-ab[starts]),
        retention=per.mean(axis=1),
        retention_stderr=per.std(axis=1, ddof=1) / math.sqrt(per.shape[1]),
        per_sample=per,
        labels=orig,
        n_repeats=n_repeats,
        method=str(method),
    )
