r"""Speciation time and cloning (Biroli, Bonnaire, de Bortoli & Mezard 2024): the two-Gaussian formula,
the general Monte Carlo formula and the measured overlap of clones."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array

from ..._types import ArrayOrSequence
from ..._validation import check_key, check_positive_int
from ...processes import AbstractProcess, alpha_bar_to_time
from ...sampling import clone as _clone
from ...scores.mixture import GaussianMixture
from ._groups import _check_mixture, _group, _times, _working
from ._strata import _points, _rowwise, _strat_estimate, _strata


def speciation_time(gm: GaussianMixture, group: Any = None) -> float:
    r"""``t_S``: the time at which ``alpha_t^2 Lambda = 1``, ``Lambda`` the largest eigenvalue of the
    covariance of ``p^S`` (all components by default). OU: ``t_S = 1/2 log Lambda`` (Biroli et al. 2024);
    other VP schedules via :func:`diffsim.processes.alpha_bar_to_time` (VE processes have no speciation time
    in this sense: ``TypeError``). ``Lambda <= 1`` gives ``0``.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        group: the group ``S``: component indices or a boolean mask of shape ``(K,)``;
            ``None`` (default) uses all components.
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


def two_gaussian_cloning(
    m_norm: float, sigma2: float, t: ArrayOrSequence, process: AbstractProcess
) -> np.ndarray:
    r"""Biroli et al.'s cloning curve for ``1/2 N(+m, sigma^2 I) + 1/2 N(-m, sigma^2 I)``:

        phi(t) = 1/2 int (G_+^2 + G_-^2) / (G_+ + G_-) dx,   G_± = N(± alpha_t |m|, Gamma_t),
        Gamma_t = alpha_t^2 sigma^2 + sigma_t^2,

    the probability that two clones branched at ``t`` end in the same component (1-D trapezoid quadrature).

    Args:
        m_norm: ``|m|``, the distance of each mean from the origin.
        sigma2: ``sigma^2``, the variance of each component.
        t: a forward time or a 1-D array of times, valid for ``process``.
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).

    Returns:
        ``phi(t)``: a float for a scalar ``t``, else an array shaped like ``t``.
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
    t: ArrayOrSequence,
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

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        t: a forward time or a 1-D array of times (0 allowed).
        groups: a partition of the components: a list of disjoint groups (indices or masks) covering
            every component; ``None`` makes each component its own group.
        key: PRNG key for the stratified samples; ``None`` uses ``jax.random.key(0)``.
        n_samples: Monte Carlo sample size (at least 8), shared by all times.

    Returns:
        ``(phi, stderr)``, each of shape ``(n,)`` for ``n`` times.
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
    t: ArrayOrSequence,
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

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        t: a branching time or a 1-D array of them, each above ``t_end``.
        groups: a partition of the components: a list of disjoint groups (indices or masks) covering
            every component; ``None`` makes each component its own group.
        key: PRNG key (folded with the index of each time).
        n: number of branched states per time (at least 2).
        method: sampler method name for continuing the clones (default ``"euler_maruyama"``).
        n_steps: reverse steps from ``t`` to ``t_end``.
        t_end: end time of the clones; ``None`` uses ``process.t_min``.

    Returns:
        ``(phi, stderr)``, each of shape ``(n_times,)``.
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
