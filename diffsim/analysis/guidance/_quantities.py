"""Per-problem quantities of a guided Gaussian-mixture problem: the class-separating direction, the clean
classifier confidence, sample statistics along the direction, pathwise monotonicity, and the exact 1-D
reduction of projectable problems."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import as_float_array
from ...scores.guidance import MixtureClassifier
from ...scores.mixture import GaussianMixture
from ..entropy import (
    gaussian_marginal_entropy,
)


def _check_problem(mixture: Any, label: Any) -> MixtureClassifier:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"`mixture` must be a GaussianMixture, got {type(mixture).__name__}.")
    clf = MixtureClassifier(mixture)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"`label` must be an integer class label, got {type(label).__name__}.")
    clf.check_label(jnp.asarray(int(label)))
    return clf


def class_direction(mixture: GaussianMixture, label: int) -> np.ndarray:
    r"""Unit vector ``u`` from the centroid of the other classes to the centroid of class ``label``:
    ``u \propto sum_{l(k)=y} pi_k mu_k / sum_{l(k)=y} pi_k - sum_{l(k)!=y} pi_k mu_k / sum_{l(k)!=y} pi_k``.
    For two classes it is the direction separating them; in 1-D it is ``+1`` or ``-1``. When the centroids
    coincide (a target midway between others) it is the leading axis of ``sum_{l(k)!=y} pi_k (mu_k - c_y)
    (mu_k - c_y)^T``, signed so that its first non-zero coordinate is positive (``+1`` in 1-D).

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.

    Returns:
        ``u``, a float64 unit vector of shape ``(d,)``; ``ValueError`` for a single-class mixture or when all
        components share one mean.
    """
    _check_problem(mixture, label)
    lab = np.asarray(mixture.labels)
    w = np.asarray(mixture.weights, float)
    mu = np.asarray(mixture.means, float)
    inside = lab == int(label)
    if inside.all():
        raise ValueError("The mixture has a single class: no class-separating direction.")
    c_in = (w[inside] @ mu[inside]) / w[inside].sum()
    c_out = (w[~inside] @ mu[~inside]) / w[~inside].sum()
    u = c_in - c_out
    norm = np.linalg.norm(u)
    if norm < 1e-9 * max(1.0, np.abs(mu).max()):
        # centroids coincide (e.g. a target between two others): the main axis along which the other
        # components sit around the target, sign fixed by the first non-zero coordinate
        diff = mu[~inside] - c_in
        scatter = (w[~inside, None] * diff).T @ diff
        vals, vecs = np.linalg.eigh(scatter)
        u = vecs[:, -1]
        if vals[-1] <= 0:
            raise ValueError("All components share one mean: no class-separating direction.")
        u = u * np.sign(u[np.flatnonzero(np.abs(u) > 1e-12)[0]])
        return u
    return u / norm


def clean_confidence(mixture: GaussianMixture, label: int, x: Float[Array, "N d"]) -> Float[Array, " N"]:
    """``log p_0(y | x)`` of the clean (``t = 0``) classifier for each row of ``x`` (exponentiate for the
    confidence; log form avoids overflow in ``1/p``).

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        x: points, shape ``(N, d)``.
    """
    clf = _check_problem(mixture, label)
    x = as_float_array(x, "x", ndim=2)
    return _log_confidence(clf, jnp.asarray(int(label)), x)


@eqx.filter_jit
def _log_confidence(clf, y, x):
    return jax.vmap(lambda z: clf.log_prob(0.0, z, y))(x)


def sample_statistics(
    mixture: GaussianMixture, label: int, x: ArrayLike, direction: ArrayLike | None = None
) -> dict[str, float]:
    r"""``confidence = E[p_0(y|X)]``, ``inv_confidence = E[1/p_0(y|X)]``, ``mean_u``/``var_u`` of ``<X, u>``
    from samples ``x`` (``u`` = :func:`class_direction` unless given). Computed in float64 on the host.

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        x: samples, shape ``(N, d)``.
        direction: the direction ``u``, shape ``(d,)`` (used as given, not normalised); ``None`` uses
            :func:`class_direction`.

    Returns:
        ``{"confidence", "inv_confidence", "mean_u", "var_u"}`` as floats (``var_u`` with ``ddof=0``).
    """
    u = class_direction(mixture, label) if direction is None else np.asarray(direction, float)
    logp = np.asarray(clean_confidence(mixture, label, x), dtype=np.float64)
    proj = np.asarray(x, dtype=np.float64) @ u
    return {
        "confidence": float(np.mean(np.exp(logp))),
        "inv_confidence": float(np.mean(np.exp(-logp))),
        "mean_u": float(proj.mean()),
        "var_u": float(proj.var()),
    }


def pathwise_monotone_fraction(values: ArrayLike, *, atol: float = 1e-6) -> float:
    """Fraction of particles whose value is non-decreasing along the strength axis: ``values`` has shape
    ``(W, N)`` with strengths in increasing order; a decrease smaller than ``atol`` is tolerated.

    Args:
        values: per-particle values, shape ``(W, N)`` with ``W >= 2`` strengths (rows) in increasing order.
        atol: the largest decrease between consecutive strengths still counted as non-decreasing.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 2:
        raise ValueError(f"`values` must have shape (W >= 2, N), got {v.shape}.")
    ok = np.all(np.diff(v, axis=0) >= -atol, axis=0)
    return float(ok.mean())


