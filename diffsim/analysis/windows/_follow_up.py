r"""The dimension-free critical-window bound of Li, Karan & Chen (2025), from exact forward total variations.

Li, Karan & Chen, "Blink of an eye: a simple theory for feature localization in generative models" (ICML
2025, arXiv 2502.00921), Theorem 2. For ``S_init ⊆ S_targ`` and the odds ``W = W(rest) / W(S_targ)`` of the
components outside the target group,

- ``T_start(eps) = sup{t : TV(p^{S_targ}_t, p^{rest}_t) >= 1 - eps^2}`` (the last time the target group is
  still almost perfectly separated from the rest);
- ``T_end(eps) = inf{t : TV(p^{S_init}_t, p^{S_targ}_t) <= eps}`` (the first time the initial group can no
  longer be told apart from the target group);

and for every ``T_hat`` in ``[T_end, T_start]``, for the reverse SDE and the probability-flow ODE alike,
``TV(p^{S_init, T_hat}, p^{S_targ}) <= eps (1 + max(1, W) / sqrt 2)``. Both times come from the exact forward
TVs of :func:`submixture_tv`; the bound needs no score, Lipschitz or dimension assumption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike

from ..._validation import check_positive_int
from ...scores.mixture import GaussianMixture
from ._groups import _check_eps, _check_mixture, _nested
from ._tv import submixture_tv


def follow_up_error(eps: float, odds: float) -> float:
    r"""The error of Theorem 2 of Li, Karan & Chen (2025): ``eps (1 + max(1, W) / sqrt 2)``.

    Args:
        eps: the theorem's tolerance, in ``(0, 1)``.
        odds: ``W = W(Theta \ S_targ) / W(S_targ)``, non-negative (0 when ``S_targ`` is every component).
    """
    eps = _check_eps(eps)
    odds = _check_odds(odds)
    return float(eps * (1.0 + max(1.0, odds) / math.sqrt(2.0)))


def follow_up_eps(tolerance: float, odds: float) -> float:
    r"""The theorem tolerance ``eps`` whose error ``eps (1 + max(1, W) / sqrt 2)`` equals ``tolerance``.

    Used to put the follow-up's window on the same footing as an exact window read at ``tolerance``.

    Args:
        tolerance: the wanted bound on ``TV(p^{S_init, T_hat}, p^{S_targ})``, in ``(0, 1)``.
        odds: ``W = W(Theta \ S_targ) / W(S_targ)``, non-negative.
    """
    tolerance = _check_eps(tolerance)
    odds = _check_odds(odds)
    return float(tolerance / (1.0 + max(1.0, odds) / math.sqrt(2.0)))


def _check_odds(odds: float) -> float:
    if isinstance(odds, bool) or not isinstance(odds, (int, float, np.floating, np.integer)):
        raise TypeError(f"`odds` must be a non-negative number, got {type(odds).__name__}.")
    odds = float(odds)
    if not (math.isfinite(odds) and odds >= 0.0):
        raise ValueError(f"`odds` must be finite and non-negative, got {odds}.")
    return odds


def group_odds(gm: GaussianMixture, s_targ: Sequence[int] | ArrayLike) -> float:
    r"""``W = (sum_{k notin S_targ} w_k) / (sum_{k in S_targ} w_k)`` (0 when ``S_targ`` is every component).

    Args:
        gm: the Gaussian mixture.
        s_targ: the target group (component indices or a boolean mask).
    """
    gm = _check_mixture(gm)
    _, idx = _nested(gm, s_targ, s_targ)
    w = np.asarray(gm.weights, float)
    inside = float(w[idx].sum())
    return float(max(1.0 - inside, 0.0) / inside) if idx.size < gm.n_components else 0.0


def _tv_crossing(tv_fn, t_max: float, level: float, n_grid: int) -> float:
    r"""First ``t`` in ``[0, t_max]`` with ``tv_fn(t) <= level`` for a non-increasing ``tv_fn``.

    Grid of ``n_grid`` times, the bracket refined twice on 8 interior points, then linear interpolation.
    ``0`` if already below at ``t = 0``; ``inf`` if still above at ``t_max``.
    """
    grid = np.linspace(0.0, t_max, n_grid)
    vals = tv_fn(grid)
    below = np.flatnonzero(vals <= level)
    if below.size == 0:
        return float("inf")
    j = int(below[0])
    if j == 0:
        return 0.0
    lo, hi, v_lo, v_hi = grid[j - 1], grid[j], vals[j - 1], vals[j]
    for _ in range(2):
        inner = np.linspace(lo, hi, 10)[1:-1]
        pts = np.concatenate([[lo], inner, [hi]])
        pv = np.concatenate([[v_lo], tv_fn(inner), [v_hi]])
        k = int(np.flatnonzero(pv <= level)[0])
        lo, hi, v_lo, v_hi = pts[k - 1], pts[k], pv[k - 1], pv[k]
    return float(lo + (v_lo - level) / (v_lo - v_hi) * (hi - lo)) if v_lo != v_hi else float(hi)


def _tv_function(gm, group_a, group_b, key, n_samples):
    def tv(ts):
        est = submixture_tv(gm, group_a, group_b, np.asarray(ts, float), key=key, n_samples=n_samples)
        return np.atleast_1d(np.asarray(est.value, float))

    return tv


def separation_time(
    gm: GaussianMixture,
    group: Sequence[int] | ArrayLike,
    eps: float,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    n_grid: int = 81,
) -> float:
    r"""``T_start(eps) = sup{t : TV(p^{S}_t, p^{Theta \ S}_t) >= 1 - eps^2}`` with the exact forward TV.

    The forward TV is non-increasing in ``t`` (data processing), so this is the crossing of the level
    ``1 - eps^2``. Conventions: ``process.t_max`` when ``S`` covers every component (nothing to separate from)
    or when the groups are still separated at ``t_max``; ``0`` when they are not ``(1 - eps^2)``-separated
    even at ``t = 0``.

    Args:
        gm: the Gaussian mixture (its process is the forward process).
        group: the group ``S`` (component indices or a boolean mask).
        eps: the tolerance of Li, Karan & Chen's Theorem 2, in ``(0, 1)``.
        key: key of the Monte Carlo TV (used only when no closed form or quadrature applies).
        n_samples: Monte Carlo sample size.
        n_grid: number of times of the initial crossing grid on ``[0, t_max]``.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    _, idx = _nested(gm, group, group)
    n_grid = check_positive_int(n_grid, "n_grid", minimum=3)
    t_max = float(gm.process.t_max)
    if idx.size == gm.n_components:
        return t_max
    rest = np.setdiff1d(np.arange(gm.n_components), idx)
    key = jr.key(0) if key is None else key
    tv = _tv_function(gm, idx, rest, key, n_samples)
    # TV is non-increasing and continuous in t: sup{t : TV >= level} is its crossing of the level
    t = _tv_crossing(tv, t_max, 1.0 - eps**2, n_grid)
    return min(t, t_max) if math.isfinite(t) else t_max


