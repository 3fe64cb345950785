r"""Validation of mixtures, component groups, tolerances and times; sub-mixtures; the exact
dimension reduction for shared spherical covariances."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..._validation import check_probability
from ...processes import AbstractProcess
from ...scores.mixture import GaussianMixture


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


def _check_sampler(sampler: str) -> str:
    if sampler not in ("sde", "ode"):
        raise ValueError(
            f"`sampler` must be 'sde' (reverse SDE) or 'ode' (probability-flow ODE), got {sampler!r}."
        )
    return sampler


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

    Args:
        gm: the mixture to reduce.
        tol: relative threshold on the singular values of the ``(K, d)`` means matrix (relative to the
            largest, or to 1 if that is smaller) below which a direction is dropped.
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
