"""Pointwise log-likelihood (ITD) and pointwise / per-pixel mutual information (Kong et al. 2024) from MMSE
curves, with their exact counterparts for analytic conditional mixtures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ...scores.conditional import AbstractConditionalDenoiser, ConditionalMixture
from ._logsnr import LogSNRScheme, gaussian_mmse
from ._mmse import (
    InformationCurves,
    _check_model,
    _check_points,
    _mask_table,
    _sample_tokens,
    _slots,
    mmse_curves,
)


class NegLogLikelihood(eqx.Module):
    """ITD estimate of ``-log p(x | y_given)`` (returned by :func:`neg_log_likelihood`; nats).

    Attributes:
        nll: ``(N,)`` the estimate of ``-log p(x | y_given)`` per point.
        nll_coords: ``(N, d)`` its per-coordinate parts (they sum to ``nll``).
        gap: ``(N, L)`` the integrand ``1/2 (mmse - mmse_G)`` at each point's log-SNRs.
        curves: the underlying MMSE curves (one condition: ``given``).
    """

    nll: Float[Array | np.ndarray, " N"]
    nll_coords: Float[Array | np.ndarray, "N d"]
    gap: Float[Array | np.ndarray, "N L"]
    curves: InformationCurves


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

    Args:
        model: the conditional denoiser.
        x: the points, shape ``(N, d)`` (or ``(d,)``).
        key: PRNG key of the log-SNRs and noise draws.
        scheme: the log-SNR rule (:class:`LogSNRScheme`).
        tokens: ``(N, n)`` token values of each point (or ``(n,)`` shared); required when ``given`` is
            non-empty; ``None`` (default) for the unconditional likelihood.
        given: token slots conditioned on; empty (default) for ``-log p(x)``.
        n_noise: noise draws per log-SNR.
        base_variances: variances ``v`` of the Gaussian base, scalar or ``(d,)``, positive (default ``1``).
        chunk_size: points evaluated at once (memory only; ``None`` chooses).
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
    """``i(x; y_about | y_given)`` per point by both estimators (returned by :func:`pointwise_information`;
    nats).

    Attributes:
        standard: ``(N,)`` the standard estimator.
        orthogonal: ``(N,)`` the orthogonal estimator.
        standard_coords: ``(N, d)`` the standard estimator per coordinate.
        orthogonal_coords: ``(N, d)`` the orthogonal estimator per coordinate (non-negative).
        curves: the MMSE curves (condition 0 = ``given``, 1 = ``given + about``; integrands via
            ``curves.standard_integrand(0, 1)``).
    """

    standard: Float[Array | np.ndarray, " N"]
    orthogonal: Float[Array | np.ndarray, " N"]
    standard_coords: Float[Array | np.ndarray, "N d"]
    orthogonal_coords: Float[Array | np.ndarray, "N d"]
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
    docstring).

    Args:
        model: the conditional denoiser.
        x: the points, shape ``(N, d)`` (or ``(d,)``).
        tokens: ``(N, n)`` each point's own token values (or ``(n,)`` shared).
        key: PRNG key of the log-SNRs and noise draws.
        about: the token slots whose information is measured; non-empty and disjoint from ``given``.
        given: token slots conditioned on in both terms; empty (default) for unconditional information.
        scheme: the log-SNR rule (:class:`LogSNRScheme`).
        n_noise: noise draws per log-SNR, shared by both conditions.
        coordinate_curves: also keep the per-coordinate curves in ``curves``.
        chunk_size: points evaluated at once (memory only; ``None`` chooses).
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
    """Exact ``log p(x | y_about, y_given) - log p(x | y_given)`` of an analytic conditional mixture.

    Args:
        model: the analytic mixture (a :class:`~diffsim.scores.conditional.ConditionalMixture`, else
            ``TypeError``).
        x: the points, shape ``(N, d)`` (or ``(d,)``).
        tokens: ``(N, n)`` each point's token values (or ``(n,)`` shared).
        about: the token slots whose information is measured.
        given: token slots conditioned on in both terms; empty (default) for none.

    Returns:
        ``(N,)`` the pointwise information in nats.
    """
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


def pixel_map(values: Float[ArrayLike, "*b d"], image_shape: Sequence[int]) -> Float[np.ndarray, "*b H W"]:
    """Reshape per-coordinate values ``(..., d)`` to images ``(..., H, W)``, summing channels when
    ``image_shape = (C, H, W)`` (Kong et al. 2024 sum the squared errors over latent channels).

    Args:
        values: per-coordinate values, shape ``(..., d)``.
        image_shape: ``(H, W)`` or ``(C, H, W)`` with ``C H W = d`` (else ``ValueError``).
    """
    v = np.asarray(values)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or int(np.prod(shape)) != v.shape[-1]:
        raise ValueError(f"`image_shape` {tuple(image_shape)} does not match {v.shape[-1]} coordinates.")
    return v.reshape(v.shape[:-1] + shape).sum(axis=-3)
