r"""Stratified exact samples of a mixture's forward marginals, stratified estimates with standard
errors, fixed-shape row/time blocks (one compilation per mixture) and Gauss-Hermite nodes."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array

from ...scores.mixture import GaussianMixture


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


class _Strata(eqx.Module):
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