def closeness_time(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    eps: float,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    n_grid: int = 81,
) -> float:
    r"""``T_end(eps) = inf{t : TV(p^{S_init}_t, p^{S_targ}_t) <= eps}`` with the exact forward TV.

    ``0`` when ``S_init == S_targ`` (or already ``eps``-close at ``t = 0``); ``inf`` if still farther than
    ``eps`` at ``process.t_max``.

    Args:
        gm: the Gaussian mixture.
        s_init: the initial group, a subset of ``s_targ``.
        s_targ: the target group.
        eps: the tolerance, in ``(0, 1)``.
        key: key of the Monte Carlo TV (used only when no closed form or quadrature applies).
        n_samples: Monte Carlo sample size.
        n_grid: number of times of the initial crossing grid on ``[0, t_max]``.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    n_grid = check_positive_int(n_grid, "n_grid", minimum=3)
    if np.array_equal(idx_i, idx_t):
        return 0.0
    key = jr.key(0) if key is None else key
    tv = _tv_function(gm, idx_i, idx_t, key, n_samples)
    return _tv_crossing(tv, float(gm.process.t_max), eps, n_grid)


class FollowUpBound(eqx.Module):
    r"""The window ``[t_end, t_start]`` of Li, Karan & Chen's Theorem 2 for ``S_init ⊆ S_targ``.

    For every ``T_hat`` in ``[t_end, t_start]`` (reverse SDE or probability-flow ODE),
    ``TV(p^{S_init, T_hat}, p^{S_targ}) <= error = eps (1 + max(1, odds) / sqrt 2)``.

    - ``eps``: the theorem's tolerance; ``odds``: ``W = W(rest) / W(S_targ)``;
    - ``t_start``: the separation time of ``S_targ`` from the rest at level ``1 - eps^2``;
    - ``t_end``: the first time ``TV(p^{S_init}_t, p^{S_targ}_t) <= eps``;
    - ``method``: ``"numerical"`` (exact forward TVs, :func:`follow_up_bound`) or ``"closed_form"``
      (:func:`spherical_follow_up_bound`; exact for single components, conservative otherwise).

    Attributes:
        s_init: sorted component indices of ``S_init``.
        s_targ: sorted component indices of ``S_targ``.
        eps: the theorem's tolerance.
        odds: ``W = W(rest) / W(S_targ)``.
        error: ``eps (1 + max(1, odds) / sqrt 2)``.
        t_start: the upper end of the window.
        t_end: the lower end of the window (0 when ``S_init == S_targ``).
        method: ``"numerical"`` or ``"closed_form"``.
    """

    s_init: tuple[int, ...]
    s_targ: tuple[int, ...]
    eps: float
    odds: float
    error: float
    t_start: float
    t_end: float
    method: str

    @property
    def nonempty(self) -> bool:
        """Whether the theorem certifies at least one ``T_hat`` (``t_end <= t_start``)."""
        return bool(self.t_end <= self.t_start)

    def contains(self, t_hat: float) -> bool:
        """Whether ``t_hat`` lies in ``[t_end, t_start]``."""
        return bool(self.t_end <= t_hat <= self.t_start)


def follow_up_bound(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    eps: float,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    n_grid: int = 81,
) -> FollowUpBound:
    r"""Li, Karan & Chen's (2025) dimension-free window ``[T_end, T_start]`` from exact forward TVs.

    ``T_start(eps) = sup{t : TV(p^{S_targ}_t, p^{Theta \ S_targ}_t) >= 1 - eps^2}`` (:func:`separation_time`),
    ``T_end(eps) = inf{t : TV(p^{S_init}_t, p^{S_targ}_t) <= eps}`` (:func:`closeness_time`); for ``T_hat``
    in ``[T_end, T_start]``, ``TV(p^{S_init, T_hat}, p^{S_targ}) <= eps (1 + max(1, W) / sqrt 2)`` with
    ``W = W(Theta \ S_targ) / W(S_targ)`` (Theorem 2 of "Blink of an eye", ICML 2025).

    Args:
        gm: the Gaussian mixture (its process is the forward process).
        s_init: the initial group ``S_init`` (indices or boolean mask), a subset of ``s_targ``.
        s_targ: the target group ``S_targ``.
        eps: the theorem's tolerance, in ``(0, 1)`` (use :func:`follow_up_eps` to aim at a given error).
        key: key of the Monte Carlo forward TVs (only used when no closed form or quadrature applies).
        n_samples: Monte Carlo sample size of the forward TVs.
        n_grid: number of times of the crossing grids on ``[0, t_max]``.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    n_samples = check_positive_int(n_samples, "n_samples", minimum=8)
    odds = group_odds(gm, idx_t)
    key = jr.key(0) if key is None else key
    opts = {"key": key, "n_samples": n_samples, "n_grid": n_grid}
    t_start = separation_time(gm, idx_t, eps, **opts)
    t_end = closeness_time(gm, idx_i, idx_t, eps, **opts)
    return FollowUpBound(
        tuple(idx_i.tolist()),
        tuple(idx_t.tolist()),
        eps,
        odds,
        follow_up_error(eps, odds),
        t_start,
        t_end,
        "numerical",
    )


def follow_up_record(b: FollowUpBound) -> dict:
    """A JSON-ready dict of a :class:`FollowUpBound`.

    Args:
        b: the bound; its fields and ``nonempty`` become keys, groups as lists.
    """
    return {
        "s_init": list(b.s_init),
        "s_targ": list(b.s_targ),
        "eps": b.eps,
        "odds": b.odds,
        "error": b.error,
        "t_start": b.t_start,
        "t_end": b.t_end,
        "method": b.method,
        "nonempty": b.nonempty,
    }
