r"""Theorem-side bounds on the critical window (NumPy float64): exact forward-TV crossing ``T_lower``,
its W2/KL closed form, and the Girsanov / posterior-transport ``T_upper`` (closed form and Monte Carlo)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike

from ..._types import ArrayOrSequence
from ..._validation import check_key, check_positive_int
from ...scores.mixture import GaussianMixture
from ._groups import (
    _check_eps,
    _check_mixture,
    _check_sampler,
    _group,
    _mask,
    _nested,
    _restrict,
    _times,
    _working,
)
from ._strata import _strata, _stratified_over_times
from ._tv import submixture_tv


def _gaussians_at(gm: GaussianMixture, ts: np.ndarray):
    """Means ``(T, K, d)``, covariances and precisions ``(T, K, d, d)``, log-dets ``(T, K)`` at ``ts``."""
    proc = gm.process
    a = np.asarray(proc.alpha(jnp.asarray(ts)), float)
    s2 = np.asarray(proc.sigma2(jnp.asarray(ts)), float)
    lam = np.asarray(gm.eigvals, float)  # (K, d)
    d = gm.dim
    vecs = (
        np.broadcast_to(np.eye(d), (gm.n_components, d, d))
        if gm.eigvecs is None
        else np.asarray(gm.eigvecs, float)
    )
    c = a[:, None, None] ** 2 * lam[None] + s2[:, None, None]  # (T, K, d)
    cov = np.einsum("kij,tkj,klj->tkil", vecs, c, vecs)
    prec = np.einsum("kij,tkj,klj->tkil", vecs, 1.0 / c, vecs)
    logdet = np.log(c).sum(-1)
    means = a[:, None, None] * np.asarray(gm.means, float)[None]
    return means, cov, prec, logdet


def _pair_overlap(means, cov, prec, logdet, i, j):
    """Bhattacharyya ``log BC_ij`` and the normalised ``sqrt(N_i N_j)`` Gaussian ``N(m_ij, V_ij)``."""
    cbar = 0.5 * (cov[:, i] + cov[:, j])
    dm = means[:, i] - means[:, j]
    sol = np.linalg.solve(cbar, dm[..., None])[..., 0]
    _, ld_bar = np.linalg.slogdet(cbar)
    log_bc = -(0.125 * np.einsum("ti,ti->t", dm, sol) + 0.5 * ld_bar - 0.25 * (logdet[:, i] + logdet[:, j]))
    v = np.linalg.inv(0.5 * (prec[:, i] + prec[:, j]))
    m = np.einsum(
        "tij,tj->ti",
        v,
        0.5
        * (
            np.einsum("tij,tj->ti", prec[:, i], means[:, i])
            + np.einsum("tij,tj->ti", prec[:, j], means[:, j])
        ),
    )
    return log_bc, m, v


def _quad_moment(a_mat, b_vec, m, v):
    """``E_{N(m, V)} |A x + b|^2 = |A m + b|^2 + tr(A V A^T)`` (batched over time)."""
    mean = np.einsum("tij,tj->ti", a_mat, m) + b_vec
    return np.einsum("ti,ti->t", mean, mean) + np.einsum("tij,tjk,tik->t", a_mat, v, a_mat)


def _logsumexp(x, axis=0):
    x = np.asarray(x)
    mx = np.max(x, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return np.squeeze(mx, axis) + np.log(np.sum(np.exp(x - mx), axis=axis))


def _separation_rate(gm: GaussianMixture, idx_s: np.ndarray, ts: np.ndarray, sampler: str) -> np.ndarray:
    r"""Log of a closed-form upper bound on the integrand of the keep-side bound, at each time of ``ts``.

    With ``a_k = w_k N_k``, ``A = sum_{k in S} a_k``, ``B = sum_{l notin S} a_l`` and the product coupling
    ``rho_k rho'_l = a_k b_l / (A B)`` of the within-group responsibilities, every quantity below is an
    average of pairwise terms, and ``a_k b_l / (A + B) <= a_k b_l / (a_k + b_l) <= sqrt(a_k b_l) / 2``:

    - SDE (Girsanov): ``E_{p^S_t}|s^S_t - s_t|^2 = W_S^{-1} int A B^2/(A+B)^2 |s^S - s^{S^c}|^2
      <= 1/(2 W_S) sum_{k in S, l notin S} sqrt(w_k w_l) BC_kl E_kl|s_k - s_l|^2``;
    - ODE (posterior transport): ``E_{p_t}[P(1-P)|dL/dt|] <= g^2/4 sum_{k in S, l notin S} sqrt(w_k w_l)
      BC_kl E_kl[Q_kl]``, ``Q_kl = 3/2 (|s_k|^2 + |s_l|^2) + 1/2 |s_k - s_l|^2 + tr C_k^{-1} + tr C_l^{-1}``;

    ``BC_kl = int sqrt(N_k N_l)`` (Bhattacharyya coefficient) and ``E_kl`` the expectation under the
    normalised ``sqrt(N_k N_l)``, a Gaussian; ``s_k = -C_k^{-1}(x - alpha mu_k)``. Returns the log of the SDE
    rate (times ``g^2/2`` gives the KL rate) or of ``1/(2 W_S)`` times the ODE sum (times ``g^2/4``).
    Derivation: ``docs/critical-windows.md``.
    """
    out_s = np.setdiff1d(np.arange(gm.n_components), idx_s)
    w = np.asarray(gm.weights, float)
    means, cov, prec, logdet = _gaussians_at(gm, ts)
    tr = np.trace(prec, axis1=-2, axis2=-1)  # (T, K)
    terms = []
    for k in idx_s:
        for j in out_s:
            if w[k] <= 0 or w[j] <= 0:
                continue
            log_bc, m, v = _pair_overlap(means, cov, prec, logdet, k, j)
            pk_mk = np.einsum("tij,tj->ti", prec[:, k], means[:, k])
            pl_ml = np.einsum("tij,tj->ti", prec[:, j], means[:, j])
            diff = _quad_moment(prec[:, j] - prec[:, k], pk_mk - pl_ml, m, v)  # E|s_k - s_l|^2
            if sampler == "sde":
                mom = diff
            else:
                sk = _quad_moment(-prec[:, k], pk_mk, m, v)
                sl = _quad_moment(-prec[:, j], pl_ml, m, v)
                mom = 1.5 * (sk + sl) + 0.5 * diff + tr[:, k] + tr[:, j]
            terms.append(0.5 * math.log(w[k] * w[j]) + log_bc + np.log(np.maximum(mom, 1e-300)))
    if not terms:
        return np.full(ts.shape, -np.inf)
    return _logsumexp(np.stack(terms), axis=0) - math.log(2.0 * w[idx_s].sum())


def _cumtrapz(y, x):
    out = np.zeros_like(y)
    out[1:] = np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))
    return out


def _first_crossing_up(ts, vals, level):
    """Largest ``t`` with ``vals <= level`` before the first up-crossing (``vals`` non-decreasing)."""
    above = np.flatnonzero(vals > level)
    if above.size == 0:
        return float(ts[-1])
    j = int(above[0])
    if j == 0:
        return float(ts[0])
    v0, v1 = vals[j - 1], vals[j]
    return float(ts[j - 1] + (level - v0) / (v1 - v0) * (ts[j] - ts[j - 1]))


def girsanov_tv_bound(
    gm: GaussianMixture,
    group: Sequence[int] | ArrayLike,
    t_hats: ArrayOrSequence,
    *,
    sampler: str = "sde",
    n_grid: int = 2001,
) -> np.ndarray:
    r"""Closed-form upper bound on ``TV(p^{S, T_hat}, p^S)`` (the group ``S`` kept) at each ``T_hat``.

    SDE: ``sqrt(KL/2)``, ``KL <= 1/2 int_0^{T_hat} g(t)^2 R_t dt`` with the Bhattacharyya rate ``R_t`` of
    :func:`_separation_rate` (Girsanov + Pinsker); ODE: ``int_0^{T_hat} g(t)^2/4 R_t dt`` (posterior
    transport along the flow, ``R_t`` already divided by ``2 W_S``). Integrated by the trapezoid rule on
    ``n_grid`` times in ``[0, t_max]``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        group: the kept group ``S``: component indices or a boolean mask of shape ``(K,)``.
        t_hats: the noising times ``T_hat``, a scalar or 1-D array in ``[0, t_max]``.
        sampler: ``"sde"`` (Girsanov bound, default) or ``"ode"`` (posterior-transport bound).
        n_grid: number of integration times in ``[0, t_max]`` (at least 3).

    Returns:
        The bounds, shape ``(n,)`` for ``n`` times, capped at 1 (all zeros when ``S`` is every component).
    """
    gm = _check_mixture(gm)
    idx = _group(gm, group, "group")
    sampler = _check_sampler(sampler)
    tq = _times(gm.process, t_hats, "t_hats", allow_zero=True)
    grid = np.linspace(0.0, gm.process.t_max, check_positive_int(n_grid, "n_grid", minimum=3))
    if idx.size == gm.n_components:
        return np.zeros(tq.size)
    log_rate = _separation_rate(gm, idx, grid, sampler)
    g2 = np.asarray(gm.process.beta(jnp.asarray(grid)), float)
    if sampler == "sde":
        kl = _cumtrapz(0.5 * g2 * np.exp(log_rate), grid)
        vals = np.sqrt(0.5 * kl)
    else:
        vals = _cumtrapz(0.25 * g2 * np.exp(log_rate), grid)
    return np.minimum(np.interp(tq, grid, vals), 1.0)


def _w2_gaussians(m1, c1, m2, c2) -> float:
    """Bures: ``W_2^2 = |m1 - m2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})``."""

    def sqrtm(c):
        vals, vecs = np.linalg.eigh(0.5 * (c + c.T))
        return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T

    r1 = sqrtm(c1)
    cross = sqrtm(r1 @ c2 @ r1)
    w2 = float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * cross))
    return math.sqrt(max(w2, 0.0))


def intra_separation(gm: GaussianMixture, s_init: Any, s_targ: Any) -> float:
    r"""``Delta_intra = (1 - W_init/W_targ) sum_{i in S_init, j in S_targ \ S_init} pi_i pi'_j W_2(N_i,N_j)``.

    ``pi = w/W_init`` on ``S_init``, ``pi' = w/W_rest`` on the rest of ``S_targ`` (product coupling). Since
    ``p^{S_targ} - p^{S_init} = (1 - W_init/W_targ)(p^{rest} - p^{S_init})`` and TV is jointly convex,
    ``TV(p^{S_init}_t, p^{S_targ}_t) <= alpha_t Delta_intra / (2 sigma_t)``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        s_init: the group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the group ``S_targ``, a superset of ``s_init``.

    Returns:
        ``Delta_intra`` as a float (0 when ``S_init == S_targ``).
    """
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    rest = np.setdiff1d(idx_t, idx_i)
    if rest.size == 0:
        return 0.0
    w = np.asarray(gm.weights, float)
    mu = np.asarray(gm.means, float)
    covs = np.asarray(gm.covs, float)
    wi, wr = w[idx_i] / w[idx_i].sum(), w[rest] / w[rest].sum()
    total = sum(
        wi[a] * wr[b] * _w2_gaussians(mu[i], covs[i], mu[j], covs[j])
        for a, i in enumerate(idx_i)
        for b, j in enumerate(rest)
    )
    return float((1.0 - w[idx_i].sum() / w[idx_t].sum()) * total)


def inter_separation(gm: GaussianMixture, group: Any) -> float:
    """``min_{i in S, j notin S} |mu_i - mu_j|`` (informational; ``inf`` for the whole mixture).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        group: the group ``S``: component indices or a boolean mask of shape ``(K,)``.
    """
    idx = _group(gm, group, "group")
    rest = np.setdiff1d(np.arange(gm.n_components), idx)
    if rest.size == 0:
        return float("inf")
    mu = np.asarray(gm.means, float)
    return float(np.min(np.linalg.norm(mu[idx][:, None] - mu[rest][None], axis=-1)))


def t_lower_w2(gm: GaussianMixture, s_init: Any, s_targ: Any, eps: float) -> float:
    r"""Closed-form ``T_lower``: the time where ``alpha_t Delta_intra / (2 sigma_t) = eps``.

    ``alpha/sigma = 2 eps / Delta_intra``, i.e. ``log-SNR = 2 log(2 eps / Delta_intra)``, inverted with
    ``process.t_from_log_snr`` (OU: ``T = 1/2 log(1 + Delta_intra^2 / (4 eps^2))``). 0 when ``Delta = 0``.
    May exceed ``t_max`` (then the process range cannot certify the bound).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        s_init: the group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the group ``S_targ``, a superset of ``s_init``.
        eps: the TV tolerance (here ``eps_lower``), in ``(0, 1)``.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    delta = intra_separation(gm, s_init, s_targ)
    if delta <= 0:
        return 0.0
    return float(gm.process.t_from_log_snr(jnp.asarray(2.0 * math.log(2.0 * eps / delta))))


