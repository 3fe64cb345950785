"""Step schedules of the concepts study (Park, Ju & Lee 2024; ITD's information-equalising grid).

Re-exported by :mod:`diffsim.sampling.grids`, whose docstring describes them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_positive_int
from ..processes import AbstractProcess
from ._time_grids import _check_process, exponential, logsnr_uniform, reverse_endpoints, uniform


# ---------------------------------------------------------------------------------------------------------
# step schedules of the concepts study (Park, Ju & Lee 2024; ITD's information-equalising grid)
# ---------------------------------------------------------------------------------------------------------
STEP_SCHEDULES = ("uniform", "early", "late", "logsnr", "information")


def paper_timesteps(
    n_steps: int = 30, lam: float = 60.0, dense: str = "early", n_train_steps: int = 1000
) -> np.ndarray:
    r"""Park, Ju & Lee (2024)'s exponential scheduler exactly as in the released code, in discrete DDPM
    timesteps (``T = n_train_steps``): ``a = exp(ln T / (N + lam))``;

    - ``"early"`` (semantic): ``t_i = T - floor(a^{i + 1 + lam})``, ``i = 0..N-1``, with ``T - 1``
      prepended and the last entry dropped (``999, 893, 884, 875, ..., 206, 143, 74`` for the defaults);
    - ``"late"`` (delicate): ``floor(a^{i + 1 + lam})`` sorted in decreasing order (clipped to ``T - 1``).

    The continuous counterpart used by the samplers is :func:`exponential`.

    Args:
        n_steps: ``N``, the number of timesteps, an int ``>= 2`` (default 30).
        lam: the offset ``lam >= 0`` (default 60).
        dense: ``"early"`` (default, semantic) or ``"late"`` (delicate).
        n_train_steps: ``T``, the number of training timesteps, an int ``>= 2`` (default 1000).

    Returns:
        ``N`` integer DDPM timesteps, decreasing, as a NumPy array.
    """
    n = check_positive_int(n_steps, "n_steps", minimum=2)
    big_t = check_positive_int(n_train_steps, "n_train_steps", minimum=2)
    if dense not in ("early", "late"):
        raise ValueError(f"`dense` must be 'early' or 'late', got {dense!r}.")
    if not lam >= 0:
        raise ValueError(f"`lam` must be >= 0, got {lam}.")
    a = math.exp(math.log(big_t) / (n + lam))
    pw = np.floor(a ** (np.arange(n) + 1 + lam)).astype(int)
    if dense == "early":
        ts = big_t - pw
        return np.concatenate([[big_t - 1], ts[:-1]])
    return np.sort(np.minimum(pw, big_t - 1))[::-1].copy()


def information_schedule(
    process: AbstractProcess,
    n_steps: int,
    log_snr: ArrayLike,
    density: ArrayLike,
    *,
    floor: float = 0.1,
    t_start: float | None = None,
    t_end: float | None = None,
    max_angle: float | None = None,
    mode_std: float | tuple[float, ...] | ArrayLike = 1.0,
) -> Float[Array, " n1"]:
    r"""An information-equalising reverse grid (ITD's FIG schedule, Kong et al. 2023): with a non-negative
    density ``q(lambda)`` on a log-SNR grid (linearly interpolated, zero outside it) mixed with a uniform
    floor, ``q_f = (1 - floor) q / \int q + floor / (lambda_1 - lambda_0)`` on ``[lambda_0, lambda_1] =
    [lambda(t_start), lambda(t_end)]``, the ``n_steps + 1`` times sit at equal quantiles of
    ``F(lambda) = \int_{lambda_0}^{lambda} q_f``: each step carries the same share of the information.
    The floor (default 10%) keeps steps everywhere (the density may vanish where nothing is decided).

    With ``max_angle = delta`` every step is also bounded in the angle ``theta(lambda) = arctan(e^{-lambda/2}
    / mode_std)``: one DDIM step from ``lambda_a`` to ``lambda_b`` multiplies the spread of a decided Gaussian
    mode of std ``mode_std`` by ``cos(theta_a - theta_b)`` (the exact flow keeps it), so ``|Delta theta| <=
    delta`` caps that contraction at ``cos(delta)`` per step. The grid is then the min-max one: the smallest
    share ``c`` such that ``n_steps`` steps, each as long as both ``Delta F <= c`` and ``|Delta theta| <=
    delta`` allow (greedy from ``lambda_0``), reach ``lambda_1``; every step carries exactly ``c`` of the
    information or turns by exactly ``delta``. It needs ``n_steps delta >= theta(lambda_0) -
    theta(lambda_1)``; where the plain schedule already respects the bound it is returned unchanged. Several
    stds bound every scale's angle at once (a data set's scales: the square roots of its covariance's
    eigenvalues and its modes' std). Since ``|d theta / d lambda| <= 1/4``, a cap ``Delta lambda <= 4
    delta`` respects it for any ``mode_std`` (derivation: docs/concepts.md).

    Args:
        process: the diffusion process (maps log-SNR to time).
        n_steps: number of steps.
        log_snr: log-SNR values on which ``density`` is given.
        density: non-negative information density at ``log_snr``.
        floor: share of a uniform density in log-SNR mixed in, in ``[0, 1]``.
        t_start: first (noisiest) time; default ``process.t_max``.
        t_end: last time; default ``process.t_min``.
        max_angle: bound ``delta > 0`` (radians) on every step's angle increment; ``None``: no bound.
        mode_std: the std of a mode in ``theta``'s definition (data units, > 0), or several (e.g. the square
            roots of the data covariance's eigenvalues and the within-mode std): every scale is bounded.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    _check_process(process)
    n = check_positive_int(n_steps, "n_steps")
    if max_angle is not None and not (math.isfinite(float(max_angle)) and float(max_angle) > 0):
        raise ValueError(f"`max_angle` must be a positive finite number or None, got {max_angle}.")
    stds = np.asarray(mode_std, float).reshape(-1)
    if stds.size < 1 or not np.all(np.isfinite(stds)) or np.any(stds <= 0):
        raise ValueError(f"`mode_std` must hold positive finite numbers, got {mode_std}.")
    if not 0.0 <= float(floor) <= 1.0:
        raise ValueError(f"`floor` must lie in [0, 1], got {floor}.")
    lam = np.asarray(log_snr, float).reshape(-1)
    q = np.asarray(density, float).reshape(-1)
    if lam.shape != q.shape or lam.size < 2:
        raise ValueError(
            f"`log_snr` and `density` must be 1-D of one length >= 2, got {lam.shape} and {q.shape}."
        )
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(q))) or np.any(q < 0):
        raise ValueError("`density` must be finite and non-negative (and `log_snr` finite).")
    order = np.argsort(lam)
    lam, q = lam[order], q[order]
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    l0, l1 = float(process.log_snr(t0)), float(process.log_snr(t1))
    fine = np.linspace(l0, l1, 4001)
    qf = np.interp(fine, lam, q, left=0.0, right=0.0)
    mass = np.trapezoid(qf, fine) if hasattr(np, "trapezoid") else np.trapz(qf, fine)
    if mass <= 0 and floor < 1:
        floor = 1.0  # no information anywhere: fall back to uniform in log-SNR
    qf = (1 - floor) * (qf / mass if mass > 0 else 0 * qf) + floor / (l1 - l0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (qf[1:] + qf[:-1]) * np.diff(fine))])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, n + 1)
    lam_t = np.interp(targets, cdf, fine)
    if max_angle is not None:
        lam_t = _angle_bounded(lam_t, fine, cdf, float(max_angle), stds)
    ts = np.array(process.t_from_log_snr(jnp.asarray(lam_t)), dtype=float)
    ts[0], ts[-1] = t0, t1
    ts = np.minimum.accumulate(ts)  # guard against round-off
    if not np.all(np.diff(ts) < 0):
        raise ValueError("The information schedule is degenerate (repeated times); increase `floor`.")
    return jnp.asarray(ts)


