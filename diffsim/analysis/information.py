r"""Pointwise and pixel-wise mutual information from denoisers (I-MMSE), and partial information
decomposition (PID) of what two tokens say about an image.

Sources: Kong, Brekelmans & Ver Steeg, "Information-theoretic diffusion" (ITD, ICLR 2023); Kong, Liu, Li,
Yogatama & Ver Steeg, "Interpretable diffusion via information decomposition" (ICLR 2024); Dewan, Zawar,
Saxena, Chang, Luo & Bisk, "DiffusionPID" (NeurIPS 2024); Williams & Beer (2010) for ``I_min``; Barrett
(2015) for the minimum-mutual-information PID. Guo, Shamai & Verdu (2005) for I-MMSE.

**Channel** (see :mod:`diffsim.scores.conditional`): ``x_lambda = a x + b eps`` with ``a^2 = sigmoid(lambda)``,
``b^2 = sigmoid(-lambda)``, ``eps ~ N(0, I_d)``; ``eps_hat(x_lambda | s)`` is the noise predictor given the
tokens in the subset ``s``. The pointwise MMSE of ``x`` under condition ``s`` is

    mmse_s(x, lambda) = E_eps | eps - eps_hat(a x + b eps | s) |^2.

**Pointwise log-likelihood** (ITD): with a Gaussian base ``N(0, diag(v))`` whose eps-MMSE is
``mmse_G(lambda) = sum_i sigmoid(lambda + log v_i)`` and entropy ``h_G = d/2 log(2 pi e) + 1/2 sum_i log v_i``,

    -log p(x | s) = h_G + 1/2 \int [ mmse_s(x, lambda) - mmse_G(lambda) ] d lambda.

**Pointwise mutual information** (Kong et al. 2024), context ``c``, tokens ``y``:

    standard:    i(x; y | c)   = 1/2 \int E_eps [ |eps - eps_hat(x_l | c)|^2 - |eps - eps_hat(x_l | y, c)|^2 ] d lambda
                                 = log p(x | y, c) - log p(x | c)            (exactly, for optimal denoisers)
    orthogonal:  i^o(x; y | c) = 1/2 \int E_eps | eps_hat(x_l | c) - eps_hat(x_l | y, c) |^2 d lambda  >= 0.

By the orthogonality principle (``eps - eps_hat(.|y,c)`` is orthogonal to every function of ``(x_l, y, c)``),
``E_{p(x|y,c)} i^o = E_{p(x|y,c)} i``: the orthogonal estimator is unbiased on average, not per sample.
Both split over coordinates (``|v|^2 = sum_j v_j^2``): ``i_j`` and ``i^o_j >= 0`` are the per-coordinate
(per-pixel) maps. All informations are in **nats**.

**Integration over log-SNR** (:class:`LogSNRScheme`): ``\int f d lambda ~ sum_l w_l f(lambda_l)``:

- ``"logistic"`` (ITD's ``logistic_integrate``): ``u ~ U(sigmoid(-c), sigmoid(c))``,
  ``lambda = loc + s logit(u)`` (support ``[loc - c s, loc + c s]``), importance weight
  ``w = s tanh(c/2) / (sigmoid(v) sigmoid(-v)) / L`` with ``v = (lambda - loc)/s`` (the inverse of the
  truncated-logistic density; truncated mass ``sigmoid(c) - sigmoid(-c) = tanh(c/2)``);
- ``"uniform"``: ``lambda ~ U[lo, hi]``, ``w = (hi - lo)/L``;
- ``"gauss_legendre"``: fixed Gauss-Legendre nodes and weights on ``[lo, hi]``;
- ``"fixed"``: given log-SNRs and weights (default: trapezoid rule).

Random schemes draw fresh log-SNRs per data point (unbiased per point, over the scheme's support); each
log-SNR gets ``n_noise`` noise draws. **Common random numbers**: the SAME ``(lambda, eps)`` are used for
every condition of a point (one noisy point, all token subsets), so noise cancels in differences, and
point ``i`` draws from ``fold_in(key, i)`` so results do not depend on chunking.

**PID** of the information two sources ``y_1, y_2`` (tokens) carry about the target ``x`` (the image),
optionally given context tokens ``c`` (conditional PID, CPID). Every measure here has the form

    R = min(i_1, i_2) (averaged one way or the other),  U_k = I_k - R,  S = I_12 - I_1 - I_2 + R,

and they differ only in WHAT is minimised (:data:`PID_MEASURES`):

- ``"pointwise_min"`` (DiffusionPID as reconstructed in the reference notes, section 3.2):
  the pointwise MIs of each sample ``(x, y_1, y_2)``: ``R = E[min(i(x;y_1), i(x;y_2))]``; per pixel with
  ``i^o_j`` (non-negative) for maps. Can be negative per sample.
- ``"mmi"`` (minimum mutual information, Barrett 2015): ``R = min(I(X;Y_1), I(X;Y_2))`` of the averaged MIs.
- ``"wb_imin"`` (Williams & Beer 2010, ``I_min``): the specific informations
  ``I(X=x; Y_k) = KL(p(y_k | x) || p(y_k)) = sum_{y} p(y | x) i(x; y)``, ``R = E_x min_k I(X=x; Y_k)``. The
  posterior comes from the model by Bayes over the token alphabet,
  ``p(y_1, y_2 | x, c) \propto p(y_1, y_2 | c) exp(i(x; y_1, y_2 | c))`` (standard estimator, one extra
  condition per token pair), and its marginals. Image level only.

The exact discrete counterparts (:func:`discrete_pid`) compute the same three measures on a table
``p(y_1, y_2, g)``; in the well-separated limit of a token mixture the image carries exactly the discrete
component code ``g`` (:func:`well_separated_joint`), so they are the ground truth of the estimators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._validation import as_float_array, check_key, check_positive_int
from ..scores.conditional import AbstractConditionalDenoiser, ConditionalMixture, channel_coefficients


__all__ = [
    "ESTIMATORS",
    "LOGSNR_SCHEMES",
    "PID_MEASURES",
    "InformationCurves",
    "LogSNRScheme",
    "NegLogLikelihood",
    "PIDInformation",
    "PIDResult",
    "PIDTerms",
    "PointwiseInformation",
    "decompose",
    "discrete_pid",
    "exact_pid_information",
    "exact_pointwise_information",
    "gaussian_mmse",
    "logsnr_samples",
    "mmse_curves",
    "neg_log_likelihood",
    "pid",
    "pid_information",
    "pid_terms",
    "pixel_map",
    "pointwise_information",
    "well_separated_joint",
]

LOGSNR_SCHEMES = ("logistic", "uniform", "gauss_legendre", "fixed")
PID_MEASURES = ("pointwise_min", "mmi", "wb_imin")
ESTIMATORS = ("standard", "orthogonal")
NATS_PER_BIT = math.log(2.0)


# =====================================================================================================
# log-SNR integration schemes
# =====================================================================================================
def _finite_float(v, name) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"`{name}` must be finite, got {v}.")
    return f


class LogSNRScheme(eqx.Module):
    r"""A rule ``\int f(lambda) d lambda ~ sum_l w_l f(lambda_l)`` over log-SNR (module docstring).

    Build with :meth:`logistic`, :meth:`uniform`, :meth:`gauss_legendre`, :meth:`fixed` or
    :meth:`from_spectrum`; :meth:`sample` returns ``(log_snrs (L,), weights (L,))``.
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
        """Fixed ``n``-point Gauss-Legendre rule on ``[lo, hi]`` (exact for polynomials of degree ``2n-1``)."""
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
    def fixed(cls, log_snrs: ArrayLike, weights: ArrayLike | None = None) -> LogSNRScheme:
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
        cls, variances: ArrayLike, n: int, clip: float = 4.0, *, stratified: bool = False
    ) -> LogSNRScheme:
        r"""ITD's data-adapted logistic: ``loc = -mean(log v_i)``, ``scale = sqrt(1 + 3 var(log v_i) / pi^2)``
        for the eigenvalues ``v_i`` of the data covariance.

        Rationale: the eps-MMSE of ``N(0, v)`` is ``sigmoid(lambda + log v)``, whose derivative is the logistic
        density with location ``-log v`` and unit scale (variance ``pi^2/3``); spreading the locations by
        ``var(log v)`` gives total variance ``pi^2 s^2 / 3 = pi^2/3 + var(log v)``. (ITD's code writes
        ``3/pi``; ``3/pi^2`` is the variance-matching constant.)
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
    ``"logistic"``, ``"uniform"``, ``"gauss_legendre"``)."""
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