# =====================================================================================================
# projection to 1-D
# =====================================================================================================
class ProjectedProblem(eqx.Module):
    """A guided mixture problem reduced to the class-separating line (see the module docstring).

    Attributes:
        mixture: the 1-D mixture of ``<X, u>`` (same weights, labels and process).
        direction: ``u``, the unit direction, shape ``(d,)``.
        offset: ``c_perp``, the part of every mean orthogonal to ``u``, shape ``(d,)`` (``(0,)`` for a
            1-D mixture that is not spherical).
        orth_var: the shared variance of the orthogonal coordinates (0 when there are none).
        orth_dim: ``d - 1``, the number of orthogonal coordinates.
    """

    mixture: GaussianMixture
    direction: np.ndarray
    offset: np.ndarray
    orth_var: float
    orth_dim: int

    def orth_entropy(self, t_end: float) -> float:
        """Entropy of the ``d - 1`` orthogonal coordinates at the output (``t_end``), exact Gaussian."""
        if self.orth_dim == 0:
            return 0.0
        return float(gaussian_marginal_entropy(self.mixture.process, self.orth_var, t_end, dim=self.orth_dim))


def projected_problem(
    mixture: GaussianMixture, label: int, direction: ArrayLike | None = None, *, atol: float = 1e-9
) -> ProjectedProblem | None:
    """The 1-D reduction when it is exact (shared spherical covariance, means ``c + m_k u``), else ``None``.
    In 1-D every mixture is its own projection (coordinate ``x`` itself, ``direction = +1``).

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        direction: the line to project on, shape ``(d,)`` (normalised here); ``None`` uses
            :func:`class_direction`. Ignored in 1-D.
        atol: absolute tolerance for the covariances to count as one shared ``s^2 I``.
    """
    _check_problem(mixture, label)
    d = mixture.dim
    u = (
        np.ones(1)
        if d == 1
        else (
            class_direction(mixture, label)
            if direction is None
            else np.asarray(direction, float) / np.linalg.norm(direction)
        )
    )
    ev = np.asarray(mixture.eigvals, float)
    if mixture.cov_type != "spherical" or not np.allclose(ev, ev.flat[0], rtol=0, atol=atol):
        if d == 1:
            return ProjectedProblem(mixture, u, np.zeros(0), 0.0, 0)
        return None
    mu = np.asarray(mixture.means, float)
    m = mu @ u
    resid = mu - np.outer(m, u)
    if not np.allclose(resid, resid[0], rtol=0, atol=1e-7 * max(1.0, np.abs(mu).max())):
        return None
    proj = GaussianMixture(
        mixture.weights,
        jnp.asarray(m[:, None], mixture.means.dtype),
        float(ev.flat[0]),
        process=mixture.process,
        labels=mixture.labels,
    )
    return ProjectedProblem(proj, u, resid[0], float(ev.flat[0]), d - 1)
