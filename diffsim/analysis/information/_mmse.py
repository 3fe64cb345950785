"""MMSE curves: per-log-SNR denoising errors of points under several token conditions with common random
numbers (the core of every information estimator here), and the input checks the estimators share."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Int

from ..._validation import as_float_array, check_key, check_positive_int
from ...scores.conditional import AbstractConditionalDenoiser, ConditionalMixture, channel_coefficients
from ._logsnr import LogSNRScheme, _check_scheme


class InformationCurves(eqx.Module):
    r"""Per-log-SNR integrands ("MMSE curves") of ``N`` points under ``M`` conditions, with common random
    numbers across conditions (numpy arrays).

    ``E_eps`` is the mean over the ``n_noise`` draws at each log-SNR. Integrate with ``sum_l w_l (.)``.
    Conditions are indexed as passed to :func:`mmse_curves`; "``b`` refines ``a``" means condition ``b``
    conditions on everything ``a`` does and more.

    Attributes:
        log_snr: ``(N, L)`` the log-SNRs of each point.
        weight: ``(N, L)`` their integration weights.
        mmse: ``(N, M, L)`` ``E_eps |eps - eps_hat_m|^2`` (image level).
        mmse_coords: ``(N, M, d)`` ``sum_l w_l E_eps (eps_j - eps_hat_{m,j})^2`` (integrated per
            coordinate).
        orth: ``(N, P, L)`` ``E_eps |eps_hat_a - eps_hat_b|^2`` for each pair ``(a, b)`` of :attr:`pairs`.
        orth_coords: ``(N, P, d)`` its per-coordinate integral.
        mmse_curve_coords: ``(N, M, L, d)`` per-coordinate curves (only with ``coordinate_curves=True``,
            else ``None``).
        orth_curve_coords: ``(N, P, L, d)`` per-coordinate pair curves (only with ``coordinate_curves=True``,
            else ``None``).
        noise_sq: ``(N, L, d)`` the mean of ``eps_j^2`` over the draws (only with ``noise_power=True``, else
            ``None``; the control variate of :func:`neg_log_likelihood`).
        pairs: the ``P`` condition pairs ``(a, b)`` whose orthogonal terms were computed.
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
        """``1/2 E|eps_hat_a - eps_hat_b|^2`` ``(N, L)``: the orthogonal estimator's integrand (pair
        computed)."""
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

    def at(lam_l, e):  # one log-SNR, one noise draw, all conditions (common random numbers)
        a, b = channel_coefficients(lam_l)
        eh = model.eps_conditions(lam_l, a * x + b * e, tokens, masks)  # (M, d)
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
    out = curve_outputs(lam, w, err, dif, n_noise.astype(x.dtype), coordinate_curves)
    if noise_power:
        out["noise_sq"] = esq / n_noise.astype(x.dtype)
    return out


def curve_outputs(lam, w, err, dif, nf, coordinate_curves: bool) -> dict:
    """The curves of one point from the noise-summed squared errors ``err`` ``(L, M, d)`` (per mask or
    variant) and squared denoiser differences ``dif`` ``(L, P, d)`` (per pair): averaged over the ``nf``
    draws, integrated over log-SNR with the weights ``w`` per coordinate and in total."""
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

    Args:
        model: the conditional denoiser (:class:`~diffsim.scores.conditional.ConditionalMixture`, a token
            network, ...).
        x: the points, shape ``(N, d)`` (or ``(d,)`` for one).
        tokens: ``(N, M, n)`` (or ``(M, n)`` shared by all points) token values of each condition.
        masks: ``(M, n)`` or ``(N, M, n)`` the conditioned slots of each condition.
        key: PRNG key of the log-SNRs and noise draws (point ``i`` uses ``fold_in(key, i)``).
        scheme: the log-SNR rule (:class:`LogSNRScheme`).
        n_noise: noise draws per log-SNR, shared by all conditions.
        pairs: condition pairs ``(a, b)`` whose orthogonal terms ``E|eps_hat_a - eps_hat_b|^2`` to keep.
        coordinate_curves: also keep the per-coordinate curves.
        noise_power: also keep ``mean eps_j^2`` (``noise_sq``).
        chunk_size: points evaluated at once (memory; an explicit value fixes the compiled shape, the last
            chunk is padded); ``None`` picks one from the problem size; results do not depend on it.
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


def _mask_table(n_tokens: int, subsets: Sequence[Sequence[int]]) -> np.ndarray:
    m = np.zeros((len(subsets), n_tokens), bool)
    for i, s in enumerate(subsets):
        m[i, list(s)] = True
    return np.asarray(m)


def _sample_tokens(model, tokens, n, name="tokens") -> np.ndarray:
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
