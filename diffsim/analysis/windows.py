r"""Critical windows of Gaussian mixtures: exact windows, theorem-side bounds, mixture trees and cloning.

Setting (Li & Chen, "Critical windows: non-asymptotic theory for feature emergence in diffusion models",
ICML 2024). Data ``p = sum_k w_k N(mu_k, Sigma_k)``; for a group ``S`` of components ``W_S = sum_{k in S}
w_k`` and the sub-mixture ``p^S = W_S^{-1} sum_{k in S} w_k N(mu_k, Sigma_k)``, with forward marginal
``p^S_t`` under the mixture's process (``x_t = alpha_t x_0 + sigma_t z``; OU: ``alpha_t = e^{-t}``).

**Noising-denoising.** Draw ``X_0 ~ p^{S_init}``, noise it to ``T_hat``, run the reverse process (SDE or
probability-flow ODE) with the score of the *full* mixture back to time 0. The output law is
``p^{S_init, T_hat}``. A critical window for ``S_init ⊆ S_targ`` is a range of ``T_hat`` where
``TV(p^{S_init, T_hat}, p^{S_targ}) <= eps``.

**Exact reweighting identity** (derived in ``docs/critical-windows.md``). The exact reverse SDE reproduces
the forward path measure, so starting it from ``p^{S}_{T_hat}`` instead of ``p_{T_hat}`` reweights every
path by ``p^S_{T_hat}(X_{T_hat}) / p_{T_hat}(X_{T_hat}) = P(S | X_{T_hat}) / W_S``. Hence, at any output time
``t_out`` (0 by default),

    SDE:  q(x) = p_{t_out}(x) g(x) / W_init,    g(x) = E[ P_{T_hat}(S_init | X_{T_hat}) | X_{t_out} = x ],
    ODE:  q(x) = p_{t_out}(x) P_{T_hat}(S_init | Phi_{t_out -> T_hat}(x)) / W_init,

and since ``p^{S_targ}_{t_out} = p_{t_out} P_{t_out}(S_targ | .) / W_targ``,

    TV(q, p^{S_targ}_{t_out}) = 1/2 E_{x ~ p_{t_out}} | g(x)/W_init - P_{t_out}(S_targ | x)/W_targ |.

Route (a) (:func:`window_curve`) evaluates this with exact samples of ``p`` (stratified over components),
the inner expectation of ``g`` by Gauss-Hermite quadrature (dimension <= 2) or antithetic Monte Carlo with a
split-half bias correction, and the flow map with :func:`diffsim.flow`. Route (b)
(:func:`simulated_window_curve`) simulates the protocol with :func:`diffsim.noise_denoise` and measures
``q(A) - p^{S_targ}(A)`` for the witness set ``A = {g/W_init > P(S_targ|.)/W_targ}`` (a lower bound on the
TV of the *simulated* law for any ``A``, equal to the TV when ``A`` is the optimal set).

**Dimension reduction.** When every component has the same spherical covariance ``s^2 I``, everything in the
protocol (forward noise, posteriors, reverse SDE/ODE) factorises into the linear span of the means and an
independent, component-independent ``N(0, s^2 I)`` part; TVs and retentions are exactly those of the
mixture projected onto the span (:func:`spherical_reduction`). Quadrature then applies in the reduced space.

**Theorem-side bounds** (:func:`theorem_bounds`; constants derived in ``docs/critical-windows.md``):

- ``T_lower`` (fine feature forgotten): data processing gives ``TV(p^{S_init,T}, p^{S_targ,T}) <=
  TV(p^{S_init}_T, p^{S_targ}_T)`` for any Markov reverse map (SDE or ODE); ``T_lower`` is the first time the
  exact forward TV drops to ``eps_lower``. Closed-form upper estimate: ``TV(p^{S_init}_t, p^{S_targ}_t) <=
  alpha_t Delta_intra / (2 sigma_t)`` (KL of the Gaussian noise kernel along a coupling + Pinsker), so
  ``T_lower^{W2} = t(log-SNR = 2 log(2 eps_lower / Delta_intra))``; OU: ``1/2 log(1 + Delta_intra^2 /
  (4 eps_lower^2))``.
- ``T_upper`` (coarse feature kept), SDE: Girsanov + Pinsker, ``TV(p^{S,T}, p^S) <= sqrt(KL/2)``, ``KL = 1/2
  int_0^T g(t)^2 E_{p^S_t} |s^S_t - s_t|^2 dt``, bounded in closed form through Bhattacharyya overlaps of
  the noised components in ``S`` and outside. ODE: the posterior of ``S`` is transported along the flow;
  ``TV <= 1/(2 W_S) int_0^T E_{p_t}[P(1-P) |dL/dt|] dt``, bounded the same way.

**Mixture trees** (:func:`mixture_tree`, :func:`tree_windows`) apply the windows per node; **cloning**
(:func:`cloning_overlap`, :func:`cloning_theory`) follows Biroli, Bonnaire, de Bortoli & Mézard (2024).

Time is the process's forward time (OU time for ``VP.ou()``). Everything runs in the mixture's dtype
(float32 by default); the closed-form bounds run in NumPy float64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_key, check_positive_int, check_probability
from ..processes import AbstractProcess, alpha_bar_to_time
from ..sampling import clone as _clone, flow as _flow, noise_denoise as _noise_denoise, simulate as _simulate
from ..scores.mixture import GaussianMixture


__all__ = [
    "CriticalWindow",
    "NodeWindows",
    "TVEstimate",
    "TheoremBounds",
    "TreeNode",
    "TreeWindows",
    "Window",
    "WindowCurve",
    "cloning_overlap",
    "cloning_theory",
    "critical_window",
    "gaussian_tv_equal_cov",
    "girsanov_tv_bound",
    "inter_separation",
    "intra_separation",
    "mixture_tree",
    "read_window",
    "simulated_window_curve",
    "simulated_window_curves",
    "speciation_time",
    "spherical_reduction",
    "submixture_tv",
    "t_lower",
    "t_lower_w2",
    "t_upper",
    "t_upper_numerical",
    "theorem_bounds",
    "tree_windows",
    "two_gaussian_cloning",
    "window_curve",
]

_MAX_GH_DIM = 2
_GH_NODES = {1: 64, 2: 20}


# =====================================================================================================
# validation
# =====================================================================================================
def _check_mixture(gm: Any, name: str = "gm") -> GaussianMixture:
    if not isinstance(gm, GaussianMixture):
        raise TypeError(f"`{name}` must be a diffsim GaussianMixture, got {type(gm).__name__}.")
    return gm


def _group(gm: GaussianMixture, group: Any, name: str) -> np.ndarray:
    """Sorted unique component indices of ``group`` (indices or a boolean mask), validated."""
    if group is None:
        raise ValueError(f"`{name}` must list at least one component, got None.")
    arr = np.asarray(group)
    k = gm.n_components
    if arr.dtype == bool:
        if arr.shape != (k,):
            raise ValueError(f"Boolean `{name}` must have shape ({k},), got {arr.shape}.")
        arr = np.flatnonzero(arr)
    else:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            raise ValueError(f"`{name}` must be a flat list of component indices, got shape {arr.shape}.")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"`{name}` must hold integer component indices, got dtype {arr.dtype}.")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty: a group must contain at least one component.")
    if np.any(arr < 0) or np.any(arr >= k):
        raise ValueError(f"`{name}` indices must lie in [0, {k}), got {arr.tolist()}.")
    if len(set(arr.tolist())) != arr.size:
        raise ValueError(f"`{name}` contains repeated indices: {arr.tolist()}.")
    w = np.asarray(gm.weights, float)[arr]
    if w.sum() <= 0:
        raise ValueError(f"`{name}` has zero total weight.")
    return np.sort(arr.astype(int))


def _nested(gm: GaussianMixture, s_init: Any, s_targ: Any) -> tuple[np.ndarray, np.ndarray]:
    i = _group(gm, s_init, "s_init")
    t = _group(gm, s_targ, "s_targ")
    if not set(i.tolist()) <= set(t.tolist()):
        raise ValueError(f"`s_init` {i.tolist()} must be a subset of `s_targ` {t.tolist()}.")
    return i, t


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"`eps` must be a number in (0, 1), got {type(eps).__name__}.")
    return check_probability(float(eps), "eps")


def _times(
    process: AbstractProcess, ts: Any, name: str, *, allow_zero: bool, above: float | None = None
) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ts, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a scalar or a non-empty 1-D array of times.")
    process.check_time(arr, name, allow_zero=allow_zero)
    if above is not None and np.any(arr <= above):
        raise ValueError(f"`{name}` must exceed the output time {above:g}; got min {arr.min():g}.")
    return arr


def _mask(gm: GaussianMixture, idx: np.ndarray) -> Array:
    return jnp.zeros(gm.n_components, bool).at[jnp.asarray(idx)].set(True)


def _weight(gm: GaussianMixture, idx: np.ndarray) -> float:
    return float(np.asarray(gm.weights, float)[idx].sum())


def _restrict(gm: GaussianMixture, idx: np.ndarray) -> GaussianMixture:
    """``gm.restrict(idx)`` that also works for full covariances in float32.

    Work-around: ``GaussianMixture.restrict`` rebuilds ``U diag(lambda) U^T`` in the mixture's dtype, which in
    float32 is not symmetric to the constructor's tolerance; here the covariances are symmetrised in float64.
    """
    w = np.asarray(gm.weights, float)[idx]
    if gm.cov_type == "spherical":
        covs = np.asarray(gm.eigvals, float)[idx, 0]
    elif gm.cov_type == "diag":
        covs = np.asarray(gm.eigvals, float)[idx]
    else:
        vals = np.asarray(gm.eigvals, float)[idx]
        vecs = np.asarray(gm.eigvecs, float)[idx]
        covs = np.einsum("kij,kj,klj->kil", vecs, vals, vecs)
        covs = 0.5 * (covs + np.swapaxes(covs, 1, 2))
    return GaussianMixture(
        w / w.sum(), gm.means[jnp.asarray(idx)], covs, process=gm.process, labels=gm.labels[jnp.asarray(idx)]
    )


# =====================================================================================================
# exact dimension reduction for shared spherical covariances
# =====================================================================================================
def spherical_reduction(
    gm: GaussianMixture, *, tol: float = 1e-9
) -> tuple[GaussianMixture, np.ndarray] | None:
    r"""Project a mixture whose components share one covariance ``s^2 I`` onto the span of its means.

    Returns ``(reduced, basis)`` with ``basis`` of shape ``(d, m)`` (orthonormal columns spanning the means,
    ``m >= 1``) and ``reduced = GaussianMixture(w, means @ basis, s^2)`` on the same process; ``None`` if the
    covariances are not one shared ``s^2 I`` or the means already span ``R^d``.

    Exactness: under the isotropic forward process the orthogonal part of ``x_t`` is ``N(0, (alpha_t^2 s^2
    + sigma_t^2) I)`` for every component, independent of the component and of the projected part; the
    posterior over components and the exact reverse SDE/PF-ODE drift decouple in the same way. Every law of
    the noising-denoising protocol is therefore (reduced law) x (same orthogonal law), and TVs and
    retentions are unchanged.
    """
    vals = np.asarray(gm.eigvals, float)
    if not np.allclose(vals, vals.flat[0], rtol=1e-7, atol=0.0):
        return None
    means = np.asarray(gm.means, float)
    _, sv, vt = np.linalg.svd(means, full_matrices=False)
    rank = int(np.sum(sv > tol * max(sv.max(initial=0.0), 1.0)))
    rank = max(rank, 1)
    if rank >= gm.dim:
        return None
    basis = vt[:rank].T  # (d, m)
    reduced = GaussianMixture(
        gm.weights,
        jnp.asarray(means @ basis, gm.means.dtype),
        float(vals.flat[0]),
        process=gm.process,
        labels=gm.labels,
    )
    return reduced, basis


def _working(gm: GaussianMixture, reduce: bool) -> tuple[GaussianMixture, np.ndarray | None]:
    if reduce:
        red = spherical_reduction(gm)
        if red is not None:
            return red
    return gm, None


def _project(x: Array, basis: np.ndarray | None) -> Array:
    return x if basis is None else x @ jnp.asarray(basis, x.dtype)


# =====================================================================================================
# stratified samples and estimates
# =====================================================================================================
_ROW_BLOCK = 4096


def _rowwise(fn, args: tuple, rows: tuple, block: int = _ROW_BLOCK):
    """``fn(*args, *row_blocks)`` over fixed-size row blocks of ``rows`` (the last one padded), as NumPy.

    A jitted ``fn`` then compiles once per block shape (two shapes: ``block`` and ``block/4``), whatever the
    number of rows: sample sizes differ between strata, particles and references without recompiling.
    """
    n = rows[0].shape[0]
    size = block if n > block // 4 else max(1, block // 4)  # two block shapes at most
    outs = []
    for s in range(0, n, size):
        blocks = [r[s : s + size] for r in rows]
        m = blocks[0].shape[0]
        if m < size:
            blocks = [jnp.concatenate([b, jnp.repeat(b[-1:], size - m, axis=0)]) for b in blocks]
        outs.append(jax.tree.map(lambda o, m=m: np.asarray(o)[:m], fn(*args, *blocks)))
    return jax.tree.map(lambda *o: np.concatenate(o), *outs)


@eqx.filter_jit
def _component_points_block(gm: GaussianMixture, t, comp, z):
    """``x = alpha_t mu_k + U_k sqrt(alpha_t^2 lambda_k + sigma_t^2) z`` for component ``comp`` per row."""
    a = gm.process.alpha(t)
    s2 = gm.process.sigma2(t)
    y = jnp.sqrt(a**2 * gm.eigvals[comp] + s2) * z
    if gm.eigvecs is not None:
        y = jnp.einsum("nij,nj->ni", gm.eigvecs[comp], y)
    return a * gm.means[comp] + y


@dataclasses.dataclass(frozen=True)
class _Strata:
    comp: np.ndarray  # (N,) component of each sample
    probs: np.ndarray  # (K,) stratum probabilities (the mixing weights of the law sampled)
    z: Array  # (N, d) standard normals (common random numbers across times)


def _strata(gm: GaussianMixture, key, n: int, probs: np.ndarray) -> _Strata:
    """Exactly ``n`` standard normals (>= 2 per non-empty stratum), allocated in proportion to ``probs``.

    The normals come from NumPy's generator seeded by the key's data: deterministic in ``key``, and no
    compilation per sample size.
    """
    probs = np.asarray(probs, float)
    counts = np.where(probs > 0, np.maximum(2, np.round(n * probs)), 0).astype(int)
    counts[np.argmax(counts)] += max(n, 2 * int(np.sum(probs > 0))) - counts.sum()
    comp = np.repeat(np.arange(gm.n_components), counts)
    rng = np.random.default_rng(np.asarray(jr.key_data(key), np.uint32).ravel().tolist())
    z = jnp.asarray(rng.standard_normal((comp.size, gm.dim)), gm.means.dtype)
    return _Strata(comp, probs, z)


def _points(gm: GaussianMixture, st: _Strata, t) -> Array:
    out = _rowwise(
        _component_points_block, (gm, jnp.asarray(t, gm.means.dtype)), (jnp.asarray(st.comp), st.z)
    )
    return jnp.asarray(out, gm.means.dtype)


def _strat_estimate(h: Any, st: _Strata) -> tuple[float, float]:
    """Stratified mean ``sum_k P_k mean_k(h)`` and its standard error ``sqrt(sum_k P_k^2 var_k / n_k)``."""
    h = np.asarray(h, float)
    est, var = 0.0, 0.0
    for k in np.flatnonzero(st.probs > 0):
        hk = h[st.comp == k]
        est += st.probs[k] * hk.mean()
        var += st.probs[k] ** 2 * hk.var(ddof=1) / hk.size
    return float(est), float(math.sqrt(max(var, 0.0)))


_TIME_BLOCK = 8


@eqx.filter_jit
def _over_times_block(fn, gm, ts, args, comp, z):
    """``fn(gm, t, *args, x_t)`` at the points ``x_t`` of every ``t`` in ``ts``; shape ``(n, B)``."""
    return jax.vmap(lambda t: fn(gm, t, *args, _component_points_block(gm, t, comp, z)), out_axes=1)(ts)


def _stratified_over_times(fn, gm: GaussianMixture, st: _Strata, ts: np.ndarray, args: tuple = ()):
    """Stratified estimates (and standard errors) of ``E[fn(gm, t, *args, X_t)]`` for all ``ts`` at once.

    The points are the strata's common random numbers pushed to each time; times are processed in blocks of
    ``_TIME_BLOCK`` (padded), rows in fixed-size blocks, so the work compiles once per mixture.
    """
    ts = np.asarray(ts, float)
    n_t = ts.size
    pad = (-n_t) % _TIME_BLOCK
    tp = np.concatenate([ts, np.repeat(ts[-1:], pad)]) if pad else ts
    comp, z = jnp.asarray(st.comp), st.z
    block = max(1, _ROW_BLOCK // _TIME_BLOCK)
    est, err = np.zeros(n_t), np.zeros(n_t)
    for s in range(0, tp.size, _TIME_BLOCK):
        tb = jnp.asarray(tp[s : s + _TIME_BLOCK], gm.means.dtype)
        vals = _rowwise(_over_times_block, (fn, gm, tb, args), (comp, z), block)  # (N, B)
        for j in range(min(_TIME_BLOCK, n_t - s)):
            est[s + j], err[s + j] = _strat_estimate(vals[:, j], st)
    return est, err


def _gh_nodes(dim: int, n: int, dtype) -> tuple[Array, Array]:
    """Tensor Gauss-Hermite nodes/weights for ``E f(Z)``, ``Z ~ N(0, I_dim)`` (probabilists' Hermite)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([z] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=1), axis=1)
    return jnp.asarray(nodes, dtype), jnp.asarray(weights, dtype)


# =====================================================================================================
# exact TV between forward-noised sub-mixtures
# =====================================================================================================
def gaussian_tv_equal_cov(mean_a: ArrayLike, mean_b: ArrayLike, cov: ArrayLike) -> Float[Array, ""]:
    r"""``TV(N(m_a, C), N(m_b, C)) = 2 Phi(delta / 2) - 1``, ``delta^2 = (m_a - m_b)^T C^{-1} (m_a - m_b)``.

    Closed form: the likelihood ratio is monotone in the projection on ``C^{-1}(m_a - m_b)``, which is
    ``N(±delta/2, 1)`` after standardisation. ``cov``: a scalar, a diagonal ``(d,)`` or a matrix ``(d, d)``.
    """
    ma, mb = jnp.atleast_1d(jnp.asarray(mean_a)), jnp.atleast_1d(jnp.asarray(mean_b))
    diff = ma - mb
    c = jnp.asarray(cov, diff.dtype)
    if c.ndim == 0 or c.ndim == 1:
        delta2 = jnp.sum(diff**2 / c)
    else:
        delta2 = diff @ jnp.linalg.solve(c, diff)
    return 2.0 * jsp.ndtr(0.5 * jnp.sqrt(delta2)) - 1.0


@dataclasses.dataclass(frozen=True)
class TVEstimate:
    """A total variation with its standard error (0 for closed forms and quadrature) and the method used."""

    value: np.ndarray
    stderr: np.ndarray
    method: str


def _tv_closed_pair(gm, ia, ib, ts):
    i, j = int(ia[0]), int(ib[0])
    covs = np.asarray(gm.covs, float)
    if not np.allclose(covs[i], covs[j], rtol=1e-7, atol=1e-12):
        return None
    out = []
    for t in ts:
        a = float(gm.process.alpha(t))
        s2 = float(gm.process.sigma2(t))
        c = a**2 * covs[i] + s2 * np.eye(gm.dim)
        out.append(
            float(
                gaussian_tv_equal_cov(
                    a * np.asarray(gm.means[i], float), a * np.asarray(gm.means[j], float), c
                )
            )
        )
    return np.asarray(out)


def _log_sub_density_1d(x, means, variances, logw):
    lp = (
        -0.5 * (x[:, None] - means[None, :]) ** 2 / variances[None, :]
        - 0.5 * np.log(2 * np.pi * variances)[None, :]
    )
    lp = lp + logw[None, :]
    mx = lp.max(axis=1, keepdims=True)
    return (mx + np.log(np.exp(lp - mx).sum(axis=1, keepdims=True)))[:, 0]


def _tv_quadrature_1d(gm, ia, ib, ts):
    """1-D: ``1/2 int |p_a - p_b|`` on a grid resolving the narrowest component (trapezoid, float64)."""
    w = np.asarray(gm.weights, float)
    mu = np.asarray(gm.means, float)[:, 0]
    lam = np.asarray(gm.eigvals, float)[:, 0]
    out = []
    for t in ts:
        a = float(gm.process.alpha(t))
        s2 = float(gm.process.sigma2(t))
        var = a**2 * lam + s2
        idx = np.union1d(ia, ib)
        sd = np.sqrt(var[idx])
        lo, hi = (a * mu[idx] - 12 * sd).min(), (a * mu[idx] + 12 * sd).max()
        h = 0.02 * sd.min()
        n = int(np.clip((hi - lo) / h, 4001, 400_001))
        x = np.linspace(lo, hi, n)
        la = _log_sub_density_1d(x, a * mu[ia], var[ia], np.log(w[ia] / w[ia].sum()))
        lb = _log_sub_density_1d(x, a * mu[ib], var[ib], np.log(w[ib] / w[ib].sum()))
        out.append(0.5 * np.trapezoid(np.abs(np.exp(la) - np.exp(lb)), x))
    return np.asarray(out)


def _tv_mc_block(gm, t, mask_a, mask_b, wa, wb, x):
    """``|tanh((log p_a - log p_b)/2)| = |p_a - p_b| / (p_a + p_b)`` at the rows of ``x``."""

    def one(xi):
        lp = gm.component_log_prob(t, xi)
        la = jax.nn.logsumexp(jnp.where(mask_a, lp, -jnp.inf), b=jnp.where(mask_a, wa, 1.0))
        lb = jax.nn.logsumexp(jnp.where(mask_b, lp, -jnp.inf), b=jnp.where(mask_b, wb, 1.0))
        return jnp.abs(jnp.tanh(0.5 * (la - lb)))

    return jax.vmap(one)(x)


def _tv_monte_carlo(gm, ia, ib, ts, key, n):
    """Importance sampling from ``(p_a + p_b)/2``: ``TV = 1/2 E_a[h] + 1/2 E_b[h]``, ``h = |tanh(LLR/2)|``.

    Samples are stratified over the components of each sub-mixture and reused at every ``t`` (common random
    numbers), so the estimate is a smooth function of ``t``.
    """
    w = np.asarray(gm.weights, float)
    pa = np.zeros_like(w)
    pa[ia] = w[ia] / w[ia].sum()
    pb = np.zeros_like(w)
    pb[ib] = w[ib] / w[ib].sum()
    ka, kb = jr.split(key)
    sa, sb = _strata(gm, ka, n // 2, pa), _strata(gm, kb, n // 2, pb)
    mask_a, mask_b = _mask(gm, ia), _mask(gm, ib)
    wa, wb = jnp.asarray(pa, gm.means.dtype), jnp.asarray(pb, gm.means.dtype)
    args = (mask_a, mask_b, wa, wb)
    ea, sea = _stratified_over_times(_tv_mc_block, gm, sa, ts, args)
    eb, seb = _stratified_over_times(_tv_mc_block, gm, sb, ts, args)
    return 0.5 * (ea + eb), 0.5 * np.sqrt(sea**2 + seb**2)


def submixture_tv(
    gm: GaussianMixture,
    group_a: Sequence[int] | ArrayLike,
    group_b: Sequence[int] | ArrayLike,
    t: ArrayLike,
    *,
    method: str = "auto",
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    reduce: bool = True,
) -> TVEstimate:
    r"""Exact ``TV(p^{A}_t, p^{B}_t)`` between two forward-noised sub-mixtures, at one or several times ``t``.

    ``method``:

    - ``"closed_form"``: both groups are single components with equal covariance:
      ``2 Phi(alpha_t |C_t^{-1/2}(mu_a - mu_b)| / 2) - 1`` with ``C_t = alpha_t^2 Sigma + sigma_t^2 I``;
    - ``"quadrature"``: one-dimensional problems (``d = 1``, or shared spherical covariances with collinear
      means after :func:`spherical_reduction`): trapezoid on a grid resolving the narrowest component;
    - ``"monte_carlo"``: importance sampling from ``(p_a + p_b)/2`` with exact densities,
      ``TV = E[|tanh(log(p_a/p_b)/2)|]``, stratified over components, with a standard error (needs ``key``);
    - ``"auto"``: the first of these that applies.

    Returns a :class:`TVEstimate` (arrays shaped like ``t``; ``stderr`` is 0 for exact methods).
    """
    gm = _check_mixture(gm)
    ia, ib = _group(gm, group_a, "group_a"), _group(gm, group_b, "group_b")
    ts = _times(gm.process, t, "t", allow_zero=True)
    scalar = np.ndim(t) == 0
    if method not in ("auto", "closed_form", "quadrature", "monte_carlo"):
        raise ValueError(
            f"`method` must be 'auto', 'closed_form', 'quadrature' or 'monte_carlo', got {method!r}."
        )
    n_samples = check_positive_int(n_samples, "n_samples", minimum=8)

    def pack(v, e, name):
        v, e = np.asarray(v, float), np.asarray(e, float)
        return TVEstimate(v[0] if scalar else v, e[0] if scalar else e, name)

    if np.array_equal(ia, ib):
        return pack(np.zeros(ts.size), np.zeros(ts.size), "closed_form")
    if method in ("auto", "closed_form") and ia.size == 1 and ib.size == 1:
        v = _tv_closed_pair(gm, ia, ib, ts)
        if v is not None:
            return pack(v, np.zeros_like(v), "closed_form")
        if method == "closed_form":
            raise ValueError("`method='closed_form'` needs two single components with equal covariances.")
    elif method == "closed_form":
        raise ValueError("`method='closed_form'` needs two single components with equal covariances.")
    work, _ = _working(gm, reduce)
    if method in ("auto", "quadrature") and work.dim == 1:
        v = _tv_quadrature_1d(work, ia, ib, ts)
        return pack(v, np.zeros_like(v), "quadrature")
    if method == "quadrature":
        raise ValueError("`method='quadrature'` needs a one-dimensional (or reducible to 1-D) problem.")
    key = check_key(key, "key")
    v, e = _tv_monte_carlo(work, ia, ib, ts, key, n_samples)
    return pack(v, e, "monte_carlo")


# =====================================================================================================
# the exact window: route (a), reweighting identity
# =====================================================================================================
@dataclasses.dataclass(frozen=True)
class WindowCurve:
    r"""``TV(p^{S_init, T_hat}, p^{S_targ})`` and retentions as functions of ``T_hat``.

    - ``tv``, ``tv_stderr``: the total variation between the output and ``p^{S_targ}`` (at ``t_out``);
    - ``retention_init`` / ``retention_targ``: ``E_out[P_{t_out}(S | Y)]`` for ``S = S_init, S_targ`` (the
      probability that the output belongs to the group, with soft labels), with standard errors;
    - ``mass``: ``E_p[g]/W_init`` (must be 1: a check of the identity's normalisation; route (a) only);
    - ``route``: ``"identity"`` (route (a)) or ``"simulation"`` (route (b)); ``sampler``: ``"sde"``/``"ode"``.
    """

    t_hats: np.ndarray
    tv: np.ndarray
    tv_stderr: np.ndarray
    retention_init: np.ndarray
    retention_init_stderr: np.ndarray
    retention_targ: np.ndarray
    retention_targ_stderr: np.ndarray
    mass: np.ndarray
    s_init: tuple[int, ...]
    s_targ: tuple[int, ...]
    sampler: str
    route: str
    t_out: float


@eqx.filter_jit
def _posteriors_block(gm, t, mask, x):
    return jax.vmap(lambda xi: gm.group_posterior(t, xi, mask))(x)


def _posteriors(gm, t, x, mask) -> np.ndarray:
    """``P_t(S | x)`` for every row of ``x`` (NumPy)."""
    return _rowwise(_posteriors_block, (gm, jnp.asarray(t, gm.means.dtype), mask), (x,))


def _rotate_nodes(gm, z):
    """``U_k^T z`` for every component: ``(..., d) -> (..., K, d)``."""
    if gm.eigvecs is None:
        return jnp.broadcast_to(z[..., None, :], z.shape[:-1] + (gm.n_components, gm.dim))
    return jnp.einsum("kij,...i->...kj", gm.eigvecs, z)


def _noised_group_posterior(gm, mask, t_hat, a, b, x, z):
    r"""``P_{t_hat}(S | a x + b z)`` for points ``x`` (n, d) and nodes ``z`` (M, d) or per point (n, M, d).

    Uses that ``log N_k(a x + b z)`` is quadratic in ``z``: with ``u_k = U_k^T(a x - alpha mu_k)``,
    ``v_k = b U_k^T z`` and ``c_k = alpha^2 lambda_k + sigma^2`` (all at ``t_hat``),
    ``sum_j (u + v)_j^2 / c_j = |u|_c^2 + 2 <u, v>_c + |v|_c^2``: batched matrix products instead of a
    rotation per (point, node, component).
    """
    p = gm.process
    ah = p.alpha(t_hat)
    c = ah**2 * gm.eigvals + p.sigma2(t_hat)  # (K, d)
    base = jnp.log(gm.weights) - 0.5 * jnp.sum(jnp.log(c), axis=-1)  # (K,)
    mu_rot = gm.means if gm.eigvecs is None else jnp.einsum("kij,ki->kj", gm.eigvecs, gm.means)  # U_k^T mu_k
    u = _rotate_nodes(gm, a * x) - ah * mu_rot[None]  # (n, K, d)
    v = b * _rotate_nodes(gm, z)
    uu = jnp.sum(u**2 / c, axis=-1)  # (n, K)
    if z.ndim == 2:  # shared nodes
        uv = jnp.einsum("nkd,mkd->nmk", u / c, v)
        vv = jnp.sum(v**2 / c, axis=-1)[None]  # (1, M, K)
    else:
        uv = jnp.einsum("nkd,nmkd->nmk", u / c, v)
        vv = jnp.sum(v**2 / c, axis=-1)  # (n, M, K)
    logits = base - 0.5 * (uu[:, None, :] + 2.0 * uv + vv)
    post = jax.nn.softmax(logits, axis=-1)
    return post @ mask.astype(post.dtype)  # (n, M)


@eqx.filter_jit
def _g_quadrature_block(gm, mask, t_hat, a, b, nodes, weights, xb):
    """``g(x) = sum_m w_m P_{t_hat}(S | a x + b z_m)`` with shared quadrature nodes."""
    return _noised_group_posterior(gm, mask, t_hat, a, b, xb, nodes) @ weights


@eqx.filter_jit
def _g_monte_carlo_block(gm, mask, t_hat, a, b, key, n_inner, xb, ib):
    """Antithetic Monte Carlo ``g`` from two independent halves (for the split-half bias correction).

    Sample ``i`` uses the normals of ``fold_in(key, idx_i)`` at every ``t_hat`` (common random numbers);
    the halves are ``{z[:q], -z[:q]}`` and ``{z[q:], -z[q:]}`` (antithetic pairs stay in one half).
    """
    quarter = n_inner // 4
    d = xb.shape[1]
    z = jax.vmap(lambda i: jr.normal(jr.fold_in(key, i), (2 * quarter, d), xb.dtype))(ib)  # (n, 2q, d)
    zs = jnp.stack([z, -z], axis=1).reshape(z.shape[0], 2, 2, quarter, d).transpose(0, 2, 1, 3, 4)
    zs = zs.reshape(z.shape[0], 4 * quarter, d)  # first 2q: half 1, last 2q: half 2
    post = _noised_group_posterior(gm, mask, t_hat, a, b, xb, zs)  # (n, 4q)
    return jnp.stack([post[:, : 2 * quarter].mean(1), post[:, 2 * quarter :].mean(1)], axis=1)


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


class _InnerExpectation:
    """Evaluates ``g(x) = E[P_{t_hat}(S_init | X_{t_hat}) | X_{t_out} = x]`` by quadrature or Monte Carlo."""

    def __init__(self, gm, mask, inner, n_inner, key, chunk, n_gh=None):
        self.gm, self.mask, self.chunk = gm, mask, chunk
        if inner == "auto":
            inner = "quadrature" if gm.dim <= _MAX_GH_DIM else "monte_carlo"
        if inner == "quadrature":
            if gm.dim > _MAX_GH_DIM:
                raise ValueError(
                    f"`inner='quadrature'` needs dimension <= {_MAX_GH_DIM} (after reduction), "
                    f"got {gm.dim}; use 'monte_carlo'."
                )
            n_gh = _GH_NODES[gm.dim] if n_gh is None else check_positive_int(n_gh, "n_gh", minimum=2)
            self.nodes, self.weights = _gh_nodes(gm.dim, n_gh, gm.means.dtype)
        elif inner == "monte_carlo":
            self.n_inner = 4 * max(1, check_positive_int(n_inner, "n_inner", minimum=4) // 4)
            self.key = key
        else:
            raise ValueError(f"`inner` must be 'auto', 'quadrature' or 'monte_carlo', got {inner!r}.")
        self.kind = inner

    def __call__(self, t_out, t_hat, x, idx):
        """Return ``(g, g_half1, g_half2)``; the halves equal ``g`` for quadrature."""
        p = self.gm.process
        dt = self.gm.means.dtype
        a, b = p.transition(jnp.asarray(t_out, dt), jnp.asarray(t_hat, dt))
        chunk = self.chunk
        k = self.gm.n_components
        th = jnp.asarray(t_hat, dt)
        if self.kind == "quadrature":
            chunk = _pow2_floor(max(1, min(chunk, 4_000_000 // (k * self.nodes.shape[0]))))
            g = _rowwise(
                _g_quadrature_block, (self.gm, self.mask, th, a, b, self.nodes, self.weights), (x,), chunk
            )
            return g, g, g
        chunk = _pow2_floor(max(1, min(chunk, 2_000_000 // (k * self.n_inner * self.gm.dim))))
        halves = _rowwise(
            _g_monte_carlo_block,
            (self.gm, self.mask, th, a, b, self.key, self.n_inner),
            (x, jnp.asarray(idx)),
            chunk,
        )
        return 0.5 * (halves[:, 0] + halves[:, 1]), halves[:, 0], halves[:, 1]


def _check_sampler(sampler: str) -> str:
    if sampler not in ("sde", "ode"):
        raise ValueError(
            f"`sampler` must be 'sde' (reverse SDE) or 'ode' (probability-flow ODE), got {sampler!r}."
        )
    return sampler


def window_curve(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    t_hats: ArrayLike,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_outer: int = 20_000,
    inner: str = "auto",
    n_inner: int = 64,
    n_gh: int | None = None,
    t_out: float = 0.0,
    reduce: bool = True,
    chunk_size: int = 4096,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> WindowCurve:
    r"""Route (a): the exact window curve ``TV(p^{S_init, T_hat}, p^{S_targ})`` from the reweighting identity.

    ``TV = 1/2 E_{x ~ p_{t_out}} |g(x)/W_init - P_{t_out}(S_targ|x)/W_targ|`` with (module docstring)

    - SDE: ``g(x) = E[P_{T_hat}(S_init | X_{T_hat}) | X_{t_out} = x]``, ``X_{T_hat} = a x + b Z`` with the
      exact kernel ``(a, b) = process.transition(t_out, T_hat)``; the inner expectation by tensor
      Gauss-Hermite quadrature (dimension <= 2 after :func:`spherical_reduction`; ``n_gh`` nodes per axis,
      default 64 in 1-D and 20 in 2-D) or antithetic Monte Carlo with ``n_inner`` normals per point.
      Monte Carlo makes ``|.|`` biased upwards by ``O(1/n_inner)``;
      the estimate is corrected by ``2 TV_M - TV_{M/2}`` (split halves).
    - ODE: ``g(x) = P_{T_hat}(S_init | Phi_{t_out -> T_hat}(x))`` with :func:`diffsim.flow` (chained over the
      sorted ``t_hats``).

    The outer expectation uses ``n_outer`` exact samples of ``p_{t_out}``, stratified over components and
    shared by all ``T_hat`` (common random numbers). ``t_out`` is the time at which the output is compared
    with ``p^{S_targ}`` (0: data; use the sampler's end time to compare with simulations).
    """
    gm = _check_mixture(gm)
    idx_i, idx_t = _nested(gm, s_init, s_targ)
    sampler = _check_sampler(sampler)
    key = check_key(key)
    gm.process.check_time(t_out, "t_out")
    ts = _times(gm.process, t_hats, "t_hats", allow_zero=False, above=float(t_out))
    n_outer = check_positive_int(n_outer, "n_outer", minimum=8)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    work, _ = _working(gm, reduce)
    dt = work.means.dtype
    k_outer, k_inner = jr.split(key)
    st = _strata(work, k_outer, n_outer, np.asarray(work.weights, float))
    x = _points(work, st, t_out)
    idx = jnp.arange(x.shape[0])
    m_i, m_t = _mask(work, idx_i), _mask(work, idx_t)
    w_i, w_t = _weight(work, idx_i), _weight(work, idx_t)
    t_out_arr = jnp.asarray(t_out, dt)
    p_init0 = np.asarray(_posteriors(work, t_out_arr, x, m_i), float)
    p_targ0 = np.asarray(_posteriors(work, t_out_arr, x, m_t), float)
    inner_fn = (
        _InnerExpectation(work, m_i, inner, n_inner, k_inner, chunk_size, n_gh) if sampler == "sde" else None
    )

    order = np.argsort(ts)
    res = {k: np.zeros(ts.size) for k in ("tv", "tv_se", "ri", "ri_se", "rt", "rt_se", "mass")}
    x_flow, t_prev = x, float(t_out)
    for j in order:
        t_hat = float(ts[j])
        if sampler == "sde":
            g, g1, g2 = (np.asarray(v, float) for v in inner_fn(t_out, t_hat, x, idx))
        else:
            x_flow = _flow(work, x_flow, t_prev, t_hat, rtol=rtol, atol=atol)
            t_prev = t_hat
            g = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), x_flow, m_i), float)
            g1 = g2 = g
        u = lambda gg: np.abs(gg / w_i - p_targ0 / w_t)
        h = 0.5 * (2.0 * u(g) - 0.5 * (u(g1) + u(g2)))  # split-half bias correction (exact when g1 = g2 = g)
        res["tv"][j], res["tv_se"][j] = _strat_estimate(h, st)
        res["ri"][j], res["ri_se"][j] = _strat_estimate(g * p_init0 / w_i, st)
        res["rt"][j], res["rt_se"][j] = _strat_estimate(g * p_targ0 / w_i, st)
        res["mass"][j] = _strat_estimate(g / w_i, st)[0]
    return WindowCurve(
        ts,
        res["tv"],
        res["tv_se"],
        res["ri"],
        res["ri_se"],
        res["rt"],
        res["rt_se"],
        res["mass"],
        tuple(idx_i.tolist()),
        tuple(idx_t.tolist()),
        sampler,
        "identity",
        float(t_out),
    )


# =====================================================================================================
# the exact window: route (b), direct simulation
# =====================================================================================================
def simulated_window_curve(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targ: Sequence[int] | ArrayLike,
    t_hats: ArrayLike,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_particles: int = 20_000,
    n_steps: int = 200,
    method: str | None = None,
    grid: str = "uniform",
    t_out: float | None = None,
    n_reference: int = 20_000,
    inner: str = "auto",
    n_inner: int = 64,
    chunk_size: int = 4096,
    **method_options: Any,
) -> WindowCurve:
    r"""Route (b): simulate noising-denoising with :func:`diffsim.noise_denoise` and measure the output.

    ``n_particles`` points of ``p^{S_init}`` are noised exactly to ``T_hat`` and denoised to ``t_out``
    (default ``process.t_min``) with ``method`` (``"ddpm"`` for ``sampler="sde"``, ``"dpm_solver_2m"`` for
    ``"ode"``) on ``n_steps`` steps. With the exact posteriors at ``t_out``:

    - retentions: sample means of ``P_{t_out}(S | Y)``;
    - TV: ``q(A) - p^{S_targ}_{t_out}(A)`` for ``A = {y: g(y)/W_init > P_{t_out}(S_targ|y)/W_targ}``, where
      ``q(A)`` is the fraction of simulated outputs in ``A`` and ``p^{S_targ}(A) = E_p[P(S_targ|x) 1_A(x)]
      / W_targ`` uses ``n_reference`` exact samples. For the SDE, ``g`` is evaluated as in
      :func:`window_curve`; for the ODE, ``g(Y) = P_{T_hat}(S_init | X_{T_hat})`` with the simulation's own
      starting point (the sampler's inverse map) and the reference set is evaluated on simulated outputs of
      ``p_{T_hat}``. For any ``A`` this is a lower bound on the TV of the simulated law; it equals the TV when
      ``A`` is the optimal set.

    Compare with :func:`window_curve` at the same ``t_out``. :func:`simulated_window_curves` measures
    several targets from one simulation.
    """
    return simulated_window_curves(
        gm,
        s_init,
        [s_targ],
        t_hats,
        key=key,
        sampler=sampler,
        n_particles=n_particles,
        n_steps=n_steps,
        method=method,
        grid=grid,
        t_out=t_out,
        n_reference=n_reference,
        inner=inner,
        n_inner=n_inner,
        chunk_size=chunk_size,
        **method_options,
    )[0]


def simulated_window_curves(
    gm: GaussianMixture,
    s_init: Sequence[int] | ArrayLike,
    s_targs: Sequence[Sequence[int] | ArrayLike],
    t_hats: ArrayLike,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_particles: int = 20_000,
    n_steps: int = 200,
    method: str | None = None,
    grid: str = "uniform",
    t_out: float | None = None,
    n_reference: int = 20_000,
    inner: str = "auto",
    n_inner: int = 64,
    chunk_size: int = 4096,
    **method_options: Any,
) -> tuple[WindowCurve, ...]:
    """:func:`simulated_window_curve` for several targets ``s_targs`` (each containing ``s_init``) from the
    same simulations (one noising-denoising run per ``T_hat``)."""
    gm = _check_mixture(gm)
    if isinstance(s_targs, (str, bytes)) or not isinstance(s_targs, (list, tuple)) or not s_targs:
        raise ValueError("`s_targs` must be a non-empty list of component groups.")
    pairs = [_nested(gm, s_init, st) for st in s_targs]
    idx_i = pairs[0][0]
    sampler = _check_sampler(sampler)
    key = check_key(key)
    p = gm.process
    t_out = p.t_min if t_out is None else float(t_out)
    p.check_time(t_out, "t_out", allow_zero=False)
    ts = _times(p, t_hats, "t_hats", allow_zero=False, above=t_out)
    n_particles = check_positive_int(n_particles, "n_particles", minimum=8)
    n_reference = check_positive_int(n_reference, "n_reference", minimum=8)
    if method is None:
        method = "ddpm" if sampler == "sde" else "dpm_solver_2m"
    work, basis = _working(gm, True)
    dt = gm.means.dtype
    m_i, w_i = _mask(work, idx_i), _weight(work, idx_i)
    targets = [(_mask(work, it), _weight(work, it)) for _, it in pairs]
    k_init, k_sim, k_ref, k_inner, k_inner_ref = jr.split(key, 5)
    x0, _ = _restrict(gm, idx_i).sample(k_init, n_particles)
    inner_fn = _InnerExpectation(work, m_i, inner, n_inner, k_inner, chunk_size) if sampler == "sde" else None
    inner_ref = (
        _InnerExpectation(work, m_i, inner, n_inner, k_inner_ref, chunk_size) if sampler == "sde" else None
    )
    t_out_arr = jnp.asarray(t_out, dt)
    if sampler == "sde":
        st_ref = _strata(work, k_ref, n_reference, np.asarray(work.weights, float))
        x_ref = _points(work, st_ref, t_out)
        pt_ref_all = [np.asarray(_posteriors(work, t_out_arr, x_ref, m_t), float) for m_t, _ in targets]
    else:
        st_ref = _strata(gm, k_ref, n_reference, np.asarray(gm.weights, float))

    res = [{k: np.zeros(ts.size) for k in ("tv", "tv_se", "ri", "ri_se", "rt", "rt_se")} for _ in targets]
    for j, t_hat in enumerate(ts):
        t_hat = float(t_hat)
        traj = _noise_denoise(
            gm,
            x0,
            t_hat,
            key=k_sim,
            method=method,
            n_steps=n_steps,
            grid=grid,
            t_end=t_out,
            save=[0, n_steps],
            **method_options,
        )
        y = _project(jnp.asarray(traj.x), basis)
        pi_y = np.asarray(_posteriors(work, t_out_arr, y, m_i), float)
        if sampler == "sde":
            g_y = np.asarray(inner_fn(t_out, t_hat, y, jnp.arange(y.shape[0]))[0], float)
            g_ref = np.asarray(inner_ref(t_out, t_hat, x_ref, jnp.arange(x_ref.shape[0]))[0], float)
            pt_ref_list = pt_ref_all
        else:
            x_start = _project(jnp.asarray(traj.xs[0]), basis)
            g_y = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), x_start, m_i), float)
            xs_ref = _points(gm, st_ref, t_hat)  # exact draws of p_{t_hat} in the full space
            grid_ref = _reference_grid(p, t_hat, t_out, n_steps, grid, dt)
            y_ref = _project(
                jnp.asarray(_simulate(gm, method, grid_ref, x=xs_ref, key=k_sim, **method_options).x), basis
            )
            g_ref = np.asarray(_posteriors(work, jnp.asarray(t_hat, dt), _project(xs_ref, basis), m_i), float)
            pt_ref_list = [np.asarray(_posteriors(work, t_out_arr, y_ref, m_t), float) for m_t, _ in targets]
        for r, (m_t, w_t), pt_ref in zip(res, targets, pt_ref_list, strict=False):
            pt_y = np.asarray(_posteriors(work, t_out_arr, y, m_t), float)
            in_a = (g_y / w_i > pt_y / w_t).astype(float)
            nu, nu_se = _strat_estimate(pt_ref * (g_ref / w_i > pt_ref / w_t) / w_t, st_ref)
            r["tv"][j] = in_a.mean() - nu
            r["tv_se"][j] = math.sqrt(in_a.var(ddof=1) / in_a.size + nu_se**2)
            r["ri"][j], r["ri_se"][j] = pi_y.mean(), pi_y.std(ddof=1) / math.sqrt(pi_y.size)
            r["rt"][j], r["rt_se"][j] = pt_y.mean(), pt_y.std(ddof=1) / math.sqrt(pt_y.size)
    return tuple(
        WindowCurve(
            ts,
            r["tv"],
            r["tv_se"],
            r["ri"],
            r["ri_se"],
            r["rt"],
            r["rt_se"],
            np.full(ts.size, np.nan),
            tuple(idx_i.tolist()),
            tuple(it.tolist()),
            sampler,
            "simulation",
            t_out,
        )
        for r, (_, it) in zip(res, pairs, strict=False)
    )


def _reference_grid(process, t_hat, t_out, n_steps, grid, dtype):
    if grid == "uniform":
        return jnp.linspace(t_hat, t_out, n_steps + 1, dtype=dtype)
    if grid == "logsnr":
        lam = jnp.linspace(
            process.log_snr(jnp.asarray(t_hat, dtype)),
            process.log_snr(jnp.asarray(t_out, dtype)),
            n_steps + 1,
        )
        return process.t_from_log_snr(lam).at[0].set(t_hat).at[-1].set(t_out)
    raise ValueError(f"Unknown grid kind {grid!r}; use 'uniform' or 'logsnr'.")


# =====================================================================================================
# reading windows off the curves
# =====================================================================================================
@dataclasses.dataclass(frozen=True)
class Window:
    """The longest run of ``T_hat`` with ``TV <= eps``: ``[lower, upper]`` with standard errors.

    An end that coincides with the first/last ``T_hat`` evaluated is *censored* (the curve was already
    below ``eps`` there); both ends are NaN when the curve never drops below ``eps``.
    """

    lower: float
    upper: float
    lower_stderr: float
    upper_stderr: float
    lower_censored: bool
    upper_censored: bool
    eps: float

    @property
    def empty(self) -> bool:
        return bool(np.isnan(self.lower))


def _crossing(ts, vals, errs, j0, j1, eps):
    """Linear interpolation of the ``eps`` crossing between grid points ``j0``, ``j1``; error se/|slope|."""
    v0, v1 = vals[j0], vals[j1]
    slope = (v1 - v0) / (ts[j1] - ts[j0])
    frac = 0.0 if v1 == v0 else (eps - v0) / (v1 - v0)
    frac = float(np.clip(frac, 0.0, 1.0))
    t = ts[j0] + frac * (ts[j1] - ts[j0])
    se = (1 - frac) * errs[j0] + frac * errs[j1]
    err = se / abs(slope) if slope != 0 else np.inf
    return float(t), float(err)


def read_window(curve: WindowCurve, eps: float) -> Window:
    r"""The window ``{T_hat : TV(p^{S_init,T_hat}, p^{S_targ}) <= eps}`` read off a :class:`WindowCurve`.

    Takes the longest run of consecutive ``T_hat`` (sorted) below ``eps``; interior ends are linear
    interpolations of the crossing, with standard error ``se(TV)/|dTV/dT_hat|`` (delta method).
    """
    if not isinstance(curve, WindowCurve):
        raise TypeError(f"`curve` must be a WindowCurve, got {type(curve).__name__}.")
    eps = _check_eps(eps)
    order = np.argsort(curve.t_hats)
    ts, tv, se = curve.t_hats[order], curve.tv[order], curve.tv_stderr[order]
    below = tv <= eps
    if not below.any():
        return Window(np.nan, np.nan, np.nan, np.nan, False, False, eps)
    best, start = (0, -1), None
    for j, b in enumerate(np.append(below, False)):
        if b and start is None:
            start = j
        if not b and start is not None:
            if j - start > best[1] - best[0] + 1 or best[1] < 0:
                best = (start, j - 1)
            start = None
    j_lo, j_hi = best
    if j_lo == 0:
        lo, lo_se, lo_c = float(ts[0]), 0.0, True
    else:
        lo, lo_se = _crossing(ts, tv, se, j_lo - 1, j_lo, eps)
        lo_c = False
    if j_hi == ts.size - 1:
        hi, hi_se, hi_c = float(ts[-1]), 0.0, True
    else:
        hi, hi_se = _crossing(ts, tv, se, j_hi, j_hi + 1, eps)
        hi_c = False
    return Window(lo, hi, lo_se, hi_se, lo_c, hi_c, eps)


@dataclasses.dataclass(frozen=True)
class CriticalWindow:
    """The critical window ``[keep, forget]`` of a feature (a group ``S`` inside its parent ``V``).

    ``keep``: the last ``T_hat`` with ``TV(p^{S,T_hat}, p^S) <= eps`` (the feature is still decided);
    ``forget``: the first ``T_hat`` with ``TV(p^{S,T_hat}, p^V) <= eps`` (the feature is fully resampled
    within ``V``). The sampler decides the feature during ``[keep, forget]``.
    """

    keep: float
    forget: float
    keep_stderr: float
    forget_stderr: float
    eps: float

    @property
    def width(self) -> float:
        return self.forget - self.keep

    @property
    def centre(self) -> float:
        return 0.5 * (self.keep + self.forget)


def critical_window(keep_curve: WindowCurve, forget_curve: WindowCurve, eps: float) -> CriticalWindow:
    """``[keep, forget]`` from the curves with ``S_targ = S_init = S`` (keep) and ``S_targ = V`` (forget)."""
    if keep_curve.s_init != keep_curve.s_targ:
        raise ValueError("`keep_curve` must have s_targ == s_init (the feature kept).")
    if forget_curve.s_init != keep_curve.s_init:
        raise ValueError("`forget_curve` must start from the same group as `keep_curve`.")
    wk, wf = read_window(keep_curve, eps), read_window(forget_curve, eps)
    return CriticalWindow(wk.upper, wf.lower, wk.upper_stderr, wf.lower_stderr, float(eps))


# =====================================================================================================
# theorem-side bounds (NumPy float64)
# =====================================================================================================
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
        for l in out_s:
            if w[k] <= 0 or w[l] <= 0:
                continue
            log_bc, m, v = _pair_overlap(means, cov, prec, logdet, k, l)
            pk_mk = np.einsum("tij,tj->ti", prec[:, k], means[:, k])
            pl_ml = np.einsum("tij,tj->ti", prec[:, l], means[:, l])
            diff = _quad_moment(prec[:, l] - prec[:, k], pk_mk - pl_ml, m, v)  # E|s_k - s_l|^2
            if sampler == "sde":
                mom = diff
            else:
                sk = _quad_moment(-prec[:, k], pk_mk, m, v)
                sl = _quad_moment(-prec[:, l], pl_ml, m, v)
                mom = 1.5 * (sk + sl) + 0.5 * diff + tr[:, k] + tr[:, l]
            terms.append(0.5 * math.log(w[k] * w[l]) + log_bc + np.log(np.maximum(mom, 1e-300)))
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
    t_hats: ArrayLike,
    *,
    sampler: str = "sde",
    n_grid: int = 2001,
) -> np.ndarray:
    r"""Closed-form upper bound on ``TV(p^{S, T_hat}, p^S)`` (the group ``S`` kept) at each ``T_hat``.

    SDE: ``sqrt(KL/2)``, ``KL <= 1/2 int_0^{T_hat} g(t)^2 R_t dt`` with the Bhattacharyya rate ``R_t`` of
    :func:`_separation_rate` (Girsanov + Pinsker); ODE: ``int_0^{T_hat} g(t)^2/4 R_t dt`` (posterior
    transport along the flow, ``R_t`` already divided by ``2 W_S``). Integrated by the trapezoid rule on
    ``n_grid`` times in ``[0, t_max]``.
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
    """``min_{i in S, j notin S} |mu_i - mu_j|`` (informational; ``inf`` for the whole mixture)."""
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
    """``T_upper = sup{T : girsanov_tv_bound(T) <= eps}`` (``t_max`` if never exceeded; all components)."""
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


@dataclasses.dataclass(frozen=True)
class TheoremBounds:
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
    """Compute :class:`TheoremBounds` (``numerical=True`` adds :func:`t_upper_numerical`, needs ``key``)."""
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


# =====================================================================================================
# mixture trees and the hierarchy of decisions
# =====================================================================================================
@dataclasses.dataclass(frozen=True)
class TreeNode:
    """A node of a mixture tree: the components it covers and its children (leaves have none)."""

    components: tuple[int, ...]
    children: tuple[TreeNode, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def name(self) -> str:
        return "{" + ",".join(map(str, self.components)) + "}"

    def internal_nodes(self) -> list[TreeNode]:
        """Internal nodes, parents before children (pre-order)."""
        if self.is_leaf:
            return []
        out = [self]
        for c in self.children:
            out += c.internal_nodes()
        return out

    def depth(self) -> int:
        return 0 if self.is_leaf else 1 + max(c.depth() for c in self.children)


def _tree_from_nested(spec: Any, k: int, seen: set) -> TreeNode:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        i = int(spec)
        if not 0 <= i < k:
            raise ValueError(f"`groups` names component {i}, outside [0, {k}).")
        if i in seen:
            raise ValueError(f"`groups` names component {i} more than once.")
        seen.add(i)
        return TreeNode((i,))
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise ValueError("`groups` contains an empty group.")
        children = tuple(_tree_from_nested(s, k, seen) for s in spec)
        if len(children) == 1:
            return children[0]
        comps = tuple(sorted(c for ch in children for c in ch.components))
        return TreeNode(comps, children)
    raise TypeError(f"`groups` must be nested lists of component indices, got {type(spec).__name__}.")


def _agglomerative(means: np.ndarray, weights: np.ndarray, linkage: str) -> TreeNode:
    """Binary agglomerative clustering of component means (average, single, complete or Ward linkage)."""
    nodes = [TreeNode((i,)) for i in range(means.shape[0])]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)

    def link(a: TreeNode, b: TreeNode) -> float:
        block = dist[np.ix_(a.components, b.components)]
        if linkage == "single":
            return float(block.min())
        if linkage == "complete":
            return float(block.max())
        if linkage == "average":
            return float(block.mean())
        wa, wb = weights[list(a.components)], weights[list(b.components)]
        ca = (wa[:, None] * means[list(a.components)]).sum(0) / wa.sum()
        cb = (wb[:, None] * means[list(b.components)]).sum(0) / wb.sum()
        return float(math.sqrt(2 * wa.sum() * wb.sum() / (wa.sum() + wb.sum())) * np.linalg.norm(ca - cb))

    while len(nodes) > 1:
        best = None
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                dd = link(nodes[i], nodes[j])
                if best is None or dd < best[0] - 1e-12:
                    best = (dd, i, j)
        _, i, j = best
        merged = TreeNode(tuple(sorted(nodes[i].components + nodes[j].components)), (nodes[i], nodes[j]))
        nodes = [n for m, n in enumerate(nodes) if m not in (i, j)] + [merged]
    return nodes[0]


def mixture_tree(gm: GaussianMixture, groups: Any = None, *, linkage: str = "average") -> TreeNode:
    """The mixture tree: user-given nested groups (e.g. ``[[0, 1], [2, [3, 4]]]``) or, with ``groups=None``,
    binary agglomerative clustering of the component means (``linkage``: average/single/complete/ward).

    Leaves are components; each internal node is the sub-mixture of its leaves; the root covers all.
    """
    gm = _check_mixture(gm)
    k = gm.n_components
    if groups is None:
        if linkage not in ("average", "single", "complete", "ward"):
            raise ValueError(f"`linkage` must be 'average', 'single', 'complete' or 'ward', got {linkage!r}.")
        return _agglomerative(np.asarray(gm.means, float), np.asarray(gm.weights, float), linkage)
    seen: set = set()
    root = _tree_from_nested(groups, k, seen)
    if len(seen) != k:
        missing = sorted(set(range(k)) - seen)
        raise ValueError(f"`groups` must cover every component exactly once; missing {missing}.")
    return root


@dataclasses.dataclass(frozen=True)
class NodeWindows:
    """Windows of one internal node ``V``: per child ``c``, the keep/forget curves, the exact critical
    window ``[keep_c, forget_c]`` and the theorem bounds (keep side: ``S_init = S_targ = c``; forget side:
    ``S_init = c``, ``S_targ = V``). ``decision_time``: mean centre of the children's critical windows;
    ``decision_time_bounds``: mean centre of ``[t_upper(c, c), t_lower(c, V)]``; ``speciation_time``:
    :func:`speciation_time` of ``p^V``."""

    node: TreeNode
    children: tuple[TreeNode, ...]
    keep_curves: tuple[WindowCurve, ...]
    forget_curves: tuple[WindowCurve, ...]
    windows: tuple[CriticalWindow, ...]
    keep_bounds: tuple[TheoremBounds, ...]
    forget_bounds: tuple[TheoremBounds, ...]
    decision_time: float
    decision_time_bounds: float
    speciation_time: float


@dataclasses.dataclass(frozen=True)
class TreeWindows:
    """Per-node windows and the decision times sorted from first decided (largest ``T_hat``) to last."""

    tree: TreeNode
    nodes: tuple[NodeWindows, ...]
    decision_order: tuple[str, ...]
    decision_times: tuple[float, ...]


def tree_windows(
    gm: GaussianMixture,
    tree: TreeNode,
    eps: float,
    t_hats: ArrayLike,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_bound_samples: int = 20_000,
    **curve_options: Any,
) -> TreeWindows:
    """Critical windows of every internal node of ``tree`` (route (a) curves) and the decision sequence.

    Reading the reverse process from large to small ``T_hat``, the sampler decides the child of node ``V``
    during the critical windows of its children; the decision times are ordered coarse (large separation,
    early in the reverse process) to fine. ``curve_options`` go to :func:`window_curve`;
    ``n_bound_samples`` to :func:`theorem_bounds` (Monte Carlo forward TV when no quadrature applies).
    """
    gm = _check_mixture(gm)
    if not isinstance(tree, TreeNode):
        raise TypeError(f"`tree` must be a TreeNode (see mixture_tree), got {type(tree).__name__}.")
    eps = _check_eps(eps)
    key = check_key(key)
    out = []
    for n_idx, node in enumerate(tree.internal_nodes()):
        keeps, forgets, wins, kb, fb = [], [], [], [], []
        for c_idx, child in enumerate(node.children):
            kk = jr.fold_in(jr.fold_in(key, n_idx), c_idx)
            kc = window_curve(
                gm, child.components, child.components, t_hats, key=kk, sampler=sampler, **curve_options
            )
            fc = window_curve(
                gm, child.components, node.components, t_hats, key=kk, sampler=sampler, **curve_options
            )
            keeps.append(kc)
            forgets.append(fc)
            wins.append(critical_window(kc, fc, eps))
            kb.append(
                theorem_bounds(
                    gm,
                    child.components,
                    child.components,
                    eps,
                    sampler=sampler,
                    key=kk,
                    n_samples=n_bound_samples,
                )
            )
            fb.append(
                theorem_bounds(
                    gm,
                    child.components,
                    node.components,
                    eps,
                    sampler=sampler,
                    key=kk,
                    n_samples=n_bound_samples,
                )
            )
        centre = float(np.nanmean([w.centre for w in wins]))
        centre_b = float(np.mean([0.5 * (a.t_upper + b.t_lower) for a, b in zip(kb, fb, strict=False)]))
        out.append(
            NodeWindows(
                node,
                node.children,
                tuple(keeps),
                tuple(forgets),
                tuple(wins),
                tuple(kb),
                tuple(fb),
                centre,
                centre_b,
                speciation_time(gm, node.components),
            )
        )
    order = sorted(out, key=lambda nw: -nw.decision_time if np.isfinite(nw.decision_time) else np.inf)
    return TreeWindows(
        tree, tuple(out), tuple(nw.node.name for nw in order), tuple(nw.decision_time for nw in order)
    )


# =====================================================================================================
# speciation and cloning (Biroli, Bonnaire, de Bortoli & Mezard 2024)
# =====================================================================================================
def speciation_time(gm: GaussianMixture, group: Any = None) -> float:
    r"""``t_S``: the time at which ``alpha_t^2 Lambda = 1``, ``Lambda`` the largest eigenvalue of the
    covariance of ``p^S`` (all components by default). OU: ``t_S = 1/2 log Lambda`` (Biroli et al. 2024); other VP
    schedules via :func:`diffsim.processes.alpha_bar_to_time` (VE processes have no speciation time in this
    sense: ``TypeError``). ``Lambda <= 1`` gives ``0``.
    """
    gm = _check_mixture(gm)
    idx = np.arange(gm.n_components) if group is None else _group(gm, group, "group")
    w = np.asarray(gm.weights, float)[idx]
    w = w / w.sum()
    mu = np.asarray(gm.means, float)[idx]
    covs = np.asarray(gm.covs, float)[idx]
    mean = w @ mu
    cov = np.einsum("k,kij->ij", w, covs) + np.einsum("k,ki,kj->ij", w, mu - mean, mu - mean)
    lam = float(np.linalg.eigvalsh(cov).max())
    if lam <= 1.0:
        return 0.0
    return float(alpha_bar_to_time(gm.process, jnp.asarray(1.0 / lam)))


def two_gaussian_cloning(m_norm: float, sigma2: float, t: ArrayLike, process: AbstractProcess) -> np.ndarray:
    r"""Biroli et al.'s cloning curve for ``1/2 N(+m, sigma^2 I) + 1/2 N(-m, sigma^2 I)``:

        phi(t) = 1/2 int (G_+^2 + G_-^2) / (G_+ + G_-) dx,   G_± = N(± alpha_t |m|, Gamma_t),
        Gamma_t = alpha_t^2 sigma^2 + sigma_t^2,

    the probability that two clones branched at ``t`` end in the same component (1-D trapezoid quadrature).
    """
    ts = np.atleast_1d(np.asarray(t, float))
    process.check_time(ts, "t")
    out = []
    for tt in ts:
        a = float(process.alpha(tt))
        gam = a**2 * sigma2 + float(process.sigma2(tt))
        sd = math.sqrt(gam)
        x = np.linspace(-a * m_norm - 12 * sd, a * m_norm + 12 * sd, 20001)
        gp = np.exp(-0.5 * (x - a * m_norm) ** 2 / gam) / math.sqrt(2 * math.pi * gam)
        gn = np.exp(-0.5 * (x + a * m_norm) ** 2 / gam) / math.sqrt(2 * math.pi * gam)
        tot = np.maximum(gp + gn, 1e-300)
        out.append(0.5 * np.trapezoid((gp**2 + gn**2) / tot, x))
    out = np.asarray(out)
    return out[0] if np.ndim(t) == 0 else out


def _group_masks(gm: GaussianMixture, groups: Any) -> Array:
    if groups is None:
        return jnp.eye(gm.n_components, dtype=bool)
    masks = []
    seen: set = set()
    for g_i, g in enumerate(groups):
        idx = _group(gm, g, f"groups[{g_i}]")
        if seen & set(idx.tolist()):
            raise ValueError("`groups` must be disjoint.")
        seen |= set(idx.tolist())
        masks.append(np.isin(np.arange(gm.n_components), idx))
    if len(seen) != gm.n_components:
        raise ValueError("`groups` must cover every component.")
    return jnp.asarray(np.stack(masks))


@eqx.filter_jit
def _group_posteriors_block(gm, t, masks, x):
    return jax.vmap(lambda xi: masks.astype(x.dtype) @ gm.posterior(t, xi))(x)


def _group_posteriors(gm, t, x, masks) -> np.ndarray:
    return _rowwise(_group_posteriors_block, (gm, jnp.asarray(t, gm.means.dtype), masks), (jnp.asarray(x),))


def cloning_theory(
    gm: GaussianMixture,
    t: ArrayLike,
    groups: Any = None,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
) -> tuple[np.ndarray, np.ndarray]:
    r"""``phi(t) = E_{x ~ p_t}[sum_g P_t(g | x)^2]`` for any mixture and partition ``groups`` (default: each
    component its own group), by stratified Monte Carlo with exact posteriors; returns ``(phi, stderr)``.

    Two clones branched at ``x_t`` land independently in group ``g`` with probability ``P_t(g | x_t)``
    under the exact reverse dynamics, hence this formula; for two symmetric Gaussians it is
    :func:`two_gaussian_cloning`.
    """
    gm = _check_mixture(gm)
    ts = _times(gm.process, t, "t", allow_zero=True)
    masks = _group_masks(gm, groups)
    key = jr.key(0) if key is None else check_key(key)
    work, _ = _working(gm, True)
    st = _strata(
        work, key, check_positive_int(n_samples, "n_samples", minimum=8), np.asarray(work.weights, float)
    )
    vals, errs = [], []
    for tt in ts:
        post = _group_posteriors(work, jnp.asarray(tt, work.means.dtype), _points(work, st, tt), masks)
        v, e = _strat_estimate(np.sum(np.asarray(post, float) ** 2, axis=1), st)
        vals.append(v)
        errs.append(e)
    return np.asarray(vals), np.asarray(errs)


def cloning_overlap(
    gm: GaussianMixture,
    t: ArrayLike,
    groups: Any = None,
    *,
    key: jax.Array,
    n: int = 4000,
    method: str = "euler_maruyama",
    n_steps: int = 200,
    t_end: float | None = None,
    **method_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Measured cloning overlap ``phi(t)`` with :func:`diffsim.clone`; returns ``(phi, stderr)`` per ``t``.

    ``n`` states are drawn exactly from ``p_t`` (the law of the exact reverse process at ``t``), branched into
    two clones continued with independent noise by ``method`` to ``t_end`` (default ``t_min``), and scored
    with the soft overlap ``sum_g P_{t_end}(g | Y^1) P_{t_end}(g | Y^2)``. By the tower property its mean is
    exactly ``E[sum_g P_t(g | x_t)^2]`` for the exact sampler (:func:`cloning_theory`), with no label noise.
    """
    gm = _check_mixture(gm)
    key = check_key(key)
    p = gm.process
    t_end = p.t_min if t_end is None else float(t_end)
    ts = _times(p, t, "t", allow_zero=False, above=t_end)
    masks = _group_masks(gm, groups)
    n = check_positive_int(n, "n", minimum=2)
    vals, errs = [], []
    for j, tt in enumerate(ts):
        kx, kc = jr.split(jr.fold_in(key, j))
        xt, _ = gm.sample(kx, n, float(tt))
        traj = _clone(
            gm,
            xt,
            float(tt),
            key=kc,
            n_clones=2,
            method=method,
            n_steps=n_steps,
            t_end=t_end,
            **method_options,
        )
        te = jnp.asarray(t_end, gm.means.dtype)
        p1 = np.asarray(_group_posteriors(gm, te, traj.x[0], masks), float)
        p2 = np.asarray(_group_posteriors(gm, te, traj.x[1], masks), float)
        o = np.sum(p1 * p2, axis=1)
        vals.append(o.mean())
        errs.append(o.std(ddof=1) / math.sqrt(o.size))
    return np.asarray(vals), np.asarray(errs)
