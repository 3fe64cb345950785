r"""Exact total variation between forward-noised sub-mixtures: closed form, 1-D quadrature, Monte Carlo."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._types import ArrayOrSequence
from ..._validation import check_key, check_positive_int
from ...scores.mixture import GaussianMixture
from ._groups import _check_mixture, _group, _mask, _times, _working
from ._strata import _strata, _stratified_over_times


def gaussian_tv_equal_cov(mean_a: ArrayLike, mean_b: ArrayLike, cov: ArrayLike) -> Float[Array, ""]:
    r"""``TV(N(m_a, C), N(m_b, C)) = 2 Phi(delta / 2) - 1``, ``delta^2 = (m_a - m_b)^T C^{-1} (m_a - m_b)``.

    Closed form: the likelihood ratio is monotone in the projection on ``C^{-1}(m_a - m_b)``, which is
    ``N(±delta/2, 1)`` after standardisation.

    Args:
        mean_a: mean of the first Gaussian, shape ``(d,)`` (a scalar is read as ``d = 1``).
        mean_b: mean of the second Gaussian, same shape as ``mean_a``.
        cov: the shared covariance: a scalar (``c I``), a diagonal ``(d,)`` or a matrix ``(d, d)``.

    Returns:
        The total variation, a scalar array in ``[0, 1)``.
    """
    ma, mb = jnp.atleast_1d(jnp.asarray(mean_a)), jnp.atleast_1d(jnp.asarray(mean_b))
    diff = ma - mb
    c = jnp.asarray(cov, diff.dtype)
    if c.ndim == 0 or c.ndim == 1:
        delta2 = jnp.sum(diff**2 / c)
    else:
        delta2 = diff @ jnp.linalg.solve(c, diff)
    return 2.0 * jsp.ndtr(0.5 * jnp.sqrt(delta2)) - 1.0


class TVEstimate(eqx.Module):
    """A total variation with its standard error (0 for closed forms and quadrature) and the method used.

    Attributes:
        value: the TV, a NumPy float for one time ``t``, an array shaped like ``t`` for several.
        stderr: its Monte Carlo standard error, same shape as ``value`` (0 for exact methods).
        method: the method used: ``"closed_form"``, ``"quadrature"`` or ``"monte_carlo"``.
    """

    value: np.ndarray | float  # a NumPy float for one pair, an array for several
    stderr: np.ndarray | float
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
    t: ArrayOrSequence,
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

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`); its process noises both groups.
        group_a: the first group of components: integer indices or a boolean mask of shape ``(K,)``.
        group_b: the second group, in the same form.
        t: one forward time or a 1-D array of times (``t = 0`` allowed: the clean sub-mixtures).
        method: ``"auto"`` (default), ``"closed_form"``, ``"quadrature"`` or ``"monte_carlo"``, as above;
            a method that does not apply raises ``ValueError``.
        key: PRNG key for ``"monte_carlo"`` (required when that method is used, ignored otherwise).
        n_samples: Monte Carlo sample size (at least 8; half from each group).
        reduce: apply :func:`spherical_reduction` first when the covariances are one shared ``s^2 I``.

    Returns:
        A :class:`TVEstimate` (arrays shaped like ``t``; ``stderr`` is 0 for exact methods).
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