def t_lower(
    gm: GaussianMixture,
    s_init: Any,
    s_targ: Any,
    eps: float,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    n_grid: int = 81,
) -> float:
    r"""``T_lower = inf{t : TV(p^{S_init}_t, p^{S_targ}_t) <= eps}`` with the exact forward TV.

    TV is non-increasing along the forward process (data processing), so this is the crossing on a grid of
    ``n_grid`` times in ``[0, t_max]``, refined twice on 8 interior points and linearly interpolated (Monte
    Carlo TV uses common random numbers, so it is a deterministic, smooth function of ``t``). ``0`` when
    ``S_init == S_targ``; ``inf`` if the TV is still above ``eps`` at ``t_max``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        s_init: the group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the group ``S_targ``, a superset of ``s_init``.
        eps: the TV tolerance (here ``eps_lower``), in ``(0, 1)``.
        key: PRNG key for the Monte Carlo TV (used only when no exact method applies); ``None`` uses
            ``jax.random.key(0)``.
        n_samples: Monte Carlo sample size of :func:`submixture_tv`.
        n_grid: number of coarse grid times in ``[0, t_max]`` (at least 3).
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    if np.array_equal(idx_i, idx_t):
        return 0.0
    if key is None:
        key = jr.key(0)

    def tv(ts):
        return np.atleast_1d(
            submixture_tv(gm, idx_i, idx_t, np.asarray(ts), key=key, n_samples=n_samples).value
        )

    grid = np.linspace(0.0, gm.process.t_max, check_positive_int(n_grid, "n_grid", minimum=3))
    vals = tv(grid)
    below = np.flatnonzero(vals <= eps)
    if below.size == 0:
        return float("inf")
    j = int(below[0])
    if j == 0:
        return 0.0
    lo, hi, v_lo, v_hi = grid[j - 1], grid[j], vals[j - 1], vals[j]
    for _ in range(2):  # refine the bracket twice on 8 interior points (one batched evaluation each)
        inner = np.linspace(lo, hi, 10)[1:-1]
        vi = tv(inner)
        pts, pv = np.concatenate([[lo], inner, [hi]]), np.concatenate([[v_lo], vi, [v_hi]])
        k = int(np.flatnonzero(pv <= eps)[0])
        lo, hi, v_lo, v_hi = pts[k - 1], pts[k], pv[k - 1], pv[k]
    return float(lo + (v_lo - eps) / (v_lo - v_hi) * (hi - lo)) if v_lo != v_hi else float(hi)


def t_upper(
    gm: GaussianMixture, group: Any, eps: float, *, sampler: str = "sde", n_grid: int = 1001
) -> float:
    """``T_upper = sup{T : girsanov_tv_bound(T) <= eps}`` (``t_max`` if never exceeded; all components).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        group: the kept group ``S``: component indices or a boolean mask of shape ``(K,)``;
            the whole mixture gives ``t_max``.
        eps: the TV tolerance (here ``eps_upper``), in ``(0, 1)``.
        sampler: ``"sde"`` (default) or ``"ode"``, as in :func:`girsanov_tv_bound`.
        n_grid: number of times in ``[0, t_max]`` (at least 3), for the crossing and the integral.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    idx = _group(gm, group, "group")
    if idx.size == gm.n_components:
        return float(gm.process.t_max)
    grid = np.linspace(0.0, gm.process.t_max, check_positive_int(n_grid, "n_grid", minimum=3))
    vals = girsanov_tv_bound(gm, idx, grid, sampler=sampler, n_grid=n_grid)
    return _first_crossing_up(grid, vals, eps)