def _angle_bounded(lam_t, fine, cdf, delta, stds):
    """Min-max information-equalising log-SNRs with every angle increment ``<= delta`` (see
    :func:`information_schedule`); ``lam_t`` (the plain schedule) is returned if it respects the bound."""
    phis = np.arctan2(1.0, stds[:, None] * np.exp(0.5 * fine)[None, :])
    phis = phis[:, :1] - phis  # turned angle per scale, increasing from 0
    n = len(lam_t) - 1
    if np.all(np.diff(np.stack([np.interp(lam_t, fine, phi) for phi in phis]), axis=1) <= delta):
        return lam_t

    def walk(c):
        lam = [fine[0]]
        for _ in range(n):
            f_cur = np.interp(lam[-1], fine, cdf)
            nxt = [np.interp(f_cur + c, cdf, fine) if f_cur + c < 1 else fine[-1]]
            for phi in phis:
                p_cur = np.interp(lam[-1], fine, phi)
                nxt.append(np.interp(p_cur + delta, phi, fine) if p_cur + delta < phi[-1] else fine[-1])
            lam.append(min(nxt))
        return np.asarray(lam)

    if walk(1.0)[-1] < fine[-1]:
        raise ValueError(
            f"`max_angle`={delta} is infeasible: {n} steps of at most {delta} rad each do not reach the end "
            f"(one scale alone needs {phis[:, -1].max():.4f} rad)."
        )
    lo, hi = 0.0, 1.0  # walk(hi) reaches the end (angle-limited steps suffice), walk(0) does not move
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if walk(mid)[-1] >= fine[-1] else (mid, hi)
    lam = walk(hi)
    lam[-1] = fine[-1]
    return lam


