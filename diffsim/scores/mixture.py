r"""Gaussian mixtures with exact diffused scores, densities, Hessians and posteriors.

A Gaussian mixture stays a Gaussian mixture under any process of :mod:`diffsim.processes`:

    p_t(x) = \sum_k w_k N(x; alpha_t mu_k, C_k(t)),     C_k(t) = alpha_t^2 Sigma_k + sigma_t^2 I.

Each covariance is stored in eigen form ``Sigma_k = U_k diag(lambda_k) U_k^T`` so that ``C_k(t) = U_k
diag(alpha_t^2 lambda_k + sigma_t^2) U_k^T`` is inverted for free at every ``t`` (no Cholesky per step;
the trick used by Wang & Vastola's closed-form GMM scores). With ``z_k = U_k^T (x - alpha_t mu_k)`` and
``c_k = alpha_t^2 lambda_k + sigma_t^2``:

    log N_k(x)  = -1/2 sum_j z_kj^2 / c_kj - 1/2 sum_j log c_kj - d/2 log(2 pi),
    r_k(x)      = softmax_k(log w_k + log N_k(x))                    (posterior over components),
    s_k(x)      = -U_k (z_k / c_k) = -C_k^{-1}(x - alpha_t mu_k),
    score       = sum_k r_k s_k,
    Hessian     = sum_k r_k (s_k - score)(s_k - score)^T - sum_k r_k C_k^{-1},
    Laplacian   = sum_k r_k (|s_k - score|^2 - tr C_k^{-1})

(the centred forms of ``sum_k r_k (s_k s_k^T - C_k^{-1}) - score score^T``, which cancel catastrophically in
float32 where ``|s_k|`` is large).

All are computed with a log-sum-exp and no autodiff through the density. Spherical and diagonal
covariances skip the rotations entirely.

**Matrix form (speed).** ``score`` and ``posterior`` are written so that, under ``vmap`` over particles, every
``O(K d)`` contraction is a matrix product with the (unbatched) parameter matrices rather than an
elementwise ``(N, K, d)`` tensor (XLA turns a vector-matrix product with a batched vector into one GEMM).
With the centre ``m = sum_k w_k mu_k``, ``y = x - alpha_t m`` and ``nu_k = mu_k - m`` (so
``x - alpha_t mu_k = y - alpha_t nu_k``), for spherical / diagonal covariances with precisions
``P_kj = 1 / c_kj``:

    quad_k = (y * y) . P_k - 2 alpha_t y . (nu_k * P_k) + alpha_t^2 nu_k . (nu_k * P_k),
    score  = -y * (r . P) + alpha_t r . (nu * P),

and for full covariances ``z_k = U_k^T y - alpha_t U_k^T nu_k`` is one ``(d) x (d, K d)`` product and the
score ``-sum_k U_k (r_k z_k / c_k)`` another. Centring keeps the expanded square accurate: its rounding
error is ``eps |y|^2 / c`` with ``|y|`` the distance to the mixture centre, the same order as the error of the
direct form in the region where several responsibilities are non-negligible. ``log_prob``,
``component_log_prob``, ``hessian`` and ``laplacian`` keep the direct residual form, which is accurate also
right at a mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .. import _checks
from .._promotion import common_dtype
from .._types import ArrayOrSequence
from .._validation import as_float_array, check_key, check_point, check_positive_int, is_concrete
from ..processes import VP, AbstractProcess
from ._base import AbstractAnalyticScore


__all__ = ["GaussianMixture"]

CovType = Literal["spherical", "diag", "full"]
_WEIGHT_TOL = 1e-5


def _mm(a, b):
    """Matrix product at full float precision (no TF32 on GPUs: the expanded squares need every bit)."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _standardise_covs(
    covs: ArrayOrSequence, k: int, d: int, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray | None, CovType]:
    """Return ``(eigvals (K, d), eigvecs (K, d, d) or None, cov_type)`` from any accepted form.

    ``dtype`` is the storage dtype: eigenvalues that underflow (below its smallest normal number) or
    overflow in it are rejected, since they would be stored as 0 or inf and give NaN scores."""
    if isinstance(covs, (str, bytes)) or covs is None:
        raise TypeError(f"`covs` must be an array of numbers, got {type(covs).__name__}.")
    if np.iscomplexobj(covs):
        raise TypeError("`covs` must be real, got complex values (the imaginary part would be lost).")
    try:
        c = np.asarray(covs, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`covs` must be an array of numbers, got {type(covs).__name__}.") from err
    if not np.all(np.isfinite(c)):
        raise ValueError("`covs` contains non-finite values (NaN or inf).")
    if c.ndim == 0:
        vals, vecs, kind = np.full((k, d), float(c)), None, "spherical"
    elif c.ndim == 1 and c.shape == (k,):
        vals, vecs, kind = np.repeat(c[:, None], d, axis=1), None, "spherical"
    elif c.ndim == 2 and c.shape == (k, d):
        vals, vecs, kind = c.copy(), None, "diag"
    elif c.ndim == 3 and c.shape == (k, d, d):
        if not np.allclose(c, np.swapaxes(c, 1, 2), rtol=1e-6, atol=1e-9):
            raise ValueError("`covs` must be symmetric matrices.")
        sym = 0.5 * (c + np.swapaxes(c, 1, 2))
        vals, vecs = np.linalg.eigh(sym)
        kind = "full"
    else:
        raise ValueError(
            f"`covs` must be a scalar, shape (K,)=({k},), (K, d)=({k}, {d}) or (K, d, d)=({k}, {d}, {d}); "
            f"got shape {c.shape}."
        )
    if np.any(vals <= 0):
        bad = int(np.argwhere(vals <= 0)[0][0])
        raise ValueError(
            f"`covs` must be positive definite: component {bad} has eigenvalue {vals.min():.3g} <= 0."
        )
    info = np.finfo(dtype)
    if np.any(vals < info.tiny) or np.any(vals > info.max):
        lo, hi = float(vals.min()), float(vals.max())
        raise ValueError(
            f"`covs` has eigenvalues in [{lo:.3g}, {hi:.3g}], outside the normal range of the storage dtype "
            f"{np.dtype(dtype).name} ([{info.tiny:.3g}, {info.max:.3g}]): they would be stored as 0 or inf "
            "and give NaN scores. Rescale the data or use float64."
        )
    return vals, vecs, kind


_REFINED_COMPONENTS = 4
_REFINE_LOGIT_ERROR = 1e-2


def _needs_refinement(weights, means, eigvals, dtype) -> bool:
    """Whether the expanded square can lose more than ``_REFINE_LOGIT_ERROR`` of a logit to cancellation.

    With ``y ~ a nu_k`` the expanded terms are of size ``a^2 |nu|^2 P`` with ``a <= 1`` and
    ``P = 1 / (a^2 lambda + sigma^2) <= 1 / min(lambda_min, 1)`` (VP and VE), so the rounding error of a logit
    is at most about ``2 eps |nu|_max^2 / min(lambda_min, 1)``. Below the threshold (every float64 mixture
    of sensible scale, and float32 mixtures whose centred means are not hundreds of standard deviations
    long) :func:`_refine_top_logits` is skipped: it costs 2 to 4 times the throughput of a sampling step.
    Traced arguments cannot be inspected and always refine.
    """
    if not (is_concrete(weights) and is_concrete(means) and is_concrete(eigvals)):
        return True
    w, mu, lam = (np.asarray(v, dtype=np.float64) for v in (weights, means, eigvals))
    nu2 = np.max(np.sum((mu - w @ mu) ** 2, axis=-1))
    bound = 2.0 * float(jnp.finfo(dtype).eps) * nu2 / min(float(np.min(lam)), 1.0)
    return bool(bound > _REFINE_LOGIT_ERROR)


def _refine_top_logits(logits, const, y, a, prec, nu):
    """Recompute, in the direct residual form, the logits of the ``min(K, 4)`` largest components.

    The expanded square ``|y|^2 P - 2 a y.(nu P) + a^2 |nu|^2 P`` cancels when ``|y| ~ a |nu|`` is large (in
    float32 a logit error of ~0.02 for means at distance 400), but the softmax is only sensitive to the
    logits near its maximum. Recomputing those exactly (one ``(m, d)`` residual per point) makes the
    responsibilities as accurate as the direct form; the others keep a relative error that cannot matter.
    Used only where :func:`_needs_refinement` says the cancellation can matter.
    """
    m = min(logits.shape[0], _REFINED_COMPONENTS)
    _, idx = jax.lax.top_k(logits, m)
    resid = y[None, :] - a * nu[idx]
    exact = const[idx] - 0.5 * jnp.sum(resid * resid * prec[idx], axis=-1)
    return logits.at[idx].set(exact)


class GaussianMixture(AbstractAnalyticScore):
    r"""Mixture ``sum_k w_k N(mu_k, Sigma_k)`` at ``t = 0``, diffused exactly by ``process``.

    Args:
        weights: shape ``(K,)``, non-negative, summing to one.
        means: shape ``(K, d)``.
        covs: a scalar (shared ``sigma^2 I``, default 1), shape ``(K,)`` (per-component ``sigma_k^2 I``),
            ``(K, d)`` (diagonals) or ``(K, d, d)`` (full, symmetric positive definite).
        process: the forward process; ``None`` takes :meth:`VP.ou`.
        labels: optional integer label per component ``(K,)`` (default ``0..K-1``), used by :meth:`condition`.

    The methods :meth:`score`, :meth:`log_prob`, :meth:`hessian`, :meth:`laplacian`, :meth:`posterior`
    act on one point ``x`` of shape ``(d,)`` at any time ``t``; :meth:`sample` draws labelled points.
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    eigvals: Float[Array, "K d"]
    eigvecs: Float[Array, "K d d"] | None
    labels: Int[Array, " K"]
    process: AbstractProcess
    cov_type: str = eqx.field(static=True)
    refine_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        weights: ArrayOrSequence,
        means: ArrayOrSequence,
        covs: ArrayOrSequence = 1.0,
        *,
        process: AbstractProcess | None = None,
        labels: ArrayOrSequence | None = None,
    ):
        means_arr = as_float_array(means, "means", ndim=2)
        k, d = means_arr.shape
        if k < 1 or d < 1:
            raise ValueError(f"`means` must have shape (K, d) with K, d >= 1, got {means_arr.shape}.")
        w = as_float_array(weights, "weights", ndim=1)
        if w.shape != (k,):
            raise ValueError(f"`weights` must have shape (K,)=({k},) to match `means`, got {w.shape}.")
        if is_concrete(w):
            wn = np.asarray(w, dtype=float)
            if np.any(wn < 0):
                raise ValueError(f"`weights` must be non-negative, got {wn}.")
            if abs(wn.sum() - 1.0) > _WEIGHT_TOL:
                raise ValueError(f"`weights` must sum to one, got sum {wn.sum():.8g}.")
        if process is None:
            process = VP.ou()
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
        if is_concrete(covs):
            vals, vecs, kind = _standardise_covs(covs, k, d, means_arr.dtype)
            self.eigvals = jnp.asarray(vals, dtype=means_arr.dtype)
            self.eigvecs = None if vecs is None else jnp.asarray(vecs, dtype=means_arr.dtype)
        else:  # traced covariances (e.g. built inside jit): full matrices only, no checks possible
            c = jnp.asarray(covs)
            if c.ndim != 3:
                raise ValueError("Traced `covs` must be full (K, d, d) matrices.")
            vals_t, vecs_t = jnp.linalg.eigh(c)
            self.eigvals, self.eigvecs, kind = vals_t, vecs_t, "full"
        if labels is None:
            lab = jnp.arange(k)
        else:
            lab = jnp.asarray(labels)
            if lab.shape != (k,) or not jnp.issubdtype(lab.dtype, jnp.integer):
                raise ValueError(
                    f"`labels` must be an integer array of shape ({k},), got {lab.dtype}{lab.shape}."
                )
        if not (is_concrete(w) and is_concrete(means_arr)):  # built under jit: guards in checked mode
            w = _checks.check_weights(w, "weights")
            means_arr = _checks.check_finite(means_arr, "means")
        self.weights = w.astype(means_arr.dtype)
        self.means = means_arr
        self.labels = lab
        self.process = process
        self.cov_type = kind
        self.refine_logits = _needs_refinement(self.weights, self.means, self.eigvals, means_arr.dtype)

    # --- shape --------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def covs(self) -> Float[Array, "K d d"]:
        """Full covariance matrices ``Sigma_k`` at ``t = 0``."""
        if self.eigvecs is None:
            return jax.vmap(jnp.diag)(self.eigvals)
        return jnp.einsum("kij,kj,klj->kil", self.eigvecs, self.eigvals, self.eigvecs)

    def covs_at(self, t: ArrayLike) -> Float[Array, "K d d"]:
        """Diffused covariances ``C_k(t) = alpha_t^2 Sigma_k + sigma_t^2 I``."""
        t = self.process.check_time(t)
        a2 = self.process.alpha(t) ** 2
        return a2 * self.covs + self.process.sigma2(t) * jnp.eye(self.dim)

    def means_at(self, t: ArrayLike) -> Float[Array, "K d"]:
        """Diffused means ``alpha_t mu_k``."""
        t = self.process.check_time(t)
        return self.process.alpha(t) * self.means

    # --- core computation ---------------------------------------------------------------------------
    def _check_args(self, t: ArrayLike, x: Float[Array, " d"]):
        """Public-boundary checks of one-point methods: ``x`` of shape ``(d,)`` (at trace time), ``t`` in
        ``[0, t_max]`` when concrete; both guarded in checked mode (:mod:`diffsim._checks`)."""
        check_point(x, self.dim)
        t = self.process.check_time(t)
        x = _checks.check_particles(x)
        return t, x.astype(common_dtype(x, self.means))

    def _rotate_in(self, v: Float[Array, "K d"]) -> Float[Array, "K d"]:
        """``U_k^T v_k`` for each component (identity for axis-aligned covariances)."""
        if self.eigvecs is None:
            return v
        return jnp.einsum("kij,ki->kj", self.eigvecs, v)

    def _rotate_out(self, v: Float[Array, "K d"]) -> Float[Array, "K d"]:
        """``U_k v_k`` for each component."""
        if self.eigvecs is None:
            return v
        return jnp.einsum("kij,kj->ki", self.eigvecs, v)

    def _components(self, t: ArrayLike, x: Float[Array, " d"]):
        """Per-component whitened residuals, variances and log-densities at ``(t, x)``."""
        t = jnp.asarray(t, dtype=self.means.dtype)
        a = self.process.alpha(t)
        s2 = self.process.sigma2(t)
        c = a**2 * self.eigvals + s2  # (K, d)
        z = self._rotate_in(x[None, :] - a * self.means)  # (K, d)
        log_norm = -0.5 * jnp.sum(z**2 / c, axis=-1) - 0.5 * jnp.sum(jnp.log(c), axis=-1)
        log_norm = log_norm - 0.5 * self.dim * math.log(2 * math.pi)
        return z, c, log_norm

    def component_log_prob(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " K"]:
        """``log N(x; alpha_t mu_k, C_k(t))`` for every component."""
        t, x = self._check_args(t, x)
        return self._components(t, x)[2]

    def log_prob(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        """``log p_t(x)`` by log-sum-exp over components."""
        t, x = self._check_args(t, x)
        _, _, log_norm = self._components(t, x)
        return jax.nn.logsumexp(log_norm, b=self.weights)

    def posterior(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " K"]:
        """Responsibilities ``r_k = P(component k | x_t = x)`` (matrix form, stable softmax)."""
        t, x = self._check_args(t, x)
        return jax.nn.softmax(self._matrix_logits(t, x)[0])

    def group_posterior(
        self, t: ArrayLike, x: Float[Array, " d"], group: Bool[Array, " K"]
    ) -> Float[Array, ""]:
        """``P(component in group | x_t = x)`` for a boolean mask over components."""
        return jnp.sum(jnp.where(group, self.posterior(t, x), 0.0))

    def _matrix_logits(self, t: ArrayLike, x: Float[Array, " d"]):
        """Matrix-form ``log w_k + log N_k(x)`` and the pieces the score needs (see the module docstring).

        Returns ``(logits (K,), y (d,), a, prec (K, d), nu (K, d), z (K, d) or None)``; ``z`` only for full
        covariances. Only ``y``, ``z`` and the outputs depend on ``x``: under ``vmap`` the rest is computed
        once.
        """
        t = jnp.asarray(t, dtype=self.means.dtype)
        a = self.process.alpha(t)
        s2 = self.process.sigma2(t)
        c = a**2 * self.eigvals + s2  # (K, d)
        prec = 1.0 / c
        m = self.weights @ self.means  # (d,)
        nu = self.means - m[None, :]  # (K, d)
        y = x - a * m
        d = self.dim
        const = jnp.log(self.weights) - 0.5 * jnp.sum(jnp.log(c), axis=-1) - 0.5 * d * math.log(2 * math.pi)
        if self.eigvecs is None:
            if self.cov_type == "spherical":
                p = prec[:, 0]
                quad = p * (jnp.sum(y * y) - 2.0 * a * _mm(y, nu.T) + a**2 * jnp.sum(nu * nu, axis=-1))
            else:
                nu_p = nu * prec
                quad = _mm(y * y, prec.T) - 2.0 * a * _mm(y, nu_p.T) + a**2 * jnp.sum(nu * nu_p, axis=-1)
            logits = const - 0.5 * quad
            if self.refine_logits:
                logits = _refine_top_logits(logits, const, y, a, prec, nu)
            return logits, y, a, prec, nu, None
        k = self.n_components
        u_flat = jnp.transpose(self.eigvecs, (1, 0, 2)).reshape(d, k * d)  # [i, k d + j] = U_k[i, j]
        u_nu = jnp.einsum("kij,ki->kj", self.eigvecs, nu)  # U_k^T nu_k
        z = _mm(y, u_flat).reshape(k, d) - a * u_nu
        quad = jnp.sum(z * z * prec, axis=-1)
        return const - 0.5 * quad, y, a, prec, nu, z

    def _score_parts(self, t, x):
        z, c, log_norm = self._components(t, x)
        r = jax.nn.softmax(log_norm + jnp.log(self.weights))
        s_rot = -z / c  # component scores in each component's eigenbasis
        return r, s_rot, c

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""``\nabla log p_t(x) = sum_k r_k (-C_k^{-1}(x - alpha_t mu_k))`` (matrix form, stable softmax)."""
        t, x = self._check_args(t, x)
        logits, y, a, prec, nu, z = self._matrix_logits(t, x)
        r = jax.nn.softmax(logits)
        if z is None:
            if self.cov_type == "spherical":
                rp = r * prec[:, 0]
                return a * _mm(rp, nu) - y * jnp.sum(rp)
            return a * _mm(r, nu * prec) - y * _mm(r, prec)
        k, d = self.n_components, self.dim
        u_flat = jnp.transpose(self.eigvecs, (1, 0, 2)).reshape(d, k * d)
        return -_mm((r[:, None] * z * prec).reshape(k * d), u_flat.T)

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        r"""``\nabla^2 log p_t = sum_k r_k (s_k - s)(s_k - s)^T - sum_k r_k C_k^{-1}`` (closed form).

        The centred form equals ``sum_k r_k (s_k s_k^T - C_k^{-1}) - s s^T`` but does not cancel: near a
        tight mode far from the origin ``|s_k|^2`` is huge and the uncentred form loses everything in
        float32 (``H00 = 0`` against ``-9.1e5`` at ``x = (10, -3)``, ``t = 1e-6``). ``sum_k r_k D_k D_k^T``
        with ``D_k = s_k - s`` is one ``(d, K) x (K, d)`` product and, for axis-aligned covariances,
        ``sum_k r_k C_k^{-1} = diag(r . (1/c))``, so no ``(K, d, d)`` array is formed per point (full
        covariances need their ``K`` rotations)."""
        t, x = self._check_args(t, x)
        r, s_rot, c = self._score_parts(t, x)
        s_k = self._rotate_out(s_rot)  # (K, d)
        dev = s_k - (r @ s_k)[None, :]
        second = (dev.T * r[None, :]) @ dev
        if self.eigvecs is None:
            prec = jnp.diag(r @ (1.0 / c))
        else:
            prec = jnp.einsum("k,kij,kj,klj->il", r, self.eigvecs, 1.0 / c, self.eigvecs)
        return second - prec

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        r"""``\Delta log p_t = sum_k r_k (|s_k - s|^2 - tr C_k^{-1})`` (closed form, centred as
        :meth:`hessian`: the uncentred ``sum_k r_k |s_k|^2 - |s|^2`` cancels in float32 far from the
        origin)."""
        t, x = self._check_args(t, x)
        r, s_rot, c = self._score_parts(t, x)
        s_k = self._rotate_out(s_rot)
        dev = s_k - (r @ s_k)[None, :]
        per = jnp.sum(dev**2, axis=-1) - jnp.sum(1.0 / c, axis=-1)
        return jnp.sum(r * per)

    # --- sampling -----------------------------------------------------------------------------------
    def sample(
        self, key: jax.Array, n: int, t: ArrayLike | None = None
    ) -> tuple[Float[Array, "n d"], Int[Array, " n"]]:
        """Draw ``n`` points of ``p_t`` (``p_0`` by default) with their component indices.

        Returns ``(x, components)``; the component's label is ``self.labels[components]``.
        """
        key = check_key(key)
        n = check_positive_int(n, "n")
        if t is not None:
            self.process.check_time(t)
        k_comp, k_noise = jr.split(key)
        comp = jr.choice(k_comp, self.n_components, (n,), p=self.weights)
        z = jr.normal(k_noise, (n, self.dim), dtype=self.means.dtype)
        if t is None:
            a, s2 = 1.0, 0.0
        else:
            a, s2 = self.process.alpha(t), self.process.sigma2(t)
        scale = jnp.sqrt(a**2 * self.eigvals[comp] + s2)  # (n, d)
        y = scale * z
        if self.eigvecs is not None:
            y = jnp.einsum("nij,nj->ni", self.eigvecs[comp], y)
        return a * self.means[comp] + y, comp

    # --- sub-mixtures -------------------------------------------------------------------------------
    def restrict(self, components: Sequence[int] | ArrayLike) -> GaussianMixture:
        """The sub-mixture on ``components`` (indices or a boolean mask), weights renormalised.

        Python-level (changes K); call it outside ``jit``.
        """
        idx = self._component_indices(components, "components")
        w = self.weights[idx]
        total = float(jnp.sum(w))
        if total <= 0:
            raise ValueError("The selected components have zero total weight.")
        # Keep the (already validated) eigen-decomposition: rebuilding full covariances as U diag U^T in
        # float32 and re-checking their symmetry would reject valid sub-mixtures.
        if self.eigvecs is None:
            sub = eqx.tree_at(
                lambda g: (g.weights, g.means, g.eigvals, g.labels),
                self,
                (w / total, self.means[idx], self.eigvals[idx], self.labels[idx]),
            )
        else:
            sub = eqx.tree_at(
                lambda g: (g.weights, g.means, g.eigvals, g.eigvecs, g.labels),
                self,
                (w / total, self.means[idx], self.eigvals[idx], self.eigvecs[idx], self.labels[idx]),
            )
        # the sub-mixture is recentred, so its cancellation bound is its own (a static field: set on the copy)
        object.__setattr__(
            sub, "refine_logits", _needs_refinement(sub.weights, sub.means, sub.eigvals, sub.means.dtype)
        )
        return sub

    def condition(self, label: int) -> GaussianMixture:
        """The mixture conditioned on ``labels == label`` (a class-conditional distribution)."""
        lab = np.asarray(self.labels)
        mask = lab == int(label)
        if not mask.any():
            raise ValueError(f"No component has label {label}; labels are {sorted(set(lab.tolist()))}.")
        return self.restrict(np.flatnonzero(mask))

    def label_weights(self) -> dict[int, float]:
        """Total weight of each label."""
        lab = np.asarray(self.labels)
        w = np.asarray(self.weights)
        return {int(v): float(w[lab == v].sum()) for v in np.unique(lab)}

    def _component_indices(self, components, name: str) -> np.ndarray:
        arr = np.asarray(components)
        if arr.dtype == bool:
            if arr.shape != (self.n_components,):
                raise ValueError(f"Boolean `{name}` must have shape ({self.n_components},), got {arr.shape}.")
            arr = np.flatnonzero(arr)
        else:
            arr = np.atleast_1d(arr)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"`{name}` must hold integer component indices, got {arr.dtype}.")
        if arr.size == 0:
            raise ValueError(f"`{name}` must select at least one component.")
        if np.any(arr < 0) or np.any(arr >= self.n_components):
            raise ValueError(f"`{name}` indices must lie in [0, {self.n_components}), got {arr.tolist()}.")
        if len(set(arr.tolist())) != arr.size:
            raise ValueError(f"`{name}` contains repeated indices: {arr.tolist()}.")
        return arr.astype(int)

    def group_mask(self, components: Sequence[int] | ArrayLike) -> Bool[Array, " K"]:
        """Boolean mask over components from indices (validated)."""
        idx = self._component_indices(components, "components")
        return jnp.zeros(self.n_components, bool).at[idx].set(True)

    def __repr__(self) -> str:
        params = f"K={self.n_components}, d={self.dim}, covs={self.cov_type}"
        return f"GaussianMixture({params}, process={self.process!r})"
