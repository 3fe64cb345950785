r"""Time grids for fixed-step samplers.

A grid is a 1-D array of ``n_steps + 1`` diffusion times. Reverse grids run from ``t_start`` (default
``process.t_max``) down to ``t_end`` (default ``process.t_min``); :func:`forward_uniform` runs up from 0.
Every grid here is built in some monotone reparametrisation of time and mapped back through the process's
closed-form inverses, so it is exact for any process.

- :func:`uniform`: uniform in ``t``.
- :func:`geometric`: uniform in ``log t``.
- :func:`karras`: EDM's schedule (Karras et al. 2022, eq. 5) in the noise-to-signal ratio
  ``sigma_tilde = sigma/alpha = exp(-log_snr/2)``: ``sigma_i = (s_max^{1/rho} + i/n (s_min^{1/rho} -
  s_max^{1/rho}))^rho``.
- :func:`logsnr_uniform`: uniform in log-SNR (DPM-Solver's ``skip_type='logSNR'``).
- :func:`exponential`: Park, Ju & Lee (2024)'s exponential schedule, early-dense ("semantic") or late-dense
  ("delicate"), made continuous: with ``a = T^{1/(n + lam)}`` and ``g_k = a^{k}/T`` for ``k = lam .. lam+n``
  (geometric from ``a^lam/T`` to 1), normalised to ``[0, 1]``. Late-dense puts these fractions at the
  data end of the interval, early-dense at the noise end. Larger ``lam`` gives a flatter grid.
  :func:`paper_timesteps` is the discrete original of the released code.
- :func:`information_schedule`: information-equalising (ITD's FIG schedule): equal quantiles of a
  cumulative information density over log-SNR (the density is an argument, e.g.
  :func:`diffsim.analysis.concepts.information_density`).
- :func:`step_schedule`: one of :data:`STEP_SCHEDULES` by name.
- The peers' grids: :func:`sigmas_karras`, :func:`sigmas_exponential`, :func:`sigmas_polyexponential`,
  :func:`sigmas_vp` (k-diffusion's ``get_sigmas_*``, float64, without the trailing 0) and
  :func:`from_sigmas` (noise levels to times, exact); :func:`diffusers_timesteps` (diffusers'
  ``leading`` / ``trailing`` / ``linspace`` spacing with ``steps_offset``) and :func:`from_timesteps`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_positive_int
from ..processes import AbstractProcess


__all__ = [
    "DIFFUSERS_SPACINGS",
    "STEP_SCHEDULES",
    "diffusers_timesteps",
    "exponential",
    "forward_uniform",
    "from_sigmas",
    "from_timesteps",
    "geometric",
    "information_schedule",
    "karras",
    "logsnr_uniform",
    "paper_timesteps",
    "reverse_endpoints",
    "sigmas_exponential",
    "sigmas_karras",
    "sigmas_polyexponential",
    "sigmas_vp",
    "step_schedule",
    "uniform",
]


def reverse_endpoints(
    process: AbstractProcess, t_start: float | None, t_end: float | None
) -> tuple[float, float]:
    """Resolve and validate ``(t_start, t_end)`` of a reverse grid (``t_start > t_end > 0``).

    Args:
        process: the diffusion process whose time range the ends must lie in.
        t_start: first (noisiest) time, or ``None`` for ``process.t_max``.
        t_end: last time, or ``None`` for ``process.t_min``.

    Returns:
        ``(t_start, t_end)`` as floats; ``ValueError`` when out of range or not ``t_start > t_end > 0``.
    """
    _check_process(process)
    t0 = process.t_max if t_start is None else float(t_start)
    t1 = process.t_min if t_end is None else float(t_end)
    process.check_time(t0, "t_start", allow_zero=False)
    process.check_time(t1, "t_end", allow_zero=False)
    if not t0 > t1:
        raise ValueError(f"A reverse grid needs t_start > t_end, got t_start={t0}, t_end={t1}.")
    return t0, t1


def _from_u(process, n, t_start, t_end, u):
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    return t0 + (t1 - t0) * jnp.asarray(u)


def uniform(
    process: AbstractProcess, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> Float[Array, " n1"]:
    """``n_steps + 1`` times uniform in ``t`` from ``t_start`` down to ``t_end``.

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    n = check_positive_int(n_steps, "n_steps")
    return _from_u(process, n, t_start, t_end, np.linspace(0.0, 1.0, n + 1))


