r"""Log-SNR integration rules: importance sampling and quadrature of ``\int f(lambda) d lambda``, and the
Gaussian eps-MMSE base curve (the package docstring has the formulas)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

from ..._types import ArrayOrSequence
from ..._validation import check_key, check_positive_int


LOGSNR_SCHEMES = ("logistic", "uniform", "gauss_legendre", "fixed")


def _finite_float(v, name) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"`{name}` must be finite, got {v}.")
    return f


class LogSNRScheme(eqx.Module):
    r"""A rule ``\int f(lambda) d lambda ~ sum_l w_l f(lambda_l)`` over log-SNR (module docstring).

    Build with :meth:`logistic`, :meth:`uniform`, :meth:`gauss_legendre`, :meth:`fixed` or
    :meth:`from_spectrum`; :meth:`sample` returns ``(log_snrs (L,), weights (L,))``.

    Args:
        kind: one of ``"logistic"``, ``"uniform"``, ``"gauss_legendre"``, ``"fixed"`` (else ``ValueError``).
        n: number of log-SNR nodes ``L`` (positive).
        stratified: draw one uniform per stratum ``[l/n, (l+1)/n)`` instead of ``n`` independent ones
            (random kinds only).
        loc: location of the logistic (the centre of the nodes for the other kinds, informational).
        scale: scale of the logistic (the nodes' range for the other kinds, informational).
        clip: the logistic is truncated to ``loc +- clip * scale``.
        lo: lower end of the integrated log-SNR interval.
        hi: upper end of the integrated log-SNR interval.
        nodes (ArrayLike | None): the fixed nodes, shape ``(L,)``, for ``"gauss_legendre"`` and ``"fixed"``;
            ``None`` otherwise.
        node_weights (ArrayLike | None): their weights, shape ``(L,)``; ``None`` for the random kinds.
    """

    kind: str = eqx.field(static=True)
    n: int = eqx.field(static=True)
    stratified: bool = eqx.field(static=True)
    params: Float[
        Array, " 5"
    ]  # (loc, scale, clip, lo, hi): array leaves, so changing them does not recompile
    nodes: Float[Array, " L"] | None = None
    node_weights: Float[Array, " L"] | None = None

    def __init__(
        self,
        kind: str,
        n: int,
        stratified: bool,
        loc: float,
        scale: float,
        clip: float,
        lo: float,
        hi: float,
        nodes=None,
        node_weights=None,
    ):
        if kind not in LOGSNR_SCHEMES:
            raise ValueError(f"Unknown log-SNR scheme {kind!r}; use one of {LOGSNR_SCHEMES}.")
        self.kind = kind
        self.n = check_positive_int(n, "n")
        self.stratified = bool(stratified)
        self.params = np.asarray([loc, scale, clip, lo, hi], float)
        self.nodes = None if nodes is None else np.asarray(nodes, float)
        self.node_weights = None if node_weights is None else np.asarray(node_weights, float)

    @property
    def loc(self) -> float:
        return float(self.params[0])

    @property
    def scale(self) -> float:
        return float(self.params[1])

    @property
    def clip(self) -> float:
        return float(self.params[2])

    @property
    def lo(self) -> float:
        return float(self.params[3])

    @property
    def hi(self) -> float:
        return float(self.params[4])

    @classmethod
    def logistic(
        cls, n: int, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0, *, stratified: bool = False
    ) -> LogSNRScheme:
        """Truncated-logistic importance sampling (ITD); defaults are Info-Decomp's ``loc 1, scale 2,
        clip 3`` (support ``[-5, 7]``, Stable Diffusion's trained range)."""
        n = check_positive_int(n, "n")
        loc, scale, clip = (
            _finite_float(loc, "loc"),
            _finite_float(scale, "scale"),
            _finite_float(clip, "clip"),
        )
        if scale <= 0:
            raise ValueError(f"`scale` must be positive, got {scale}.")
        if clip <= 0:
            raise ValueError(f"`clip` must be positive, got {clip}.")
        return cls("logistic", n, bool(stratified), loc, scale, clip, loc - clip * scale, loc + clip * scale)

    @classmethod
    def uniform(cls, n: int, lo: float, hi: float, *, stratified: bool = False) -> LogSNRScheme:
        """``lambda ~ U[lo, hi]`` with weight ``(hi - lo) / n`` (ITD's ``trunc_uniform_integrate``)."""
        n = check_positive_int(n, "n")
        lo, hi = _finite_float(lo, "lo"), _finite_float(hi, "hi")
        if not lo < hi:
            raise ValueError(f"Need lo < hi, got lo={lo}, hi={hi}.")
        return cls("uniform", n, bool(stratified), 0.5 * (lo + hi), hi - lo, 1.0, lo, hi)

    @classmethod
    def gauss_legendre(cls, n: int, lo: float, hi: float) -> LogSNRScheme:
        """Fixed ``n``-point Gauss-Legendre rule on ``[lo, hi]`` (exact for polynomials of degree
        ``2n-1``)."""
        n = check_positive_int(n, "n")
        lo, hi = _finite_float(lo, "lo"), _finite_float(hi, "hi")
        if not lo < hi:
            raise ValueError(f"Need lo < hi, got lo={lo}, hi={hi}.")
        z, w = np.polynomial.legendre.leggauss(n)
        nodes = 0.5 * (hi - lo) * z + 0.5 * (hi + lo)
        return cls(
            "gauss_legendre",
            n,
            False,
            0.5 * (lo + hi),
            hi - lo,
            1.0,
            lo,
            hi,
            jnp.asarray(nodes),
            jnp.asarray(0.5 * (hi - lo) * w),
        )

    @classmethod
    def fixed(cls, log_snrs: ArrayOrSequence, weights: ArrayOrSequence | None = None) -> LogSNRScheme:
        """Given log-SNRs (e.g. those of a sampler's time grid) with given weights or, by default, the
        trapezoid weights of the sorted values (a single value gets weight 1: its integrand itself)."""
        lam = np.asarray(log_snrs, float).reshape(-1)
        n = check_positive_int(lam.size, "len(log_snrs)")
        if not np.all(np.isfinite(lam)):
            raise ValueError("`log_snrs` contains non-finite values.")
        if weights is None:
            if n == 1:
                w = np.ones(1)
            else:
                order = np.argsort(lam)
                s = lam[order]
                ws = np.zeros(n)
                ws[:-1] += 0.5 * np.diff(s)
                ws[1:] += 0.5 * np.diff(s)
                w = np.empty(n)
                w[order] = ws
        else:
            w = np.asarray(weights, float).reshape(-1)
            if w.shape != lam.shape or not np.all(np.isfinite(w)):
                raise ValueError(f"`weights` must be finite with shape {lam.shape}, got {w.shape}.")
        return cls(
            "fixed",
            n,
            False,
            float(lam.mean()),
            float(np.ptp(lam)),
            1.0,
            float(lam.min()),
            float(lam.max()),
            jnp.asarray(lam),
            jnp.asarray(w),
        )

    @classmethod
    def from_spectrum(
        cls, variances: ArrayOrSequence, n: int, clip: float = 4.0, *, stratified: bool = False
    ) -> LogSNRScheme:
        r"""ITD's data-adapted logistic: ``loc = -mean(log v_i)``, ``scale = sqrt(1 + 3 var(log v_i) / pi^2)``
        for the eigenvalues ``v_i`` of the data covariance.

        Rationale: the eps-MMSE of ``N(0, v)`` is ``sigmoid(lambda + log v)``, whose derivative is the
        logistic density with location ``-log v`` and unit scale (variance ``pi^2/3``); spreading the
        locations by ``var(log v)`` gives total variance ``pi^2 s^2 / 3 = pi^2/3 + var(log v)``. (ITD's code
        writes ``3/pi``; ``3/pi^2`` is the variance-matching constant.)
        """
        v = np.asarray(variances, float).reshape(-1)
        if v.size == 0 or np.any(~np.isfinite(v)) or np.any(v <= 0):
            raise ValueError("`variances` must be positive and finite.")
        lv = np.log(v)
        return cls.logistic(
            n,
            float(-lv.mean()),
            float(math.sqrt(1.0 + 3.0 * lv.var() / math.pi**2)),
            clip,
            stratified=stratified,
        )

    @property
    def support(self) -> tuple[float, float]:
        """``(lo, hi)``: the log-SNR interval the rule integrates over (tails outside are ignored)."""
        return self.lo, self.hi

    def sample(self, key: jax.Array | None, dtype=None) -> tuple[Float[Array, " L"], Float[Array, " L"]]:
        r"""``(log_snrs, weights)`` with ``\int f ~ sum_l w_l f(lambda_l)`` (``key`` unused for fixed rules).
        Traceable (works inside ``jit``)."""
        dtype = dtype or jnp.result_type(float)
        if self.kind in ("gauss_legendre", "fixed"):
            return jnp.asarray(self.nodes, dtype), jnp.asarray(self.node_weights, dtype)
        loc, scale, clip, lo, hi = (jnp.asarray(self.params, dtype)[i] for i in range(5))
        if self.stratified:
            u = (jr.uniform(key, (self.n,), dtype) + jnp.arange(self.n, dtype=dtype)) / self.n
        else:
            u = jr.uniform(key, (self.n,), dtype)
        if self.kind == "uniform":
            return lo + (hi - lo) * u, jnp.full((self.n,), 1.0 / self.n, dtype) * (hi - lo)
        # truncated logistic: u ~ U(sigmoid(-c), sigmoid(c)), lambda = loc + s logit(u)
        lo_u, hi_u = jax.nn.sigmoid(-clip), jax.nn.sigmoid(clip)
        uu = lo_u + (hi_u - lo_u) * u
        v = jnp.log(uu) - jnp.log1p(-uu)
        lam = loc + scale * v
        w = scale * jnp.tanh(clip / 2.0) / (jax.nn.sigmoid(v) * jax.nn.sigmoid(-v)) / self.n
        return lam, w


def logsnr_samples(
    key: jax.Array | None,
    n: int,
    scheme: str = "logistic",
    *,
    loc: float = 1.0,
    scale: float = 2.0,
    clip: float = 3.0,
    lo: float = -5.0,
    hi: float = 7.0,
    stratified: bool = False,
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Functional form of :class:`LogSNRScheme`: ``(log_snrs, weights)`` of ``scheme`` (one of
    ``"logistic"``, ``"uniform"``, ``"gauss_legendre"``).

    Args:
        key: PRNG key of the draw; ignored (may be ``None``) for ``"gauss_legendre"``.
        n: number of log-SNR values.
        scheme: ``"logistic"`` (default), ``"uniform"`` or ``"gauss_legendre"`` (else ``ValueError``).
        loc: location of the logistic (``"logistic"`` only).
        scale: scale of the logistic (``"logistic"`` only).
        clip: the logistic is truncated to ``loc +- clip * scale`` (``"logistic"`` only).
        lo: lower end of the interval (``"uniform"`` and ``"gauss_legendre"``).
        hi: upper end of the interval (``"uniform"`` and ``"gauss_legendre"``).
        stratified: one uniform per stratum instead of independent draws (random schemes only).

    Returns:
        ``(log_snrs, weights)``, each of shape ``(n,)``.
    """
    if scheme == "logistic":
        s = LogSNRScheme.logistic(n, loc, scale, clip, stratified=stratified)
    elif scheme == "uniform":
        s = LogSNRScheme.uniform(n, lo, hi, stratified=stratified)
    elif scheme == "gauss_legendre":
        s = LogSNRScheme.gauss_legendre(n, lo, hi)
    else:
        raise ValueError(
            f"Unknown log-SNR scheme {scheme!r}; use one of {LOGSNR_SCHEMES[:3]} "
            f"(or LogSNRScheme.fixed for given values)."
        )
    if s.kind != "gauss_legendre":
        key = check_key(key)
    return _sample_jit(s, key)


@eqx.filter_jit
def _sample_jit(scheme, key):
    return scheme.sample(key)


def gaussian_mmse(log_snr: ArrayOrSequence, variances: ArrayOrSequence) -> np.ndarray:
    r"""eps-MMSE of ``N(mu, diag(v))`` data, per coordinate: ``sigmoid(lambda + log v_i)`` (shape
    ``lambda.shape + v.shape``, numpy). Summed over ``i`` it is ITD's Gaussian base curve ``mmse_G``.

    (Per coordinate, ``eps_hat = b (a x + b eps - a mu) / (a^2 v + b^2)`` and the error variance is
    ``a^2 v / (a^2 v + b^2) = sigmoid(lambda + log v)``.)

    Args:
        log_snr: log-SNR values ``lambda``, any shape.
        variances: the data's per-coordinate variances ``v_i`` (positive), shape ``(d,)``.
    """
    z = np.asarray(log_snr, float)[..., None] + np.log(np.asarray(variances, float))
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_scheme(scheme) -> LogSNRScheme:
    if not isinstance(scheme, LogSNRScheme):
        raise TypeError(
            f"`scheme` must be a LogSNRScheme (e.g. LogSNRScheme.logistic(64)), got {type(scheme).__name__}."
        )
    return scheme
