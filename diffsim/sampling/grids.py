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
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_positive_int
from ..processes import AbstractProcess


__all__ = [
    "STEP_SCHEDULES",
    "exponential",
    "forward_uniform",
    "geometric",
    "information_schedule",
    "karras",
    "logsnr_uniform",
    "paper_timesteps",
    "reverse_endpoints",
    "step_schedule",
    "uniform",
]


def reverse_endpoints(
    process: AbstractProcess, t_start: float | None, t_end: float | None
) -> tuple[float, float]:
    """Resolve and validate ``(t_start, t_end)`` of a reverse grid (``t_start > t_end > 0``)."""
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
    """``n_steps + 1`` times uniform in ``t`` from ``t_start`` down to ``t_end``."""
    n = check_positive_int(n_steps, "n_steps")
    return _from_u(process, n, t_start, t_end, np.linspace(0.0, 1.0, n + 1))


def geometric(
    process: AbstractProcess, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> Float[Array, " n1"]:
    """Times uniform in ``log t`` (dense near the data end)."""
    n = check_positive_int(n_steps, "n_steps")
    t0, t1 = reverse_endpoints(process, t_start, t_end)
    return jnp.asarray(np.exp(np.linspace(math.log(t0), math.log(t1), n + 1)))


def logsnr_uniform(
    process: AbstractProcess, n_steps: int, t_start: float | None = None, t_end: float | None = None
) -> Float[Array, " n1"]:
    """Times uniform in log-SNR, mapped back with the process's closed-form inverse."""
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
    """EDM's rho-schedule in ``sigma_tilde = sigma/alpha`` (Karras et al. 2022, eq. 5)."""
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
    """Increasing grid from ``t_start`` (default 0, the data) to ``t_end`` (default ``t_max``)."""
    n = check_positive_int(n_steps, "n_steps")
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

    The continuous counterpart used by the samplers is :func:`exponential`."""
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
) -> Float[Array, " n1"]:
    r"""An information-equalising reverse grid (ITD's FIG schedule, Kong et al. 2023): with a non-negative
    density ``q(lambda)`` on a log-SNR grid (linearly interpolated, zero outside it) mixed with a uniform
    floor, ``q_f = (1 - floor) q / \int q + floor / (lambda_1 - lambda_0)`` on ``[lambda_0, lambda_1] =
    [lambda(t_start), lambda(t_end)]``, the ``n_steps + 1`` times sit at equal quantiles of
    ``F(lambda) = \int_{lambda_0}^{lambda} q_f``: each step carries the same share of the information.
    The floor (default 10%) keeps steps everywhere (the density may vanish where nothing is decided)."""
    _check_process(process)
    n = check_positive_int(n_steps, "n_steps")
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
    ts = np.array(process.t_from_log_snr(jnp.asarray(lam_t)), dtype=float)
    ts[0], ts[-1] = t0, t1
    ts = np.minimum.accumulate(ts)  # guard against round-off
    if not np.all(np.diff(ts) < 0):
        raise ValueError("The information schedule is degenerate (repeated times); increase `floor`.")
    return jnp.asarray(ts)


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
    ``log_snr``."""
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