def geometric(
    process: AbstractProcess, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> Float[Array, " n1"]:
    """Times uniform in ``log t`` (dense near the data end).

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    n = check_positive_int(n_steps, "n_steps")
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    return jnp.asarray(np.exp(np.linspace(math.log(t0), math.log(t1), n + 1)))


def logsnr_uniform(
    process: AbstractProcess, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> Float[Array, " n1"]:
    """Times uniform in log-SNR, mapped back with the process's closed-form inverse.

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    n = check_positive_int(n_steps, "n_steps")
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    lam = jnp.linspace(process.log_snr(t0), process.log_snr(t1), n + 1)
    ts = process.t_from_log_snr(lam)
    return ts.at[0].set(t0).at[-1].set(t1)


def karras(
    process: AbstractProcess,
    n_steps: int,
    rho: float = 7.0,
    t_start: float | None = None,
    t_end: float | None = None,
) -> Float[Array, " n1"]:
    """EDM's rho-schedule in ``sigma_tilde = sigma/alpha`` (Karras et al. 2022, eq. 5).

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        rho: the schedule's exponent, ``> 0`` (default 7, EDM's); larger values crowd steps near ``t_end``.
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    n = check_positive_int(n_steps, "n_steps")
    if not rho > 0:
        raise ValueError(f"`rho` must be positive, got {rho}.")
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    s_max = jnp.exp(-0.5 * process.log_snr(t0))
    s_min = jnp.exp(-0.5 * process.log_snr(t1))
    i = jnp.linspace(0.0, 1.0, n + 1)
    sig = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    ts = process.t_from_log_snr(-2.0 * jnp.log(sig))
    return ts.at[0].set(t0).at[-1].set(t1)


def exponential(
    process: AbstractProcess,
    n_steps: int,
    lam: float = 60.0,
    dense: str = "early",
    t_start: float | None = None,
    t_end: float | None = None,
    n_train_steps: int = 1000,
) -> Float[Array, " n1"]:
    """Park, Ju & Lee (2024)'s exponential schedule, continuous version (see module docstring).

    ``dense="early"`` concentrates steps near ``t_start`` (the noise end, where coarse "semantic" features
    are decided), ``dense="late"`` near ``t_end`` (fine "delicate" detail). ``n_train_steps`` is the
    paper's ``T = 1000``.

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        lam: the offset ``lam >= 0`` of the geometric ramp (default 60); larger is flatter.
        dense: ``"early"`` (default, dense near ``t_start``) or ``"late"`` (dense near ``t_end``).
        t_start: first (noisiest) time; ``None`` (default): ``process.t_max``.
        t_end: last time, ``0 < t_end < t_start``; ``None`` (default): ``process.t_min``.
        n_train_steps: the paper's ``T``, an int ``>= 2`` (default 1000).

    Returns:
        The ``n_steps + 1`` decreasing times, from ``t_start`` to ``t_end``.
    """
    n = check_positive_int(n_steps, "n_steps")
    if dense not in ("early", "late"):
        raise ValueError(f"`dense` must be 'early' or 'late', got {dense!r}.")
    if not lam >= 0:
        raise ValueError(f"`lam` must be >= 0, got {lam}.")
    big_t = float(check_positive_int(n_train_steps, "n_train_steps", minimum=2))
    a = big_t ** (1.0 / (n + lam))
    g = a ** (lam + np.arange(n + 1)) / big_t  # geometric from a^lam / T to 1
    g = (g - g[0]) / (g[-1] - g[0])  # in [0, 1], dense near 0
    u = 1.0 - g[::-1] if dense == "late" else g  # fraction of the way from t_start to t_end
    return _from_u(process, n, t_start, t_end, u)


def forward_uniform(
    process: AbstractProcess, n_steps: int, t_start: float = 0.0, t_end: float | None = None
) -> Float[Array, " n1"]:
    """Increasing grid from ``t_start`` (default 0, the data) to ``t_end`` (default ``t_max``).

    Args:
        process: the diffusion process (its ``t_min``/``t_max``, log-SNR and closed-form inverses).
        n_steps: number of steps, a positive int (the grid has ``n_steps + 1`` times).
        t_start: first time, ``>= 0`` (default 0).
        t_end: last time, ``> t_start``; ``None`` (default): ``process.t_max``.

    Returns:
        The ``n_steps + 1`` increasing times (for the forward samplers ``"forward"`` / ``"forward_em"``).
    """
    n = check_positive_int(n_steps, "n_steps")
    _check_process(process)
    t1 = process.t_max if t_end is None else float(t_end)
    process.check_time(t_start, "t_start")
    process.check_time(t1, "t_end")
    if not t1 > t_start:
        raise ValueError(f"A forward grid needs t_end > t_start, got {t_start}, {t1}.")
    return jnp.linspace(float(t_start), t1, n + 1)


# ---------------------------------------------------------------------------------------------------------
# step schedules of the concepts study (Park, Ju & Lee 2024; ITD's information-equalising grid)
# ---------------------------------------------------------------------------------------------------------
STEP_SCHEDULES = ("uniform", "early", "late", "logsnr", "information")


def _check_process(process) -> AbstractProcess:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process


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