def _score_gap_block(gm, t, gm_s, x):
    """``|s^S_t(x) - s_t(x)|^2`` per row."""
    return jax.vmap(lambda xi: jnp.sum((gm_s.score(t, xi) - gm.score(t, xi)) ** 2))(x)


def _posterior_transport_block(gm, t, gm_s, gm_c, mask, x):
    r"""``P(1-P)|dL/dt| / (g^2/2)`` per row.

    ``dL/dt = g^2/2 [div s^S - div s^{S^c} + Delta.((1-P) s^S + P s^{S^c})]``.
    """

    def one(xi):
        pr = gm.group_posterior(t, xi, mask)
        ss, sc = gm_s.score(t, xi), gm_c.score(t, xi)
        rate = gm_s.laplacian(t, xi) - gm_c.laplacian(t, xi) + jnp.dot(ss - sc, (1 - pr) * ss + pr * sc)
        return pr * (1 - pr) * jnp.abs(rate)

    return jax.vmap(one)(x)


def t_upper_numerical(
    gm: GaussianMixture,
    group: Any,
    eps: float,
    *,
    sampler: str = "sde",
    key: jax.Array,
    n_samples: int = 4000,
    n_grid: int = 121,
) -> float:
    r"""``T_upper`` from the *same* Girsanov / posterior-transport integrals evaluated by Monte Carlo.

    SDE: ``KL(T) = 1/2 int_0^T g^2 E_{p^S_t}|s^S_t - s_t|^2 dt`` (exact scores of the mixture and of the
    sub-mixture), ``TV <= sqrt(KL/2)``; ODE: ``TV <= 1/(2 W_S) int_0^T E_{p_t}[P(1-P)|dL/dt|] dt``.
    Tighter than the closed form (no Bhattacharyya step) but subject to Monte Carlo error.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        group: the kept group ``S``: component indices or a boolean mask of shape ``(K,)``;
            the whole mixture gives ``t_max``.
        eps: the TV tolerance (here ``eps_upper``), in ``(0, 1)``.
        sampler: ``"sde"`` (default) or ``"ode"``.
        key: PRNG key for the stratified samples (shared by all times).
        n_samples: Monte Carlo sample size.
        n_grid: number of times in ``[0, t_max]`` (at least 3).
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    sampler = _check_sampler(sampler)
    idx = _group(gm, group, "group")
    if idx.size == gm.n_components:
        return float(gm.process.t_max)
    key = check_key(key)
    work, _ = _working(gm, True)
    rest = np.setdiff1d(np.arange(gm.n_components), idx)
    gm_s = _restrict(work, idx)
    w = np.asarray(work.weights, float)
    grid = np.linspace(0.0, work.process.t_max, check_positive_int(n_grid, "n_grid", minimum=3))
    if sampler == "sde":
        probs = np.zeros_like(w)
        probs[idx] = w[idx] / w[idx].sum()
        st = _strata(work, key, n_samples, probs)
        rates = _stratified_over_times(_score_gap_block, work, st, grid, (gm_s,))[0]
        g2 = np.asarray(work.process.beta(jnp.asarray(grid)), float)
        vals = np.sqrt(0.5 * _cumtrapz(0.5 * g2 * rates, grid))
    else:
        gm_c = _restrict(work, rest)
        st = _strata(work, key, n_samples, w)
        mask = _mask(work, idx)
        rates = _stratified_over_times(_posterior_transport_block, work, st, grid, (gm_s, gm_c, mask))[0]
        g2 = np.asarray(work.process.beta(jnp.asarray(grid)), float)
        vals = _cumtrapz(0.5 * g2 * rates, grid) / (2.0 * w[idx].sum())
    return _first_crossing_up(grid, vals, eps)


class TheoremBounds(eqx.Module):
    r"""Theorem-side window ``[t_lower, t_upper]`` for ``S_init ⊆ S_targ`` at tolerance ``eps``.

    ``TV(p^{S_init,T}, p^{S_targ}) <= TV(p^{S_init}_T, p^{S_targ}_T) + TV(p^{S_targ,T}, p^{S_targ})``
    (data processing + triangle inequality); the budget is split ``eps = eps_lower + eps_upper``
    (``eps_lower = eps`` when ``S_targ`` is the whole mixture, since then the second term vanishes;
    ``eps_upper = eps`` when ``S_init = S_targ``, since then the first vanishes; halves otherwise).

    - ``t_lower``: exact forward-TV crossing at ``eps_lower``; ``t_lower_w2``: its closed-form W2/KL upper
      estimate (always ``>= t_lower``);
    - ``t_upper``: closed-form score-difference bound (SDE: Girsanov-Pinsker; ODE: posterior transport) at
      ``eps_upper``; ``t_upper_numerical``: the same integral by Monte Carlo (NaN unless requested);
    - ``intra_separation`` (``Delta_intra`` of :func:`intra_separation`) and ``inter_separation``
      (``min |mu_i - mu_j|`` between ``S_targ`` and its complement).

    For every ``T_hat`` in ``[t_lower, t_upper]`` (``t_lower_w2`` may replace ``t_lower``) the theorem
    guarantees ``TV(p^{S_init,T_hat}, p^{S_targ}) <= eps``.

    Attributes:
        s_init: sorted component indices of ``S_init``.
        s_targ: sorted component indices of ``S_targ``.
        eps: the total TV tolerance.
        sampler: ``"sde"`` or ``"ode"``.
        eps_lower: the share of ``eps`` given to ``t_lower``.
        eps_upper: the share of ``eps`` given to ``t_upper``.
        t_lower: exact forward-TV crossing time at ``eps_lower`` (0 when ``S_init == S_targ``).
        t_lower_w2: closed-form upper estimate of ``t_lower``.
        t_upper: closed-form keep bound at ``eps_upper`` (``t_max`` when ``S_targ`` is the whole mixture).
        t_upper_numerical: Monte Carlo ``T_upper`` (NaN unless ``numerical=True``).
        intra_separation: ``Delta_intra`` of :func:`intra_separation`.
        inter_separation: ``min |mu_i - mu_j|`` between ``S_targ`` and its complement (``inf`` if empty).
    """

    s_init: tuple[int, ...]
    s_targ: tuple[int, ...]
    eps: float
    sampler: str
    eps_lower: float
    eps_upper: float
    t_lower: float
    t_lower_w2: float
    t_upper: float
    t_upper_numerical: float
    intra_separation: float
    inter_separation: float

    @property
    def nonempty(self) -> bool:
        return self.t_lower <= self.t_upper


def theorem_bounds(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    eps: float,
    *,
    sampler: str = "sde",
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    numerical: bool = False,
) -> TheoremBounds:
    """Compute :class:`TheoremBounds` (``numerical=True`` adds :func:`t_upper_numerical`, needs ``key``).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        s_init: the group ``S_init``: component indices or a boolean mask of shape ``(K,)``.
        s_targ: the group ``S_targ``, a superset of ``s_init``.
        eps: the total TV tolerance, in ``(0, 1)``; split between the two ends as described above.
        sampler: ``"sde"`` (default) or ``"ode"``, for the ``t_upper`` bounds.
        key: PRNG key for the Monte Carlo TV of :func:`t_lower` (``None`` uses ``jax.random.key(0)``) and
            for :func:`t_upper_numerical` (required then).
        n_samples: Monte Carlo sample size of :func:`t_lower`.
        numerical: also compute :func:`t_upper_numerical`.
    """
    gm = _check_mixture(gm)
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    eps = _check_eps(eps)
    sampler = _check_sampler(sampler)
    full = idx_t.size == gm.n_components
    same = np.array_equal(idx_i, idx_t)
    if same:
        e_lo, e_up = 0.0, eps
    elif full:
        e_lo, e_up = eps, 0.0
    else:
        e_lo = e_up = 0.5 * eps
    tl = 0.0 if same else t_lower(gm, idx_i, idx_t, e_lo, key=key, n_samples=n_samples)
    tl_w2 = 0.0 if same else t_lower_w2(gm, idx_i, idx_t, e_lo)
    tu = float(gm.process.t_max) if full else t_upper(gm, idx_t, e_up, sampler=sampler)
    tu_num = float("nan")
    if numerical:
        tu_num = (
            float(gm.process.t_max)
            if full
            else t_upper_numerical(gm, idx_t, e_up, sampler=sampler, key=check_key(key))
        )
    return TheoremBounds(
        tuple(idx_i.tolist()),
        tuple(idx_t.tolist()),
        eps,
        sampler,
        e_lo,
        e_up,
        tl,
        tl_w2,
        tu,
        tu_num,
        intra_separation(gm, idx_i, idx_t),
        inter_separation(gm, idx_t),
    )
