"""The peers' grids: k-diffusion's sigma schedules and diffusers' integer timesteps, converted exactly.

Re-exported by :mod:`diffsim.sampling.grids`, whose docstring describes them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_positive_int
from ..processes import AbstractProcess


# ---------------------------------------------------------------------------------------------------------
# the peers' grids: k-diffusion's sigma schedules and diffusers' integer timesteps, converted exactly
# ---------------------------------------------------------------------------------------------------------
DIFFUSERS_SPACINGS = ("leading", "trailing", "linspace")


def _check_sigma_range(n: int, sigma_min: float, sigma_max: float) -> int:
    n = check_positive_int(n, "n", minimum=2)
    if not (0 < float(sigma_min) < float(sigma_max) and math.isfinite(float(sigma_max))):
        raise ValueError(f"Need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}.")
    return n


def sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """k-diffusion's ``get_sigmas_karras(n, sigma_min, sigma_max, rho)`` without its trailing 0 (float64):
    ``(s_max^{1/rho} + i/(n-1) (s_min^{1/rho} - s_max^{1/rho}))^rho``, ``i = 0 .. n-1``.

    Args:
        n: number of noise levels, an int ``>= 2``.
        sigma_min: last (smallest) noise level, ``0 < sigma_min < sigma_max``.
        sigma_max: first (largest) noise level, finite.
        rho: the exponent, ``> 0`` (default 7).

    Returns:
        ``n`` decreasing noise levels, float64; map them to times with :func:`from_sigmas`.
    """
    n = _check_sigma_range(n, sigma_min, sigma_max)
    if not rho > 0:
        raise ValueError(f"`rho` must be positive, got {rho}.")
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = float(sigma_min) ** (1 / rho), float(sigma_max) ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """k-diffusion's ``get_sigmas_exponential``: ``n`` sigmas uniform in ``log sigma`` (no trailing 0).

    Args:
        n: number of noise levels, an int ``>= 2``.
        sigma_min: last (smallest) noise level, ``0 < sigma_min < sigma_max``.
        sigma_max: first (largest) noise level, finite.

    Returns:
        ``n`` decreasing noise levels, float64.
    """
    n = _check_sigma_range(n, sigma_min, sigma_max)
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> np.ndarray:
    """k-diffusion's ``get_sigmas_polyexponential``: ``log sigma = (1 - i/(n-1))^rho (log s_max - log s_min)
    + log s_min`` (no trailing 0).

    Args:
        n: number of noise levels, an int ``>= 2``.
        sigma_min: last (smallest) noise level, ``0 < sigma_min < sigma_max``.
        sigma_max: first (largest) noise level, finite.
        rho: the ramp's exponent (default 1: :func:`sigmas_exponential`).

    Returns:
        ``n`` decreasing noise levels, float64.
    """
    n = _check_sigma_range(n, sigma_min, sigma_max)
    ramp = np.linspace(1.0, 0.0, n) ** rho
    return np.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))


def sigmas_vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> np.ndarray:
    """k-diffusion's ``get_sigmas_vp``: ``sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`` at ``t = linspace(1,
    eps_s, n)`` (no trailing 0): the noise levels of ``VP.linear(beta_min, beta_min + beta_d)`` at those
    times.

    Args:
        n: number of noise levels, an int ``>= 2``.
        beta_d: ``beta_max - beta_min`` of the linear VP schedule (default 19.9).
        beta_min: ``beta(0)`` (default 0.1).
        eps_s: the last time (default ``1e-3``).

    Returns:
        ``n`` decreasing noise levels, float64.
    """
    n = check_positive_int(n, "n", minimum=2)
    t = np.linspace(1.0, float(eps_s), n)
    return np.sqrt(np.expm1(beta_d * t**2 / 2 + beta_min * t))


def from_sigmas(process: AbstractProcess, sigmas: ArrayLike) -> Float[Array, " n"]:
    r"""The diffsim times at which ``process`` has the noise levels ``sigmas`` (EDM's / k-diffusion's
    ``sigma = sigma(t) / alpha(t) = exp(-log_snr / 2)``; for VE the marginal std), by the process's
    closed-form inverse ``t = t_from_log_snr(-2 log sigma)``: exact, so ``sigma(t)`` round-trips to
    rounding (1e-15 relative in float64).

    k-diffusion's schedules end with ``sigma = 0``; drop it and run with ``simulate(...,
    final_denoise=True)``, which is that last step. A VE's ``sigma(t_max)`` is ``sigma_min sqrt(r^2 - 1)``,
    a hair below its ``sigma_max`` (``79.999999975`` for 80 with ``sigma_min = 0.002``); a grid given in
    sigma starts at the requested noise level exactly, a time ``1e-11`` past ``t_max`` (inside the
    tolerance of the time checks). Start the particles at ``sigmas[0]`` yourself (``x = sigmas[0] * z``
    for VE), since the prior's std is ``sigma(t_max)``.

    Args:
        process: the diffusion process whose closed-form inverse maps noise levels to times.
        sigmas: at least 2 positive, finite, strictly decreasing noise levels without a trailing 0 (a
            trailing 0 raises ``ValueError``).

    Returns:
        The times, shape ``(n,)``, decreasing; usable as ``simulate``'s ``grid``.
    """
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.size >= 1 and sig[-1] == 0:
        raise ValueError(
            "`sigmas` ends with 0 (k-diffusion's step to sigma = 0): drop it and pass "
            "final_denoise=True to simulate."
        )
    if sig.size < 2 or not np.all(np.isfinite(sig)) or np.any(sig <= 0) or np.any(np.diff(sig) >= 0):
        raise ValueError("`sigmas` must hold >= 2 positive, finite, strictly decreasing noise levels.")
    ts = process.t_from_log_snr(-2.0 * jnp.log(jnp.asarray(sig)))
    process.check_time(ts, "times of `sigmas`", allow_zero=False)
    return ts


def diffusers_timesteps(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    spacing: str = "leading",
    steps_offset: int = 0,
    scheduler: str = "ddim",
) -> np.ndarray:
    """diffusers' integer timesteps (``set_timesteps``) for ``timestep_spacing`` in ``"leading"``,
    ``"trailing"``, ``"linspace"`` and ``steps_offset``.

    ``scheduler="ddim"`` follows ``DDIMScheduler`` (and ``DDPMScheduler``): ``leading`` is ``k (N // n) +
    offset``, ``trailing`` is ``round(arange(N, 0, -N/n)) - 1``, ``linspace`` is ``round(linspace(0, N-1,
    n))``, reversed. ``scheduler="dpm_solver"`` follows ``DPMSolverMultistepScheduler`` and
    ``UniPCMultistepScheduler``, which place ``n + 1`` points and drop the last (``leading`` uses ``N // (n +
    1)``; ``lambda_min_clipped`` is not applied). Map them to times with :func:`from_timesteps`.

    Args:
        num_inference_steps: ``n``, the number of sampling steps, ``<= num_train_timesteps``.
        num_train_timesteps: ``N``, the scheduler's training timesteps (default 1000).
        spacing: ``timestep_spacing``: ``"leading"`` (default), ``"trailing"`` or ``"linspace"``.
        steps_offset: added to the ``"leading"`` timesteps (default 0; ignored by the other spacings).
        scheduler: ``"ddim"`` (default; also DDPM) or ``"dpm_solver"`` (also UniPC).

    Returns:
        ``n`` decreasing integer timesteps (int64 NumPy array).
    """
    n = check_positive_int(num_inference_steps, "num_inference_steps")
    big_n = check_positive_int(num_train_timesteps, "num_train_timesteps")
    if n > big_n:
        raise ValueError(f"num_inference_steps={n} exceeds num_train_timesteps={big_n}.")
    if spacing not in DIFFUSERS_SPACINGS:
        raise ValueError(f"`spacing` must be one of {DIFFUSERS_SPACINGS}, got {spacing!r}.")
    if scheduler not in ("ddim", "dpm_solver"):
        raise ValueError(f"`scheduler` must be 'ddim' or 'dpm_solver', got {scheduler!r}.")
    if scheduler == "ddim":
        if spacing == "linspace":
            return np.linspace(0, big_n - 1, n).round()[::-1].astype(np.int64)
        if spacing == "leading":
            return (np.arange(0, n) * (big_n // n)).round()[::-1].astype(np.int64) + int(steps_offset)
        return np.round(np.arange(big_n, 0, -big_n / n)).astype(np.int64) - 1
    if spacing == "linspace":
        return np.linspace(0, big_n - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = big_n // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + int(steps_offset)
    return np.arange(big_n, 0, -big_n / n).round().astype(np.int64) - 1


def from_timesteps(
    process: AbstractProcess, timesteps: ArrayLike, num_train_timesteps: int = 1000
) -> Float[Array, " n"]:
    """diffsim times of discrete DDPM timesteps ``k`` (0-based, as diffusers numbers them): ``t = (k + 1) /
    num_train_timesteps``, the convention of ``VP.from_alpha_bar`` / ``from_betas`` (DPM-Solver's),
    so that ``process.alpha_bar(t)`` is the scheduler's ``alphas_cumprod[k]`` exactly for the process
    built from the same schedule. diffusers' last step (to ``alpha_bar = 1``, sigma = 0) is
    ``simulate(..., final_denoise=True)``.

    Args:
        process: the diffusion process; the times must lie in its range.
        timesteps: 0-based integer timesteps in ``[0, num_train_timesteps - 1]`` (e.g. from
            :func:`diffusers_timesteps`).
        num_train_timesteps: ``N`` (default 1000).

    Returns:
        The times ``(k + 1) / N``, shape ``(n,)``.
    """
    big_n = check_positive_int(num_train_timesteps, "num_train_timesteps")
    k = np.asarray(timesteps, dtype=np.float64).reshape(-1)
    if k.size < 1 or not np.all(np.isfinite(k)) or np.any(k < 0) or np.any(k > big_n - 1):
        raise ValueError(f"`timesteps` must lie in [0, {big_n - 1}], got {k.tolist()[:5]}...")
    ts = jnp.asarray((k + 1.0) / big_n)
    process.check_time(ts, "times of `timesteps`", allow_zero=False)
    return ts