def gaussian_mmse(log_snr: ArrayLike, variances: ArrayLike) -> np.ndarray:
    r"""eps-MMSE of ``N(mu, diag(v))`` data, per coordinate: ``sigmoid(lambda + log v_i)`` (shape
    ``lambda.shape + v.shape``, numpy). Summed over ``i`` it is ITD's Gaussian base curve ``mmse_G``.

    (Per coordinate, ``eps_hat = b (a x + b eps - a mu) / (a^2 v + b^2)`` and the error variance is
    ``a^2 v / (a^2 v + b^2) = sigmoid(lambda + log v)``.)"""
    z = np.asarray(log_snr, float)[..., None] + np.log(np.asarray(variances, float))
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_scheme(scheme) -> LogSNRScheme:
    if not isinstance(scheme, LogSNRScheme):
        raise TypeError(
            f"`scheme` must be a LogSNRScheme (e.g. LogSNRScheme.logistic(64)), got {type(scheme).__name__}."
        )
    return scheme


# =====================================================================================================
# MMSE curves: the core estimator
# =====================================================================================================
class InformationCurves(eqx.Module):
    r"""Per-log-SNR integrands ("MMSE curves") of ``N`` points under ``M`` conditions, with common random
    numbers across conditions (numpy arrays).

    - ``log_snr``, ``weight``: ``(N, L)`` the log-SNRs of each point and their integration weights;
    - ``mmse``: ``(N, M, L)`` ``E_eps |eps - eps_hat_m|^2`` (image level);
    - ``mmse_coords``: ``(N, M, d)`` ``sum_l w_l E_eps (eps_j - eps_hat_{m,j})^2`` (integrated per coordinate);
    - ``orth``: ``(N, P, L)`` ``E_eps |eps_hat_a - eps_hat_b|^2`` for each pair ``(a, b)`` of :attr:`pairs`;
    - ``orth_coords``: ``(N, P, d)`` its per-coordinate integral;
    - ``mmse_curve_coords`` / ``orth_curve_coords``: ``(N, M, L, d)`` / ``(N, P, L, d)`` per-coordinate
      curves (only with ``coordinate_curves=True``, else None);
    - ``noise_sq``: ``(N, L, d)`` the mean of ``eps_j^2`` over the draws (only with ``noise_power=True``;
      the control variate of :func:`neg_log_likelihood`).

    ``E_eps`` is the mean over the ``n_noise`` draws at each log-SNR. Integrate with ``sum_l w_l (.)``.
    Conditions are indexed as passed to :func:`mmse_curves`; "``b`` refines ``a``" means condition ``b``
    conditions on everything ``a`` does and more.
    """

    log_snr: np.ndarray
    weight: np.ndarray
    mmse: np.ndarray
    mmse_coords: np.ndarray
    orth: np.ndarray
    orth_coords: np.ndarray
    mmse_curve_coords: np.ndarray | None
    orth_curve_coords: np.ndarray | None
    noise_sq: np.ndarray | None
    pairs: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def standard_integrand(self, a: int, b: int) -> np.ndarray:
        """``1/2 (mmse_a - mmse_b)`` ``(N, L)``: the standard estimator's integrand of ``i(x; b | a)``."""
        return 0.5 * (self.mmse[:, a] - self.mmse[:, b])

    def orthogonal_integrand(self, a: int, b: int) -> np.ndarray:
        """``1/2 E|eps_hat_a - eps_hat_b|^2`` ``(N, L)``: the orthogonal estimator's integrand (pair computed)."""
        return 0.5 * self.orth[:, self._pair_index(a, b)]

    def standard(self, a: int, b: int) -> np.ndarray:
        """Standard-estimator pointwise information ``i(x; b | a)`` ``(N,)``."""
        return np.sum(self.weight * self.standard_integrand(a, b), axis=-1)

    def orthogonal(self, a: int, b: int) -> np.ndarray:
        """Orthogonal-estimator pointwise information ``i^o(x; b | a)`` ``(N,)``."""
        return np.sum(self.weight * self.orthogonal_integrand(a, b), axis=-1)

    def standard_coords(self, a: int, b: int) -> np.ndarray:
        """Per-coordinate standard estimator ``i_j(x; b | a)`` ``(N, d)``."""
        return 0.5 * (self.mmse_coords[:, a] - self.mmse_coords[:, b])

    def orthogonal_coords(self, a: int, b: int) -> np.ndarray:
        """Per-coordinate orthogonal estimator ``i^o_j(x; b | a) >= 0`` ``(N, d)``."""
        return 0.5 * self.orth_coords[:, self._pair_index(a, b)]

    def _pair_index(self, a, b) -> int:
        try:
            return self.pairs.index((int(a), int(b)))
        except ValueError:
            raise ValueError(f"The pair ({a}, {b}) was not computed; computed pairs: {self.pairs}.") from None


