r"""Closed forms of Li, Karan & Chen's (2025) window for mixtures of Gaussians with one spherical covariance.

Every component is ``N(mu_k, s^2 I)``; under a forward process ``x_t = alpha_t x_0 + sigma_t z`` two
components stay Gaussian with one covariance ``(alpha_t^2 s^2 + sigma_t^2) I`` and

    TV(N_i(t), N_j(t)) = 2 Phi(delta_ij(t) / 2) - 1,
    delta_ij(t)^2 = alpha_t^2 D_ij^2 / (alpha_t^2 s^2 + sigma_t^2),

``D_ij = |mu_i - mu_j|``. In log-SNR ``lambda = log(alpha^2 / sigma^2)``,
``delta^2 = D^2 e^lambda / (e^lambda s^2 + 1)``, so ``delta(t) = delta*`` at
``lambda = log(delta*^2 / (D^2 - delta*^2 s^2))`` (OU: ``t = 1/2 log(1 - s^2 + D^2 / delta*^2)``).
Derivations of the bounds below: ``docs/critical-windows.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..._types import ArrayOrSequence
from ...processes import VP, AbstractProcess
from ._follow_up import FollowUpBound, _check_odds, follow_up_error
from ._groups import _check_eps


def _check_process(process):
    if process is None:
        return VP.ou()
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process


def _check_variance(variance) -> float:
    if isinstance(variance, bool) or not isinstance(variance, (int, float, np.floating, np.integer)):
        raise TypeError(f"`variance` must be a positive number, got {type(variance).__name__}.")
    v = float(variance)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`variance` must be finite and positive, got {v}.")
    return v


def spherical_crossing_time(
    distance: float, level: float, *, variance: float = 1.0, process: AbstractProcess | None = None
) -> float:
    r"""The time at which ``TV(N(alpha_t mu_a, C_t), N(alpha_t mu_b, C_t))`` falls to ``level``.

    ``C_t = (alpha_t^2 s^2 + sigma_t^2) I`` and ``|mu_a - mu_b| = distance``: the TV is
    ``2 Phi(delta_t / 2) - 1``, non-increasing in ``t``; it equals ``level`` where
    ``delta_t = delta* = 2 Phi^{-1}((1 + level) / 2)``, i.e. at log-SNR
    ``log(delta*^2 / (D^2 - delta*^2 s^2))`` (OU: ``1/2 log(1 - s^2 + D^2 / delta*^2)``). ``0`` when the TV is
    already at most ``level`` at ``t = 0`` (``D <= delta* s``, or ``level >= 1``); ``inf`` for ``level <= 0``.
    May exceed ``process.t_max``.

    Args:
        distance: ``|mu_a - mu_b|``, non-negative.
        level: the TV level.
        variance: the components' variance ``s^2`` (positive).
        process: the forward process (default :meth:`VP.ou`).
    """
    process = _check_process(process)
    s2 = _check_variance(variance)
    if isinstance(distance, bool) or not isinstance(distance, (int, float, np.floating, np.integer)):
        raise TypeError(f"`distance` must be a non-negative number, got {type(distance).__name__}.")
    d = float(distance)
    if not (math.isfinite(d) and d >= 0):
        raise ValueError(f"`distance` must be finite and non-negative, got {d}.")
    level = float(level)
    if math.isnan(level):
        raise ValueError("`level` must be a number, got NaN.")
    if level >= 1.0:
        return 0.0
    if level <= 0.0:
        return float("inf")
    delta = 2.0 * NormalDist().inv_cdf(0.5 * (1.0 + level))
    denom = d**2 - delta**2 * s2
    if denom <= 0:
        return 0.0
    return float(process.t_from_log_snr(jnp.asarray(math.log(delta**2 / denom))))


def _pairwise(means: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(means[a][:, None, :] - means[b][None, :, :], axis=-1)


def _check_groups(k: int, weights: np.ndarray, s_init, s_targ) -> tuple[np.ndarray, np.ndarray]:
    def one(g, name):
        arr = np.atleast_1d(np.asarray(g))
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"`{name}` must be a non-empty flat list of component indices, got {g!r}.")
        if np.any(arr < 0) or np.any(arr >= k) or len(set(arr.tolist())) != arr.size:
            raise ValueError(f"`{name}` must hold distinct indices in [0, {k}), got {arr.tolist()}.")
        return np.sort(arr.astype(int))

    i, t = one(s_init, "s_init"), one(s_targ, "s_targ")
    if not set(i.tolist()) <= set(t.tolist()):
        raise ValueError(f"`s_init` {i.tolist()} must be a subset of `s_targ` {t.tolist()}.")
    return i, t


def spherical_follow_up_bound(
    means: ArrayOrSequence,
    weights: ArrayOrSequence,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    eps: float,
    *,
    variance: float = 1.0,
    process: AbstractProcess | None = None,
) -> FollowUpBound:
    r"""Closed-form ``[T_end, T_start]`` of Li, Karan & Chen's Theorem 2 for ``sum_k w_k N(mu_k, s^2 I)``.

    With ``R = S_targ \ S_init``, ``lambda = W(S_init) / W(S_targ)`` and the pairwise distances ``D_ij``:

    - ``T_end``: ``TV(p^{S_init}_t, p^{S_targ}_t) = (1 - lambda) TV(p^{S_init}_t, p^R_t) <= (1 - lambda)
      max_{i in S_init, j in R} TV(N_i(t), N_j(t))`` (joint convexity), so ``T_end <=`` the time at which the
      pair at the largest distance reaches the level ``eps / (1 - lambda)``;
    - ``T_start``: ``1 - TV(P, Q) = int min(P, Q) <= sum_{i, j} int min(pi_i N_i, pi'_j N_j) <= M (1 -
      TV(N_i, N_j))_max`` with ``M = sum_{i in S_targ, j notin S_targ} max(pi_i, pi'_j)`` (``pi``, ``pi'``:
      weights normalised in ``S_targ`` and in the rest), so ``T_start >=`` the time at which the pair at the
      smallest distance reaches the level ``1 - eps^2 / M``.

    The returned window is therefore *inside* the exact one (still certified by the theorem) and equal to it
    when ``S_init``, ``S_targ \ S_init`` and the rest are single components (two Gaussians). For random means
    ``mu_k ~ N(0, rho^2 I_d)`` all ``D_ij`` concentrate at ``rho sqrt(2 d)``: both ends then move like
    ``1/2 log d`` and the window width does not depend on ``d`` (``docs/critical-windows.md``).
    ``T_start`` is capped at ``process.t_max`` (and is ``t_max`` when ``S_targ`` covers every component).

    Args:
        means: component means ``(K, d)``.
        weights: positive weights ``(K,)`` summing to one.
        s_init: the initial group (indices), a subset of ``s_targ``.
        s_targ: the target group (indices).
        eps: the theorem's tolerance, in ``(0, 1)``.
        variance: the shared component variance ``s^2``.
        process: the forward process (default :meth:`VP.ou`).
    """
    process = _check_process(process)
    eps = _check_eps(eps)
    s2 = _check_variance(variance)
    mu = np.asarray(means, float)
    if mu.ndim != 2 or mu.shape[0] < 1 or not np.all(np.isfinite(mu)):
        raise ValueError(f"`means` must be a finite (K, d) array, got shape {mu.shape}.")
    w = np.asarray(weights, float)
    if w.shape != (mu.shape[0],) or np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"`weights` must be {mu.shape[0]} positive numbers summing to one, got {w.tolist()}."
        )
    k = mu.shape[0]
    idx_i, idx_t = _check_groups(k, w, s_init, s_targ)
    rest = np.setdiff1d(np.arange(k), idx_t)
    intra = np.setdiff1d(idx_t, idx_i)
    t_max = float(process.t_max)
    opts = {"variance": s2, "process": process}
    odds = _check_odds(float(w[rest].sum() / w[idx_t].sum()) if rest.size else 0.0)
    if intra.size == 0:
        t_end = 0.0
    else:
        lam = w[idx_i].sum() / w[idx_t].sum()
        t_end = spherical_crossing_time(float(_pairwise(mu, idx_i, intra).max()), eps / (1.0 - lam), **opts)
    if rest.size == 0:
        t_start = t_max
    else:
        pi, pr = w[idx_t] / w[idx_t].sum(), w[rest] / w[rest].sum()
        m = float(np.maximum(pi[:, None], pr[None, :]).sum())
        d_min = float(_pairwise(mu, idx_t, rest).min())
        t_start = min(spherical_crossing_time(d_min, 1.0 - eps**2 / m, **opts), t_max)
    return FollowUpBound(
        tuple(idx_i.tolist()),
        tuple(idx_t.tolist()),
        eps,
        odds,
        follow_up_error(eps, odds),
        t_start,
        t_end,
        "closed_form",
    )
