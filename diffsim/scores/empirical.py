r"""The exact score of a smoothed finite data set: the memorising optimum of denoising score matching.

For data ``{x_i}_{i=1..M}`` (optionally smoothed at ``t = 0`` by ``N(0, b^2 I)``, ``b`` the bandwidth) the
diffused empirical density is the equal-weight isotropic mixture

    p_t(x) = (1/M) sum_i N(x; alpha_t x_i, c_t I),     c_t = alpha_t^2 b^2 + sigma_t^2,

with responsibilities ``gamma_i = softmax_i(-|x - alpha_t x_i|^2 / (2 c_t))`` and

    score     = (alpha_t m(x) - x) / c_t,              m(x) = sum_i gamma_i x_i,
    Hessian   = (alpha_t^2 Cov_gamma[x_i] - c_t I) / c_t^2,
    Laplacian = (alpha_t^2 tr Cov_gamma[x_i] - d c_t) / c_t^2.

(He, Qiu & Tao 2026, the "smoothed empirical distribution" whose log-density ridge they study; Karras et
al. 2022, eq. 57, the "ideal denoiser".) With ``b = 0`` the density is singular at ``t = 0``: evaluate at
``t > 0``.

For large ``M`` the sums run in chunks with an online log-sum-exp (``chunk_size``), so memory stays
``O(chunk_size * d)`` per point.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .. import _checks
from .._promotion import common_dtype, promote
from .._types import ArrayOrSequence
from .._validation import as_float_array, check_key, check_point, check_positive_int, is_concrete
from ..processes import VP, AbstractProcess
from ._base import AbstractAnalyticScore


__all__ = ["EmpiricalScore"]


class _Moments(eqx.Module):
    """Running log-sum-exp state for a softmax-weighted sum over data points."""

    m: Array  # running max of logits
    z: Array  # sum exp(logit - m)
    s1: Array  # sum exp(logit - m) x_i            (d,)
    s2: Array | None  # centred: sum exp(logit - m) (x_i - mean)(x_i - mean)^T  (d, d), or its trace  ()


class EmpiricalScore(AbstractAnalyticScore):
    r"""Exact score of the diffused empirical distribution of ``data`` (shape ``(M, d)``).

    Args:
        data: the training set, shape ``(M, d)``.
        process: forward process; ``None`` takes :meth:`VP.ou`.
        bandwidth: std ``b >= 0`` of an isotropic Gaussian kernel applied at ``t = 0`` (default 0: the
            memorising score, which is singular at ``t = 0``).
        labels: optional integer label per data point ``(M,)`` (default all 0), for :meth:`condition`.
        chunk_size: process the data in chunks of this many points (online log-sum-exp); ``None`` takes
            all ``M`` at once.
    """

    data: Float[Array, "M d"]
    labels: Int[Array, " M"]
    process: AbstractProcess
    bandwidth: float = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)

    def __init__(
        self,
        data: ArrayOrSequence,
        *,
        process: AbstractProcess | None = None,
        bandwidth: float | ArrayLike = 0.0,
        labels: ArrayOrSequence | None = None,
        chunk_size: int | None = None,
    ):
        arr = as_float_array(data, "data", ndim=2)
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"`data` must be a non-empty (M, d) array, got shape {arr.shape}.")
        if isinstance(bandwidth, (str, bytes, bool)) or bandwidth is None or np.iscomplexobj(bandwidth):
            raise TypeError(f"`bandwidth` must be a real number, got {bandwidth!r}.")
        if np.ndim(bandwidth) != 0:
            raise ValueError(f"`bandwidth` must be a scalar, got shape {np.shape(bandwidth)}.")
        bandwidth = float(bandwidth)
        if bandwidth < 0 or not math.isfinite(bandwidth):
            raise ValueError(f"`bandwidth` must be finite and >= 0, got {bandwidth}.")
        if chunk_size is not None:
            chunk_size = check_positive_int(chunk_size, "chunk_size")
        if process is None:
            process = VP.ou()
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
        if labels is None:
            lab = jnp.zeros(arr.shape[0], dtype=int)
        else:
            lab = jnp.asarray(labels)
            if lab.shape != (arr.shape[0],) or not jnp.issubdtype(lab.dtype, jnp.integer):
                raise ValueError(f"`labels` must be an integer array of shape ({arr.shape[0]},).")
        if not is_concrete(arr):  # built under jit: guarded in checked mode
            arr = _checks.check_finite(arr, "data")
        self.data = arr
        self.labels = lab
        self.process = process
        self.bandwidth = float(bandwidth)
        self.chunk_size = chunk_size

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    @property
    def n_data(self) -> int:
        return self.data.shape[0]

    def _check_args(self, t: ArrayLike, x: Float[Array, " d"]):
        """Public-boundary checks of one-point methods: ``x`` of shape ``(d,)`` (at trace time), ``t`` in
        ``[0, t_max]`` (``(0, t_max]`` with bandwidth 0, where ``p_0`` is singular) when concrete; both
        guarded in checked mode (:mod:`diffsim._checks`)."""
        check_point(x, self.dim)
        if self.bandwidth == 0.0 and is_concrete(t) and np.any(np.asarray(t, dtype=float) <= 0.0):
            raise ValueError(
                "`t` must be > 0 for an EmpiricalScore with bandwidth 0: its density is a sum of point "
                "masses at t = 0 (use a positive `bandwidth` to evaluate at t = 0)."
            )
        t = self.process.check_time(t, allow_zero=self.bandwidth > 0.0)
        x = _checks.check_particles(x)
        return t, x.astype(common_dtype(x, self.data))

    def _c(self, t):
        return self.process.alpha(t) ** 2 * self.bandwidth**2 + self.process.sigma2(t)

    def _logits(self, t, x, data):
        a = self.process.alpha(t)
        return -jnp.sum((x[None, :] - a * data) ** 2, axis=-1) / (2.0 * self._c(t))

    def _moments(self, t, x, second: str | None) -> _Moments:
        """Softmax-weighted zeroth and first moments of the data and (optionally) the CENTRED second moment
        ``sum_i e_i (x_i - mean)(x_i - mean)^T`` (``"full"``) or its trace (``"trace"``), chunked.

        The second moment is accumulated centred (pairwise merging of chunk means and scatters, Chan, Golub
        & LeVeque 1979), never as ``E[x x^T] - E[x] E[x]^T``: that difference cancels catastrophically in
        float32 when the data sit far from the origin compared with their weighted spread."""
        t = jnp.asarray(t, dtype=self.data.dtype)
        m_data, d = self.data.shape
        chunk = self.chunk_size

        def scatter(e, block, mean):
            dev = block - mean[None, :]
            if second == "full":
                return jnp.einsum("m,mi,mj->ij", e, dev, dev)
            return jnp.sum(e * jnp.sum(dev**2, axis=-1))

        if chunk is None or chunk >= m_data:
            logits = self._logits(t, x, self.data)
            mx = jnp.max(logits)
            e = jnp.exp(logits - mx)
            z = jnp.sum(e)
            s1 = e @ self.data
            s2 = None if second is None else scatter(e, self.data, s1 / z)
            return _Moments(mx, z, s1, s2)

        n_chunks = -(-m_data // chunk)
        pad = n_chunks * chunk - m_data
        data = jnp.concatenate([self.data, jnp.zeros((pad, d), self.data.dtype)]).reshape(n_chunks, chunk, d)
        valid = (jnp.arange(n_chunks * chunk) < m_data).reshape(n_chunks, chunk)
        if second == "full":
            s2_0 = jnp.zeros((d, d), self.data.dtype)
        elif second == "trace":
            s2_0 = jnp.zeros((), self.data.dtype)
        else:
            s2_0 = None
        init = _Moments(
            jnp.asarray(-jnp.inf, self.data.dtype),
            jnp.zeros((), self.data.dtype),
            jnp.zeros((d,), self.data.dtype),
            s2_0,
        )

        def body(state: _Moments, inp):
            block, ok = inp
            logits = jnp.where(ok, self._logits(t, x, block), -jnp.inf)
            m_new = jnp.maximum(state.m, jnp.max(logits))
            scale = jnp.exp(state.m - m_new)
            e = jnp.exp(logits - m_new)
            z_old, z_blk = state.z * scale, jnp.sum(e)
            s1_old, s1_blk = state.s1 * scale, e @ block
            s2 = None
            if second is not None:
                # merge the running (mean, scatter) with the block's: scatters add, plus the between term
                # z_a z_b / (z_a + z_b) (mean_b - mean_a)(mean_b - mean_a)^T (zero when either side is empty)
                safe = lambda z: jnp.where(z > 0, z, 1.0)  # noqa: E731
                mean_blk = s1_blk / safe(z_blk)
                delta = mean_blk - s1_old / safe(z_old)
                between = jnp.where((z_old > 0) & (z_blk > 0), z_old * z_blk / safe(z_old + z_blk), 0.0)
                outer = jnp.outer(delta, delta) if second == "full" else jnp.sum(delta**2)
                s2 = state.s2 * scale + scatter(e, block, mean_blk) + between * outer
            return _Moments(m_new, z_old + z_blk, s1_old + s1_blk, s2), None

        out, _ = jax.lax.scan(body, init, (data, valid))
        return out

    # --- interface ----------------------------------------------------------------------------------
    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Posterior mean of ``x_0``; with bandwidth ``b`` it is ``m + alpha b^2 (x - alpha m) / c``."""
        t, x = self._check_args(t, x)
        mom = self._moments(t, x, None)
        m = mom.s1 / mom.z
        if self.bandwidth == 0.0:
            return m
        a, c, m, x = promote(self.process.alpha(t), self._c(t), m, x)
        return m + a * self.bandwidth**2 * (x - a * m) / c

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``(alpha_t m(x) - x) / c_t``."""
        t, x = self._check_args(t, x)
        mom = self._moments(t, x, None)
        a, c, s1, z, x = promote(self.process.alpha(t), self._c(t), mom.s1, mom.z, x)
        return (a * s1 / z - x) / c

    def log_prob(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        """``log p_t(x)`` by (chunked) log-sum-exp."""
        t, x = self._check_args(t, x)
        mom = self._moments(t, x, None)
        c, m, z = promote(self._c(t), mom.m, mom.z)
        return m + jnp.log(z) - math.log(self.n_data) - 0.5 * self.dim * jnp.log(2 * jnp.pi * c)

    def posterior(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " M"]:
        """Responsibilities ``gamma_i`` over the data points (not chunked: returns ``M`` numbers)."""
        t, x = self._check_args(t, x)
        return jax.nn.softmax(self._logits(jnp.asarray(t, self.data.dtype), x, self.data))

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        """``(alpha_t^2 Cov_gamma[x_i] - c_t I) / c_t^2``."""
        t, x = self._check_args(t, x)
        mom = self._moments(t, x, "full")
        a, c, cov = promote(self.process.alpha(t), self._c(t), mom.s2 / mom.z)
        return (a**2 * cov - c * jnp.eye(self.dim, dtype=c.dtype)) / c**2

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        """``(alpha_t^2 tr Cov_gamma[x_i] - d c_t) / c_t^2``."""
        t, x = self._check_args(t, x)
        mom = self._moments(t, x, "trace")
        a, c, tr_cov = promote(self.process.alpha(t), self._c(t), mom.s2 / mom.z)
        return (a**2 * tr_cov - self.dim * c) / c**2

    def sample(
        self, key: jax.Array, n: int, t: ArrayLike | None = None
    ) -> tuple[Float[Array, "n d"], Int[Array, " n"]]:
        """Draw ``n`` points of ``p_t`` (the smoothed data at ``t = 0`` by default) with data indices."""
        key = check_key(key)
        n = check_positive_int(n, "n")
        k_idx, k_noise = jr.split(key)
        idx = jr.randint(k_idx, (n,), 0, self.n_data)
        if t is None:
            a, std = 1.0, self.bandwidth
        else:
            self.process.check_time(t)
            a, std = self.process.alpha(t), jnp.sqrt(self._c(t))
        z = jr.normal(k_noise, (n, self.dim), dtype=self.data.dtype)
        return a * self.data[idx] + std * z, idx

    def condition(self, label: int) -> EmpiricalScore:
        """The empirical score of the data points with ``labels == label``."""
        lab = np.asarray(self.labels)
        mask = lab == int(label)
        if not mask.any():
            raise ValueError(f"No data point has label {label}.")
        return EmpiricalScore(
            self.data[np.flatnonzero(mask)],
            process=self.process,
            bandwidth=self.bandwidth,
            labels=self.labels[np.flatnonzero(mask)],
            chunk_size=self.chunk_size,
        )

    def __repr__(self) -> str:
        params = f"M={self.n_data}, d={self.dim}, bandwidth={self.bandwidth:g}"
        return f"EmpiricalScore({params}, process={self.process!r})"
