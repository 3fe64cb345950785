"""Reverse and forward grids built in a monotone reparametrisation of time and mapped back exactly.

Re-exported by :mod:`diffsim.sampling.grids`, whose docstring describes them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_positive_int
from ..processes import AbstractProcess


def _check_process(process) -> AbstractProcess:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process


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