def _curves_one(model, x, tokens, masks, key, scheme, n_noise, pa, pb, coordinate_curves, noise_power):
    """Curves of one point ``x (d,)`` under conditions ``tokens/masks (M, n)``; pairs ``(pa[p], pb[p])``."""
    k_lam, k_eps = jr.split(key)
    lam, w = scheme.sample(k_lam, x.dtype)
    d = x.shape[0]

    def at(l, e):  # one log-SNR, one noise draw, all conditions (common random numbers)
        a, b = channel_coefficients(l)
        eh = model.eps_conditions(l, a * x + b * e, tokens, masks)  # (M, d)
        return (e[None, :] - eh) ** 2, (eh[pa] - eh[pb]) ** 2

    def body(k, carry):
        e = jr.normal(jr.fold_in(k_eps, k), (lam.shape[0], d), x.dtype)
        err, dif = jax.vmap(at)(lam, e)  # (L, M, d), (L, P, d)
        return carry[0] + err, carry[1] + dif, carry[2] + e**2

    m, p = tokens.shape[0], pa.shape[0]
    init = (
        jnp.zeros((lam.shape[0], m, d), x.dtype),
        jnp.zeros((lam.shape[0], p, d), x.dtype),
        jnp.zeros((lam.shape[0], d), x.dtype),
    )
    err, dif, esq = jax.lax.fori_loop(0, n_noise, body, init)
    nf = n_noise.astype(x.dtype)
    err = jnp.moveaxis(err, 0, 1) / nf  # (M, L, d)
    dif = jnp.moveaxis(dif, 0, 1) / nf  # (P, L, d)
    out = dict(
        log_snr=lam,
        weight=w,
        mmse=err.sum(-1),
        mmse_coords=jnp.einsum("l,mld->md", w, err),
        orth=dif.sum(-1),
        orth_coords=jnp.einsum("l,pld->pd", w, dif),
    )
    if coordinate_curves:
        out["mmse_curve_coords"] = err
        out["orth_curve_coords"] = dif
    if noise_power:
        out["noise_sq"] = esq / nf
    return out


@eqx.filter_jit
def _curves_chunk(model, x, tokens, masks, idx, key, scheme, n_noise, pa, pb, coordinate_curves, noise_power):
    def one(xi, ti, mi, i):
        return _curves_one(
            model, xi, ti, mi, jr.fold_in(key, i), scheme, n_noise, pa, pb, coordinate_curves, noise_power
        )

    return jax.vmap(one)(x, tokens, masks, idx)


def _check_points(model, x, name="x") -> np.ndarray:
    arr = np.asarray(as_float_array(x, name, ndim=(1, 2)))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape[1] != model.dim:
        raise ValueError(f"`{name}` must have shape (N, {model.dim}) to match the model, got {arr.shape}.")
    if arr.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one point.")
    return arr


def _check_model(model) -> AbstractConditionalDenoiser:
    if not isinstance(model, AbstractConditionalDenoiser):
        raise TypeError(
            f"`model` must be a conditional denoiser (ConditionalMixture, TokenNetworkDenoiser, ...), "
            f"got {type(model).__name__}."
        )
    return model