def step_schedule(
    process: AbstractProcess,
    n_steps: int,
    kind: str = "uniform",
    *,
    lam: float = 60.0,
    log_snr: ArrayLike | None = None,
    density: ArrayLike | None = None,
    floor: float = 0.1,
    t_start: float | None = None,
    t_end: float | None = None,
) -> Float[Array, " n1"]:
    """A reverse time grid of ``n_steps`` steps: ``"uniform"`` in ``t``; ``"early"`` / ``"late"``: Park et
    al.'s exponential early-dense / late-dense schedule (:func:`exponential`, ``lam``);
    ``"logsnr"``: uniform in log-SNR; ``"information"``: :func:`information_schedule` of ``density`` on
    ``log_snr``.

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        kind: one of :data:`STEP_SCHEDULES`: ``"uniform"`` (default), ``"early"``, ``"late"``, ``"logsnr"``,
            ``"information"``.
        lam: :func:`exponential`'s offset for ``"early"`` / ``"late"`` (default 60).
        log_snr: log-SNR values of ``density``; required for ``"information"``, ignored otherwise.
        density: non-negative information density at ``log_snr``; required for ``"information"``.
        floor: uniform share mixed into the ``"information"`` density, in ``[0, 1]`` (default 0.1).
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    _check_process(process)
    if kind not in STEP_SCHEDULES:
        raise ValueError(f"Unknown schedule {kind!r}; schedules are {STEP_SCHEDULES}.")
    if kind == "uniform":
        return uniform(process, n_steps, t_start, t_end)
    if kind in ("early", "late"):
        return exponential(process, n_steps, lam, kind, t_start, t_end)
    if kind == "logsnr":
        return logsnr_uniform(process, n_steps, t_start, t_end)
    if log_snr is None or density is None:
        raise ValueError(
            "The 'information' schedule needs `log_snr` and `density` (see information_density)."
        )
    return information_schedule(process, n_steps, log_snr, density, floor=floor, t_start=t_start, t_end=t_end)