def mmse_curves(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N M n"],
    masks: Bool[ArrayLike, "M n"],
    key: jax.Array,
    *,
    scheme: LogSNRScheme,
    n_noise: int = 1,
    pairs: Sequence[tuple[int, int]] = (),
    coordinate_curves: bool = False,
    noise_power: bool = False,
    chunk_size: int | None = None,
) -> InformationCurves:
    r"""MMSE curves of ``N`` points under ``M`` conditions (the estimator's core; module docstring).

    - ``tokens``: ``(N, M, n)`` (or ``(M, n)`` shared by all points) token values of each condition;
      ``masks``: ``(M, n)`` or ``(N, M, n)`` the conditioned slots;
    - ``pairs``: condition pairs ``(a, b)`` whose orthogonal terms ``E|eps_hat_a - eps_hat_b|^2`` to keep;
    - ``scheme``: the log-SNR rule; ``n_noise`` noise draws per log-SNR, shared by all conditions;
    - ``coordinate_curves``: also keep the per-coordinate curves; ``noise_power``: also keep ``mean eps_j^2``;
    - ``chunk_size``: points evaluated at once (memory; an explicit value fixes the compiled shape, the last
      chunk is padded); results do not depend on it.
    """
    model = _check_model(model)
    scheme = _check_scheme(scheme)
    key = check_key(key)
    n_noise = check_positive_int(n_noise, "n_noise")
    xs = _check_points(model, x)
    n = xs.shape[0]
    tok = np.asarray(model.check_tokens(tokens))
    msk = np.asarray(model.check_mask(masks, "masks"))
    if tok.ndim == 2:
        tok = np.broadcast_to(tok, (n,) + tok.shape)
    if msk.ndim == 2:
        msk = np.broadcast_to(msk, (n,) + msk.shape)
    if tok.ndim != 3 or tok.shape[0] != n or msk.shape != tok.shape:
        raise ValueError(
            f"`tokens` must have shape (N, M, n) = ({n}, M, {model.n_tokens}) and `masks` (M, n) or the "
            f"same shape; got {tok.shape} and {msk.shape}."
        )
    m = tok.shape[1]
    pairs = tuple((int(a), int(b)) for a, b in pairs)
    for a, b in pairs:
        if not (0 <= a < m and 0 <= b < m):
            raise ValueError(f"`pairs` entry ({a}, {b}) out of range for {m} conditions.")
    if isinstance(model, ConditionalMixture):
        model.check_condition(tok, msk)
    if chunk_size is None:
        per_point = (
            scheme.n * m * model.dim * (3 if coordinate_curves else 2) + scheme.n * len(pairs) * model.dim
        )
        per_point += scheme.n * getattr(model, "n_components", 0) * (model.dim + m)  # mixture intermediates
        chunk_size = int(max(1, min(n, 1_000_000 // max(per_point, 1))))
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    pa = np.asarray([p[0] for p in pairs], np.int32)
    pb = np.asarray([p[1] for p in pairs], np.int32)
    nn = np.asarray(n_noise, np.int32)
    parts = []
    for start in range(0, n, chunk_size):  # fixed chunk shape (last chunk padded): one compilation
        idx = np.arange(start, start + chunk_size)
        src = np.minimum(idx, n - 1)
        out = _curves_chunk(
            model,
            xs[src],
            tok[src],
            msk[src],
            idx,
            key,
            scheme,
            nn,
            pa,
            pb,
            bool(coordinate_curves),
            bool(noise_power),
        )
        keep = idx < n
        parts.append({k: np.asarray(v)[keep] for k, v in out.items()})
    res = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return InformationCurves(
        res["log_snr"],
        res["weight"],
        res["mmse"],
        res["mmse_coords"],
        res["orth"],
        res["orth_coords"],
        res.get("mmse_curve_coords"),
        res.get("orth_curve_coords"),
        res.get("noise_sq"),
        pairs,
    )


# =====================================================================================================
# pointwise log-likelihood and pointwise mutual information
# =====================================================================================================
class NegLogLikelihood(eqx.Module):
    """ITD estimate of ``-log p(x | y_given)``: ``nll`` ``(N,)``, per-coordinate ``nll_coords`` ``(N, d)``
    (they sum to ``nll``), the integrand ``gap`` ``(N, L)`` ``= 1/2 (mmse - mmse_G)`` and ``curves``."""

    nll: Float[Array, " N"]
    nll_coords: Float[Array, "N d"]
    gap: Float[Array, "N L"]
    curves: InformationCurves


def _slots(model, slots, name) -> tuple[int, ...]:
    if isinstance(slots, (int, np.integer)):
        slots = (slots,)
    out = []
    for s in slots:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"`{name}` must hold integer token slots, got {s!r}.")
        if not 0 <= int(s) < model.n_tokens:
            raise ValueError(
                f"`{name}` slot {s} out of range: the model has {model.n_tokens} token slot(s) "
                f"(alphabet sizes {model.alphabet_sizes})."
            )
        out.append(int(s))
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` contains repeated slots: {out}.")
    return tuple(out)


def _mask_table(n_tokens: int, subsets: Sequence[Sequence[int]]) -> Array:
    m = np.zeros((len(subsets), n_tokens), bool)
    for i, s in enumerate(subsets):
        m[i, list(s)] = True
    return np.asarray(m)


def _sample_tokens(model, tokens, n, name="tokens") -> Array:
    if tokens is None:
        if model.n_tokens == 0:
            return np.zeros((n, 0), np.int32)
        return np.zeros((n, model.n_tokens), np.int32)
    tok = np.asarray(model.check_tokens(tokens, name))
    if tok.ndim == 1:
        tok = np.broadcast_to(tok, (n, model.n_tokens))
    if tok.shape != (n, model.n_tokens):
        raise ValueError(
            f"`{name}` must have shape (N, n) = ({n}, {model.n_tokens}) (one row per point), got {tok.shape}."
        )
    return np.array(tok)


def neg_log_likelihood(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    scheme: LogSNRScheme,
    tokens: Int[ArrayLike, "N n"] | None = None,
    given: Sequence[int] = (),
    n_noise: int = 1,
    base_variances: ArrayLike = 1.0,
    chunk_size: int | None = None,
) -> NegLogLikelihood:
    r"""ITD's pointwise ``-log p(x | y_given)`` (module docstring) with the Gaussian base ``N(0, diag(v))``,
    ``v = base_variances`` (scalar or ``(d,)``; ITD uses the data-covariance eigenvalues).

    **Control variate.** At high SNR ``eps - eps_hat ~ eps``, so each draw of ``|eps - eps_hat|^2``
    fluctuates by ``O(sqrt(2 d))`` around ``mmse_G(lambda) ~ d`` and the plain estimator's variance does not
    decay with ``lambda``. Because ``E eps_j^2 = 1``, replacing the base term ``sigmoid(lambda + log v_j)``
    by ``sigmoid(lambda + log v_j) eps_j^2`` on the SAME draw leaves the expectation unchanged and cancels
    that fluctuation (the difference ``(eps_j - eps_hat_j)^2 - sigmoid(.) eps_j^2`` vanishes at both ends).

    The integral runs over ``scheme.support`` only; the mean integrand decays like ``e^{-|lambda|}``, so the
    support must cover the log-SNRs where the data differ from the base.
    """
    model = _check_model(model)
    xs = _check_points(model, x)
    n = xs.shape[0]
    given = _slots(model, given, "given")
    if given and tokens is None:
        raise ValueError("`tokens` are required when conditioning on `given` slots.")
    tok = _sample_tokens(model, tokens, n)
    v = np.broadcast_to(np.asarray(base_variances, float), (model.dim,))
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("`base_variances` must be positive and finite.")
    masks = _mask_table(model.n_tokens, [given])
    curves = mmse_curves(
        model,
        xs,
        tok[:, None, :],
        masks,
        key,
        scheme=scheme,
        n_noise=n_noise,
        noise_power=True,
        chunk_size=chunk_size,
    )
    base = gaussian_mmse(curves.log_snr, v) * curves.noise_sq  # (N, L, d), expectation mmse_G per coordinate
    h_coords = 0.5 * np.log(2 * math.pi * math.e * v)
    base_int = np.einsum("nl,nld->nd", curves.weight, base)
    nll_coords = h_coords[None, :] + 0.5 * (curves.mmse_coords[:, 0] - base_int)
    gap = 0.5 * (curves.mmse[:, 0] - base.sum(-1))
    return NegLogLikelihood(nll_coords.sum(-1), nll_coords, gap, curves)


class PointwiseInformation(eqx.Module):
    """``i(x; y_about | y_given)`` per point by both estimators: ``standard`` / ``orthogonal`` ``(N,)``,
    per coordinate ``standard_coords`` / ``orthogonal_coords`` ``(N, d)``, and the MMSE ``curves``
    (condition 0 = ``given``, 1 = ``given + about``; integrands via ``curves.standard_integrand(0, 1)``)."""

    standard: Float[Array, " N"]
    orthogonal: Float[Array, " N"]
    standard_coords: Float[Array, "N d"]
    orthogonal_coords: Float[Array, "N d"]
    curves: InformationCurves


def pointwise_information(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    key: jax.Array,
    *,
    about: Sequence[int],
    given: Sequence[int] = (),
    scheme: LogSNRScheme,
    n_noise: int = 1,
    coordinate_curves: bool = False,
    chunk_size: int | None = None,
) -> PointwiseInformation:
    r"""Pointwise (conditional) mutual information ``i(x; y_about | y_given)`` of each point with its own
    tokens, by the standard and the orthogonal estimator, image level and per coordinate (module
    docstring). ``about`` must be non-empty and disjoint from ``given``.
    """
    model = _check_model(model)
    xs = _check_points(model, x)
    about = _slots(model, about, "about")
    given = _slots(model, given, "given")
    if not about:
        raise ValueError("`about` must name at least one token slot.")
    if set(about) & set(given):
        raise ValueError(f"`about` {about} and `given` {given} must be disjoint.")
    tok = _sample_tokens(model, tokens, xs.shape[0])
    masks = _mask_table(model.n_tokens, [given, given + about])
    tok2 = np.broadcast_to(tok[:, None, :], (tok.shape[0], 2, tok.shape[1]))
    curves = mmse_curves(
        model,
        xs,
        tok2,
        masks,
        key,
        scheme=scheme,
        n_noise=n_noise,
        pairs=((0, 1),),
        coordinate_curves=coordinate_curves,
        chunk_size=chunk_size,
    )
    return PointwiseInformation(
        curves.standard(0, 1),
        curves.orthogonal(0, 1),
        curves.standard_coords(0, 1),
        curves.orthogonal_coords(0, 1),
        curves,
    )


def exact_pointwise_information(
    model: ConditionalMixture,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    *,
    about: Sequence[int],
    given: Sequence[int] = (),
) -> Float[Array, " N"]:
    """Exact ``log p(x | y_about, y_given) - log p(x | y_given)`` of an analytic conditional mixture."""
    if not isinstance(model, ConditionalMixture):
        raise TypeError(f"Exact informations need a ConditionalMixture, got {type(model).__name__}.")
    xs = _check_points(model, x)
    about = _slots(model, about, "about")
    given = _slots(model, given, "given")
    tok = _sample_tokens(model, tokens, xs.shape[0])
    masks = _mask_table(model.n_tokens, [given, given + about])
    model.check_condition(
        np.broadcast_to(tok[:, None], (tok.shape[0], 2, tok.shape[1])),
        np.broadcast_to(masks, (tok.shape[0],) + masks.shape),
    )
    return _exact_pmi(model, xs, tok, masks[0], masks[1])


@eqx.filter_jit
def _exact_pmi(model, xs, tok, m0, m1):
    f = jax.vmap(lambda xi, ti: model.data_log_prob(xi, ti, m1) - model.data_log_prob(xi, ti, m0))
    return f(xs, tok)


def pixel_map(values: Float[ArrayLike, "*b d"], image_shape: Sequence[int]) -> Float[Array, "*b H W"]:
    """Reshape per-coordinate values ``(..., d)`` to images ``(..., H, W)``, summing channels when
    ``image_shape = (C, H, W)`` (Kong et al. 2024 sum the squared errors over latent channels)."""
    v = np.asarray(values)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or int(np.prod(shape)) != v.shape[-1]:
        raise ValueError(f"`image_shape` {tuple(image_shape)} does not match {v.shape[-1]} coordinates.")
    return v.reshape(v.shape[:-1] + shape).sum(axis=-3)


# =====================================================================================================
# PID
# =====================================================================================================
class PIDTerms(NamedTuple):
    """Redundancy, the two unique informations and synergy (nats unless converted), any common shape."""

    redundancy: ArrayLike
    unique1: ArrayLike
    unique2: ArrayLike
    synergy: ArrayLike

    def to_bits(self) -> PIDTerms:
        return PIDTerms(*(np.asarray(v) / NATS_PER_BIT for v in self))

    def as_dict(self) -> dict[str, ArrayLike]:
        return dict(zip(self._fields, self, strict=False))

    def as_array(self) -> np.ndarray:
        """``(4, ...)``: ``[R, U1, U2, S]``."""
        return np.stack([np.asarray(v, float) for v in self])


def _check_measure(measure: str) -> str:
    if measure not in PID_MEASURES:
        raise ValueError(
            f"Unknown PID measure {measure!r}; measures are {PID_MEASURES} "
            f"(pointwise_min: DiffusionPID; mmi: minimum mutual information; wb_imin: Williams-Beer I_min)."
        )
    return measure


def _weighted_mean(v, w, axis):
    v = np.asarray(v)
    if w is None:
        return np.mean(v, axis=axis)
    w = np.asarray(w)
    w = w / np.sum(w)
    return np.tensordot(w, np.moveaxis(v, axis, 0), axes=1)


def pid_terms(
    i1: ArrayLike,
    i2: ArrayLike,
    i12: ArrayLike,
    measure: str,
    *,
    weights: ArrayLike | None = None,
    axis: int | None = 0,
) -> PIDTerms:
    r"""PID terms from informations (module docstring):

    - ``"pointwise_min"`` / ``"wb_imin"``: ``R = E[min(i1, i2)]``, ``U_k = E[i_k] - R``,
      ``S = E[i12] - E[i1] - E[i2] + R``; pass pointwise MIs (DiffusionPID) or specific informations
      ``KL(p(y_k|x) || p(y_k))`` (Williams-Beer). ``axis=None`` keeps every element (per-sample terms).
    - ``"mmi"``: ``R = min(E[i1], E[i2])`` with the same ``U``, ``S``.

    ``E`` is the (``weights``-weighted) mean over ``axis``.
    """
    _check_measure(measure)
    i1, i2, i12 = np.asarray(i1), np.asarray(i2), np.asarray(i12)
    if axis is None:
        if measure == "mmi":
            raise ValueError("The 'mmi' measure needs averaged informations: pass `axis` (the sample axis).")
        red = np.minimum(i1, i2)
        return PIDTerms(red, i1 - red, i2 - red, i12 - i1 - i2 + red)
    m1, m2, m12 = (_weighted_mean(v, weights, axis) for v in (i1, i2, i12))
    red = np.minimum(m1, m2) if measure == "mmi" else _weighted_mean(np.minimum(i1, i2), weights, axis)
    return PIDTerms(red, m1 - red, m2 - red, m12 - m1 - m2 + red)


class PIDInformation(eqx.Module):
    r"""The informations every PID measure is built from, for ``N`` samples ``(x, y)``.

    Columns ``[0, 1, 2]`` = ``[y_1, y_2, (y_1, y_2)]`` (all given the context ``c``):

    - ``pointwise``: ``(N, 3)`` pointwise MIs ``i(x; . | c)`` (standard estimator or exact);
    - ``orthogonal``: ``(N, 3)`` orthogonal-estimator informations (None when exact);
    - ``pointwise_coords`` / ``orthogonal_coords``: ``(N, 3, d)`` per-coordinate versions (None when exact);
    - ``specific``: ``(N, 3)`` specific informations ``KL(p(. | x, c) || p(. | c))`` (Williams-Beer), or None;
    - ``posterior``: ``(N, A_1, A_2)`` the token posterior ``p(y_1, y_2 | x, c)`` behind them, or None;
    - ``weights``: ``(N,)`` sample weights (sum to one);
    - ``curves``: the MMSE curves (conditions ``c, c+y_1, c+y_2, c+y_1+y_2``, then one per token pair for
      the posterior), or None when exact.
    """

    pointwise: Float[Array, "N 3"]
    orthogonal: Float[Array, "N 3"] | None
    pointwise_coords: Float[Array, "N 3 d"] | None
    orthogonal_coords: Float[Array, "N 3 d"] | None
    specific: Float[Array, "N 3"] | None
    posterior: Float[Array, "N A1 A2"] | None
    weights: Float[Array, " N"]
    curves: InformationCurves | None
    sources: tuple[int, int] = eqx.field(static=True)
    context: tuple[int, ...] = eqx.field(static=True)


@dataclass(frozen=True, eq=False)
class PIDResult:
    """One PID measure applied to :class:`PIDInformation`.

    - ``measure``, ``estimator`` (``"standard"``, ``"orthogonal"`` or ``"exact"``);
    - ``terms``: image-level :class:`PIDTerms` (scalars, nats);
    - ``mutual_information``: ``(3,)`` ``[I(X;Y_1|C), I(X;Y_2|C), I(X;Y_1,Y_2|C)]`` used by the terms;
    - ``sample_terms``: per-sample terms ``(N,)`` (pointwise_min: pointwise MIs; wb_imin: specific
      informations) or None (mmi);
    - ``maps`` / ``sample_maps``: per-coordinate terms ``(d,)`` / ``(N, d)`` from the per-coordinate
      informations of the chosen estimator (None for wb_imin and for exact informations).
    """

    measure: str
    estimator: str
    terms: PIDTerms
    mutual_information: np.ndarray
    sample_terms: PIDTerms | None
    maps: PIDTerms | None
    sample_maps: PIDTerms | None


def _source_slots(model, sources, context):
    sources = _slots(model, sources, "sources")
    context = _slots(model, context, "context")
    if len(sources) != 2:
        raise ValueError(f"`sources` must name exactly two token slots, got {sources}.")
    if set(sources) & set(context):
        raise ValueError(f"`sources` {sources} and `context` {context} must be disjoint.")
    return sources, context


def _pair_prior(model, sources, context, tok: np.ndarray) -> np.ndarray:
    """``p(y_s1, y_s2 | y_C = c_n)`` for each sample: ``(N, A1, A2)`` (numpy)."""
    prior = model.token_prior
    if prior is None:
        raise ValueError(
            "The Williams-Beer measure needs the token prior p(y) for Bayes' rule; this model has none "
            "(pass token_prior= to TokenNetworkDenoiser)."
        )
    prior = np.asarray(prior, float)
    s1, s2 = sources
    other = tuple(j for j in range(model.n_tokens) if j not in (s1, s2) + context)
    p = prior.sum(axis=other) if other else prior
    kept = [j for j in range(model.n_tokens) if j not in other]  # sorted slots remaining
    order = [kept.index(s1), kept.index(s2)] + [kept.index(c) for c in context]
    p = np.transpose(p, order)  # (A1, A2, *ctx)
    out = np.empty((tok.shape[0],) + p.shape[:2])
    for i, row in enumerate(tok):
        q = p[(slice(None), slice(None)) + tuple(int(row[c]) for c in context)]
        z = q.sum()
        if z <= 0:
            raise ValueError(
                f"Sample {i} has a context {tuple(int(row[c]) for c in context)} of zero prior probability."
            )
        out[i] = q / z
    return out


def _kl_terms(post, prior):
    """Specific informations from a joint posterior/prior over (A1, A2): ``(N, 3)``."""

    def kl(p, q):
        return np.sum(
            np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(q > 0, q, 1.0))), 0.0),
            axis=tuple(range(1, p.ndim)),
        )

    return np.stack([kl(post.sum(2), prior.sum(2)), kl(post.sum(1), prior.sum(1)), kl(post, prior)], axis=1)


def _sample_weights(weights, n):
    if weights is None:
        return np.full((n,), 1.0 / n)
    w = np.asarray(weights, float)
    if w.shape != (n,) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"`sample_weights` must be non-negative, finite, shape ({n},), with a positive sum.")
    return np.asarray(w / w.sum())


def pid_information(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    key: jax.Array,
    *,
    sources: Sequence[int] = (0, 1),
    context: Sequence[int] = (),
    scheme: LogSNRScheme,
    n_noise: int = 1,
    specific: bool = True,
    sample_weights: ArrayLike | None = None,
    chunk_size: int | None = None,
) -> PIDInformation:
    r"""Estimate the informations behind every PID measure for samples ``(x_n, y_n)`` (usually drawn from
    the joint law, or stratified with ``sample_weights``).

    Conditions, evaluated on the same noisy points (common random numbers): ``c``, ``c + y_s1``,
    ``c + y_s2``, ``c + y_s1 + y_s2`` with each sample's own tokens; with ``specific=True`` also
    ``c + (y_s1, y_s2) = (u, v)`` for every token pair (the Williams-Beer posterior, by Bayes with the
    standard estimator, ``p(u, v | x, c) \propto p(u, v | c) e^{i(x; u, v | c)}``; pairs of zero prior get
    posterior zero and are not evaluated).
    """
    model = _check_model(model)
    xs = _check_points(model, x)
    n = xs.shape[0]
    sources, context = _source_slots(model, sources, context)
    tok = _sample_tokens(model, tokens, n)
    w = _sample_weights(sample_weights, n)
    s1, s2 = sources
    ctx = list(context)
    subsets = [ctx, ctx + [s1], ctx + [s2], ctx + [s1, s2]]
    masks = _mask_table(model.n_tokens, subsets)
    tok_c = [tok] * 4
    prior = None
    if specific:
        prior = _pair_prior(model, sources, context, np.asarray(tok))
        a1, a2 = prior.shape[1:]
        for u in range(a1):
            for v in range(a2):
                alt = tok.copy()
                alt[:, s1], alt[:, s2] = u, v
                ok = (prior[:, u, v] > 0)[:, None]
                tok_c.append(np.where(ok, alt, tok))  # zero-prior pairs: evaluate the sample's own tokens
        masks = np.concatenate([masks, np.broadcast_to(masks[3], (a1 * a2, model.n_tokens))], axis=0)
    tok_all = np.stack(tok_c, axis=1)
    pairs = ((0, 1), (0, 2), (0, 3))
    curves = mmse_curves(
        model, xs, tok_all, masks, key, scheme=scheme, n_noise=n_noise, pairs=pairs, chunk_size=chunk_size
    )
    pw = np.stack([curves.standard(0, k) for k in (1, 2, 3)], axis=1)
    orth = np.stack([curves.orthogonal(0, k) for k in (1, 2, 3)], axis=1)
    pw_c = np.stack([curves.standard_coords(0, k) for k in (1, 2, 3)], axis=1)
    orth_c = np.stack([curves.orthogonal_coords(0, k) for k in (1, 2, 3)], axis=1)
    spec = post = None
    if specific:
        a1, a2 = prior.shape[1:]
        i_uv = np.stack([curves.standard(0, 4 + k) for k in range(a1 * a2)], axis=1).reshape(n, a1, a2)
        q = np.asarray(prior, xs.dtype)
        logits = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)) + i_uv, -np.inf)
        flat = logits.reshape(n, -1)
        flat = np.exp(flat - flat.max(axis=1, keepdims=True))
        post = (flat / flat.sum(axis=1, keepdims=True)).reshape(n, a1, a2)
        spec = _kl_terms(post, q)
    return PIDInformation(pw, orth, pw_c, orth_c, spec, post, w, curves, sources, context)


def exact_pid_information(
    model: ConditionalMixture,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    *,
    sources: Sequence[int] = (0, 1),
    context: Sequence[int] = (),
    sample_weights: ArrayLike | None = None,
) -> PIDInformation:
    """The exact counterpart of :func:`pid_information` for an analytic :class:`ConditionalMixture`:
    pointwise MIs from exact log-densities and the exact token posterior ``p(y | x, c)``."""
    if not isinstance(model, ConditionalMixture):
        raise TypeError(f"Exact informations need a ConditionalMixture, got {type(model).__name__}.")
    xs = _check_points(model, x)
    n = xs.shape[0]
    sources, context = _source_slots(model, sources, context)
    tok = _sample_tokens(model, tokens, n)
    w = _sample_weights(sample_weights, n)
    ctx = list(context)
    s1, s2 = sources
    masks = _mask_table(model.n_tokens, [ctx, ctx + [s1], ctx + [s2], ctx + [s1, s2]])
    model.check_condition(
        np.broadcast_to(tok[:, None], (n, 4, model.n_tokens)), np.broadcast_to(masks, (n,) + masks.shape)
    )
    pw = np.stack([np.asarray(_exact_pmi(model, xs, tok, masks[0], masks[k])) for k in (1, 2, 3)], axis=1)
    prior = np.asarray(_pair_prior(model, sources, context, np.asarray(tok)), xs.dtype)
    post_full = np.asarray(_exact_token_posterior(model, xs, tok, masks[0]), float)  # (N, *alphabet)
    other = tuple(1 + j for j in range(model.n_tokens) if j not in (s1, s2))
    post = post_full.sum(axis=other) if other else post_full
    if s1 > s2:
        post = np.swapaxes(post, 1, 2)
    spec = _kl_terms(post, prior)
    return PIDInformation(pw, None, None, None, spec, post, w, None, sources, context)


@eqx.filter_jit
def _exact_token_posterior(model, xs, tok, mask):
    return jax.vmap(lambda xi, ti: model.data_token_posterior(xi, ti, mask))(xs, tok)


def decompose(
    info: PIDInformation, measure: str, *, estimator: str = "standard", map_estimator: str = "orthogonal"
) -> PIDResult:
    r"""Apply one PID ``measure`` to :class:`PIDInformation` (module docstring).

    ``estimator`` chooses the image-level pointwise informations (``"standard"`` or ``"orthogonal"``;
    ignored for exact informations and for ``wb_imin``, which uses the specific informations);
    ``map_estimator`` the per-coordinate ones for the maps (``"orthogonal"``: non-negative, DiffusionPID's
    pixel maps; or ``"standard"``).
    """
    _check_measure(measure)
    for name, est in (("estimator", estimator), ("map_estimator", map_estimator)):
        if est not in ESTIMATORS:
            raise ValueError(f"Unknown `{name}` {est!r}; use one of {ESTIMATORS}.")
    exact = info.orthogonal is None
    label = "exact" if exact else estimator
    w = info.weights
    if measure == "wb_imin":
        if info.specific is None:
            raise ValueError(
                "The 'wb_imin' measure needs specific informations: compute them with specific=True."
            )
        s = info.specific
        terms = pid_terms(s[:, 0], s[:, 1], s[:, 2], measure, weights=w)
        mi = np.asarray(_weighted_mean(s, w, 0))
        sample = pid_terms(s[:, 0], s[:, 1], s[:, 2], measure, axis=None)
        return PIDResult(
            measure,
            label,
            PIDTerms(*(float(v) for v in terms)),
            mi,
            PIDTerms(*(np.asarray(v) for v in sample)),
            None,
            None,
        )
    vals = info.pointwise if (exact or estimator == "standard") else info.orthogonal
    terms = pid_terms(vals[:, 0], vals[:, 1], vals[:, 2], measure, weights=w)
    mi = np.asarray(_weighted_mean(vals, w, 0))
    sample = None
    if measure == "pointwise_min":
        sample = pid_terms(vals[:, 0], vals[:, 1], vals[:, 2], measure, axis=None)
        sample = PIDTerms(*(np.asarray(v) for v in sample))
    maps = sample_maps = None
    c = info.orthogonal_coords if map_estimator == "orthogonal" else info.pointwise_coords
    if c is not None:
        maps = pid_terms(c[:, 0], c[:, 1], c[:, 2], measure, weights=w)
        maps = PIDTerms(*(np.asarray(v) for v in maps))
        if measure == "pointwise_min":
            sm = pid_terms(c[:, 0], c[:, 1], c[:, 2], measure, axis=None)
            sample_maps = PIDTerms(*(np.asarray(v) for v in sm))
    return PIDResult(measure, label, PIDTerms(*(float(v) for v in terms)), mi, sample, maps, sample_maps)


def pid(
    model: AbstractConditionalDenoiser,
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    key: jax.Array | None,
    *,
    measure: str | Sequence[str],
    estimator: str = "standard",
    sources: Sequence[int] = (0, 1),
    context: Sequence[int] = (),
    scheme: LogSNRScheme | None = None,
    n_noise: int = 1,
    sample_weights: ArrayLike | None = None,
    chunk_size: int | None = None,
) -> PIDResult | dict[str, PIDResult]:
    """PID of what tokens ``sources`` say about ``x`` (given ``context``: conditional PID), with the
    measure(s) named explicitly. ``estimator="exact"`` uses the exact informations of a
    :class:`ConditionalMixture` (no ``key``/``scheme`` needed). A tuple of measures returns a dict.
    """
    measures = (measure,) if isinstance(measure, str) else tuple(measure)
    if not measures:
        raise ValueError("`measure` must name at least one PID measure.")
    for m in measures:
        _check_measure(m)
    if estimator not in ESTIMATORS + ("exact",):
        raise ValueError(f"Unknown `estimator` {estimator!r}; use one of {ESTIMATORS + ('exact',)}.")
    if estimator == "exact":
        info = exact_pid_information(
            model, x, tokens, sources=sources, context=context, sample_weights=sample_weights
        )
    else:
        if scheme is None:
            raise ValueError("`scheme` (a LogSNRScheme) is required for the MMSE estimators.")
        info = pid_information(
            model,
            x,
            tokens,
            key,
            sources=sources,
            context=context,
            scheme=scheme,
            n_noise=n_noise,
            specific="wb_imin" in measures,
            sample_weights=sample_weights,
            chunk_size=chunk_size,
        )
    out = {
        m: decompose(info, m, estimator="standard" if estimator == "exact" else estimator) for m in measures
    }
    return out[measures[0]] if isinstance(measure, str) else out


# =====================================================================================================
# exact discrete PID
# =====================================================================================================
def _check_joint(joint, context: bool) -> np.ndarray:
    p = np.asarray(joint, float)
    want = 4 if context else 3
    if p.ndim != want:
        raise ValueError(
            f"`joint` must have {want} axes ({'(C, A1, A2, G)' if context else '(A1, A2, G)'}), "
            f"got shape {p.shape}."
        )
    if np.any(~np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-8:
        raise ValueError(
            f"`joint` must be a probability table (non-negative, summing to one), got sum {p.sum():.6g}."
        )
    return p if context else p[None]


def _log_ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            (num > 0) & (den > 0),
            np.log(np.where(num > 0, num, 1.0)) - np.log(np.where(den > 0, den, 1.0)),
            0.0,
        )


def discrete_pid(joint: ArrayLike, measure: str, *, unit: str = "nats", context: bool = False) -> PIDTerms:
    r"""Exact PID of a discrete table ``p(y_1, y_2, g)`` (shape ``(A1, A2, G)``; with ``context=True``
    ``p(c, y_1, y_2, g)`` of shape ``(C, A1, A2, G)``, giving the conditional PID averaged over ``c``).

    With ``i_k(y, g | c) = log p(g | y_k, c) / p(g | c)`` (and ``i_12`` for the pair):

    - ``"pointwise_min"``: ``R = sum p min(i_1, i_2)``;
    - ``"mmi"``: ``R = min(I_1, I_2)``, ``I_k = sum p i_k``;
    - ``"wb_imin"``: ``R = sum_{g,c} p(g, c) min_k I(G=g; Y_k | c)``, ``I(G=g; Y_k | c) = sum_y p(y | g, c) i_k``;

    then ``U_k = I_k - R`` and ``S = I_12 - I_1 - I_2 + R``. ``unit``: ``"nats"`` or ``"bits"``.
    """
    _check_measure(measure)
    if unit not in ("nats", "bits"):
        raise ValueError(f"`unit` must be 'nats' or 'bits', got {unit!r}.")
    p = _check_joint(joint, context)  # (C, A1, A2, G)
    p_c = p.sum(axis=(1, 2, 3), keepdims=True)
    p_g = p.sum(axis=(1, 2), keepdims=True)  # p(c, g)
    p_1g = p.sum(axis=2, keepdims=True)  # p(c, y1, g)
    p_2g = p.sum(axis=1, keepdims=True)  # p(c, y2, g)
    p_1 = p.sum(axis=(2, 3), keepdims=True)  # p(c, y1)
    p_2 = p.sum(axis=(1, 3), keepdims=True)
    p_12 = p.sum(axis=3, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        g_c = np.where(p_c > 0, p_g / np.where(p_c > 0, p_c, 1), 0)
        g_1 = np.where(p_1 > 0, p_1g / np.where(p_1 > 0, p_1, 1), 0)
        g_2 = np.where(p_2 > 0, p_2g / np.where(p_2 > 0, p_2, 1), 0)
        g_12 = np.where(p_12 > 0, p / np.where(p_12 > 0, p_12, 1), 0)
    i1 = np.broadcast_to(_log_ratio(g_1, g_c), p.shape)
    i2 = np.broadcast_to(_log_ratio(g_2, g_c), p.shape)
    i12 = _log_ratio(g_12, np.broadcast_to(g_c, p.shape))
    big1, big2, big12 = (float(np.sum(p * v)) for v in (i1, i2, i12))
    if measure == "pointwise_min":
        red = float(np.sum(p * np.minimum(i1, i2)))
    elif measure == "mmi":
        red = min(big1, big2)
    else:
        pg = p_g[:, 0, 0, :]  # (C, G)
        s1 = (p * i1).sum(axis=(1, 2))  # p(c, g) * I(G=g; Y1 | c)
        s2 = (p * i2).sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            spec1 = np.where(pg > 0, s1 / np.where(pg > 0, pg, 1), 0)
            spec2 = np.where(pg > 0, s2 / np.where(pg > 0, pg, 1), 0)
        red = float(np.sum(pg * np.minimum(spec1, spec2)))
    terms = PIDTerms(red, big1 - red, big2 - red, big12 - big1 - big2 + red)
    if unit == "bits":
        terms = PIDTerms(*(float(v) / NATS_PER_BIT for v in terms))
    return PIDTerms(*(float(v) for v in terms))


def well_separated_joint(
    model: ConditionalMixture,
    *,
    sources: Sequence[int] = (0, 1),
    context: Sequence[int] = (),
    decimals: int = 6,
) -> np.ndarray:
    r"""The discrete law the image carries in the well-separated limit: ``p([c,] y_s1, y_s2, g)`` with
    ``g`` the index of each component's distinct ``(mean, covariance)`` (components that coincide cannot be
    told apart by ``x``; separated ones can be told apart exactly), numbered in order of first appearance
    among the components. Shape ``(A1, A2, G)``, or
    ``(C, A1, A2, G)`` with the context slots flattened into ``C`` when ``context`` is non-empty."""
    if not isinstance(model, ConditionalMixture):
        raise TypeError(f"`model` must be a ConditionalMixture, got {type(model).__name__}.")
    sources, context = _source_slots(model, sources, context)
    means = np.round(np.asarray(model.means, float), decimals)
    covs = np.round(np.asarray(model.eigvals, float), decimals)
    key_rows = np.concatenate([means, covs], axis=1)
    if model.eigvecs is not None:
        key_rows = np.concatenate(
            [key_rows, np.round(np.asarray(model.eigvecs, float), decimals).reshape(len(means), -1)], 1
        )
    _, first, g = np.unique(key_rows, axis=0, return_index=True, return_inverse=True)
    relabel = np.empty(len(first), int)
    relabel[np.argsort(first)] = np.arange(len(first))  # g numbered by first appearance in component order
    g = relabel[np.asarray(g).reshape(-1)]
    n_g = int(g.max()) + 1
    tok = np.asarray(model.component_tokens)
    w = np.asarray(model.weights, float)
    a1, a2 = model.alphabet_sizes[sources[0]], model.alphabet_sizes[sources[1]]
    csizes = [model.alphabet_sizes[c] for c in context]
    n_c = int(np.prod(csizes)) if context else 1
    p = np.zeros((n_c, a1, a2, n_g))
    for k in range(len(w)):
        c = int(np.ravel_multi_index(tuple(tok[k, list(context)]), csizes)) if context else 0
        p[c, tok[k, sources[0]], tok[k, sources[1]], g[k]] += w[k]
    p /= p.sum()
    return p if context else p[0]
