r"""Pointwise / pixel-wise mutual information and PID / CPID for ANY conditional model given as condition
variants (:class:`ConditionVariants`): the I-MMSE estimators of Kong et al. (ICLR 2023, 2024) and the PID
of DiffusionPID (Dewan et al., NeurIPS 2024), on external models (diffusers pipelines, JAX or PyTorch
callables).

**Channel.** For a log-SNR ``lambda`` with ``a^2 = sigmoid(lambda)``, ``b^2 = sigmoid(-lambda)`` the noisy
point is ``x_lambda = a x + b eps``; the model is queried at its process time
``t = clip(t(lambda), t_min, t_max)`` on ``x_t = (alpha_t / a) x_lambda`` (exactly its own marginal state
when ``t`` is inside the range, where ``alpha_t / a = sqrt(alpha_t^2 + sigma_t^2)``), the convention of
:class:`~diffsim.scores.conditional.TokenNetworkDenoiser` and, up to snapping to trained timesteps, of the
public Info-Decomp code. The log-SNR rule is any :class:`LogSNRScheme` (Info-Decomp's truncated logistic,
``loc 1, scale 2, clip 3`` by default in the docs, uniform, Gauss-Legendre, fixed).

**Estimators** (nats), for variants ``a`` (less conditioned) and ``b`` (more conditioned):

    standard:    i(x; b | a)   = 1/2 \int E_eps [ |eps - eps_hat_a(x_l)|^2 - |eps - eps_hat_b(x_l)|^2 ] d lam,
    orthogonal:  i^o(x; b | a) = 1/2 \int E_eps | eps_hat_a(x_l) - eps_hat_b(x_l) |^2 d lam,

with the same ``(lambda, eps)`` for every variant of a point (common random numbers) and per-coordinate
(pixel) versions from ``|v|^2 = sum_j v_j^2``. **PID / CPID** from four variants
``[c, c + y_1, c + y_2, c + y_1 + y_2]`` (``c`` a context, possibly empty): the informations
``i(x; y_1 | c), i(x; y_2 | c), i(x; y_1, y_2 | c)`` against variant 0, then the measures of
:func:`decompose` (``"pointwise_min"``: DiffusionPID's ``R = E min(i_1, i_2)``; ``"mmi"``).

Point ``i`` draws from ``fold_in(key, i)`` exactly as :func:`mmse_curves` does, so on a wrapped exact model
these estimates coincide with the token-network estimators draw for draw, and do not depend on chunking or
on how points are grouped.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from ..._validation import check_key, check_positive_int
from ...scores.conditional import channel_coefficients
from ._logsnr import LogSNRScheme, _check_scheme
from ._mmse import InformationCurves, curve_outputs
from ._pid import (
    ESTIMATORS,
    PIDInformation,
    PIDResult,
    PIDTerms,
    _check_measure,
    _sample_weights,
    decompose,
    pid_terms,
)
from ._pointwise import PointwiseInformation, pixel_map
from ._variants import ConditionVariants


VARIANT_PID_MEASURES = ("pointwise_min", "mmi")


def _variants_one(variants, x, key, scheme, n_noise, pa, pb, coordinate_curves):
    """Curves of one point ``x (d,)`` under all variants (one model call per noise draw when batched)."""
    k_lam, k_eps = jr.split(key)
    lam, w = scheme.sample(k_lam, x.dtype)
    proc = variants.process
    d = x.shape[0]

    def at(lam_l, e):
        a, b = channel_coefficients(lam_l)
        t = jnp.clip(proc.t_from_log_snr(lam_l), proc.t_min, proc.t_max).astype(x.dtype)
        x_t = (a * x + b * e) * (proc.alpha(t).astype(x.dtype) / a)
        eh = variants.eps(t, x_t)  # (M, d)
        return (e[None, :] - eh) ** 2, (eh[pa] - eh[pb]) ** 2

    def body(k, carry):
        e = jr.normal(jr.fold_in(k_eps, k), (lam.shape[0], d), x.dtype)
        err, dif = jax.vmap(at)(lam, e)
        return carry[0] + err, carry[1] + dif

    m, p = variants.n_variants, pa.shape[0]
    init = (jnp.zeros((lam.shape[0], m, d), x.dtype), jnp.zeros((lam.shape[0], p, d), x.dtype))
    err, dif = jax.lax.fori_loop(0, n_noise, body, init)
    return curve_outputs(lam, w, err, dif, n_noise.astype(x.dtype), coordinate_curves)


@eqx.filter_jit
def _variants_chunk(variants, x, idx, key, scheme, n_noise, pa, pb, coordinate_curves):
    def one(xi, i):
        return _variants_one(variants, xi, jr.fold_in(key, i), scheme, n_noise, pa, pb, coordinate_curves)

    return jax.vmap(one)(x, idx)


def _check_variant_list(variants, groups, n) -> tuple[list[ConditionVariants], np.ndarray]:
    if isinstance(variants, ConditionVariants):
        vlist = [variants]
    elif isinstance(variants, Sequence) and not isinstance(variants, (str, bytes)) and len(variants) > 0:
        vlist = list(variants)
    else:
        raise TypeError(
            "`variants` must be a ConditionVariants (ConditionVariants.from_scores([...])) or a non-empty "
            f"sequence of them (one per group of points), got {type(variants).__name__}."
        )
    for i, v in enumerate(vlist):
        if not isinstance(v, ConditionVariants):
            raise TypeError(f"`variants[{i}]` must be a ConditionVariants, got {type(v).__name__}.")
        ref = vlist[0]
        if v.n_variants != ref.n_variants or v.dim != ref.dim:
            raise ValueError(
                f"`variants[{i}]` has {v.n_variants} variants of dimension {v.dim}; variants[0] has "
                f"{ref.n_variants} of dimension {ref.dim}."
            )
    if groups is None:
        if len(vlist) != 1:
            raise ValueError(f"`groups` (N,) is required with {len(vlist)} ConditionVariants.")
        return vlist, np.zeros(n, int)
    g = np.asarray(groups)
    if g.shape != (n,) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"`groups` must be integers of shape ({n},) (one group per point), got {g.shape}.")
    if np.any(g < 0) or np.any(g >= len(vlist)):
        raise ValueError(f"`groups` must lie in 0..{len(vlist) - 1} (one ConditionVariants per group).")
    return vlist, g


def _check_x(x, dim) -> np.ndarray:
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`x` must be an array of clean points (N, {dim}), got {type(x).__name__}.")
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"`x` must be numeric, got dtype {arr.dtype}.")
    arr = (
        arr.astype(np.result_type(arr.dtype, np.float32))
        if not np.issubdtype(arr.dtype, np.floating)
        else arr
    )
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] < 1:
        raise ValueError(
            f"`x` must have shape (N, {dim}) (flat clean points of the variants), got {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("`x` contains non-finite values (NaN or inf).")
    return arr


def variant_curves(
    variants: ConditionVariants | Sequence[ConditionVariants],
    x: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    scheme: LogSNRScheme,
    n_noise: int = 1,
    pairs: Sequence[tuple[int, int]] = (),
    coordinate_curves: bool = False,
    groups: Int[ArrayLike, " N"] | None = None,
    chunk_size: int | None = None,
) -> InformationCurves:
    r"""MMSE curves of ``N`` clean points under the ``M`` condition variants (module docstring), with
    common random numbers across variants: ``mmse (N, M, L)``, per-coordinate integrals, and the orthogonal
    terms ``E|eps_hat_a - eps_hat_b|^2`` of ``pairs``.

    Args:
        variants: one :class:`ConditionVariants` shared by all points, or one per group of points (e.g.
            per prompt) with ``groups``.
        x: clean points ``(N, d)`` (flattened samples; ``(d,)`` for one).
        key: PRNG key; point ``i`` uses ``fold_in(key, i)``.
        scheme: the log-SNR rule (:class:`LogSNRScheme`, e.g. ``LogSNRScheme.logistic(64)``).
        n_noise: noise draws per log-SNR, shared by all variants.
        pairs: variant pairs ``(a, b)`` whose orthogonal terms to keep.
        coordinate_curves: also keep the per-coordinate curves ``(N, M, L, d)``.
        groups: ``(N,)`` the index into ``variants`` of each point (required with several variants).
        chunk_size: points per compiled call (memory only; results do not depend on it).
    """
    scheme = _check_scheme(scheme)
    key = check_key(key)
    n_noise = check_positive_int(n_noise, "n_noise")
    first = variants if isinstance(variants, ConditionVariants) else None
    if first is None and isinstance(variants, Sequence) and variants:
        first = variants[0] if isinstance(variants[0], ConditionVariants) else None
    if first is None:
        _check_variant_list(variants, None, 0)  # raises the explanatory TypeError
    xs = _check_x(x, first.dim)
    n = xs.shape[0]
    vlist, g = _check_variant_list(variants, groups, n)
    m = vlist[0].n_variants
    pairs = tuple((int(a), int(b)) for a, b in pairs)
    for a, b in pairs:
        if not (0 <= a < m and 0 <= b < m):
            raise ValueError(f"`pairs` entry ({a}, {b}) out of range for {m} variants.")
    if chunk_size is None:
        per_point = scheme.n * (m * (3 if coordinate_curves else 2) + len(pairs)) * first.dim
        largest = int(np.bincount(g, minlength=len(vlist)).max())
        chunk_size = int(max(1, min(largest, 4_000_000 // max(per_point, 1))))
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    pa = np.asarray([p[0] for p in pairs], np.int32)
    pb = np.asarray([p[1] for p in pairs], np.int32)
    nn = np.asarray(n_noise, np.int32)
    rows: dict[int, dict[str, np.ndarray]] = {}
    for gi, var in enumerate(vlist):
        members = np.flatnonzero(g == gi)
        for start in range(0, members.size, chunk_size):
            idx = members[start : start + chunk_size]
            pad = np.concatenate([idx, np.repeat(idx[-1:], chunk_size - idx.size)])
            out = _variants_chunk(var, xs[pad], pad, key, scheme, nn, pa, pb, bool(coordinate_curves))
            out = {k: np.asarray(v) for k, v in out.items()}
            for j, i in enumerate(idx):
                rows[int(i)] = {k: v[j] for k, v in out.items()}
    res = {k: np.stack([rows[i][k] for i in range(n)]) for k in rows[0]}
    for k in ("mmse", "orth"):
        if not np.all(np.isfinite(res[k])):
            bad = np.flatnonzero(~np.all(np.isfinite(res[k].reshape(n, -1)), axis=1))
            raise ValueError(
                f"The model returned non-finite noise predictions for the points {bad[:8].tolist()} of `x` "
                "(check the model, its dtype and the log-SNR range of `scheme`)."
            )
    return InformationCurves(
        res["log_snr"],
        res["weight"],
        res["mmse"],
        res["mmse_coords"],
        res["orth"],
        res["orth_coords"],
        res.get("mmse_curve_coords"),
        res.get("orth_curve_coords"),
        None,
        pairs,
    )


def variant_information(
    variants: ConditionVariants | Sequence[ConditionVariants],
    x: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    scheme: LogSNRScheme,
    given: int = 0,
    about: int = 1,
    n_noise: int = 1,
    coordinate_curves: bool = False,
    groups: Int[ArrayLike, " N"] | None = None,
    chunk_size: int | None = None,
) -> PointwiseInformation:
    r"""Pointwise and pixel-wise mutual information ``i(x; about | given)`` between a condition and each
    clean point, by the standard and the orthogonal estimator (module docstring; Kong et al. 2024):

    ``standard = 1/2 \int E (|eps - eps_hat_given|^2 - |eps - eps_hat_about|^2) d lambda`` (equals
    ``log p(x | about) - log p(x | given)`` for exact denoisers), ``orthogonal = 1/2 \int E |eps_hat_given -
    eps_hat_about|^2 d lambda >= 0`` (the same on average over ``x ~ p(x | about)``), each also per
    coordinate (``*_coords`` ``(N, d)``; reshape with :func:`pixel_map`).

    Args:
        variants: condition variants (:class:`ConditionVariants`), or one per group with ``groups``.
        x: clean points ``(N, d)``.
        key: PRNG key.
        scheme: the log-SNR rule.
        given: index of the less-conditioned variant (e.g. the empty prompt or the prompt without a word).
        about: index of the more-conditioned variant (it must condition on everything ``given`` does).
        n_noise: noise draws per log-SNR.
        coordinate_curves: keep per-coordinate curves in ``curves``.
        groups: ``(N,)`` group of each point when ``variants`` is a sequence.
        chunk_size: points per compiled call.
    """
    m = _n_variants(variants)
    for name, v in (("given", given), ("about", about)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < m:
            raise ValueError(f"`{name}` must be a variant index in 0..{m - 1}, got {v!r}.")
    if int(given) == int(about):
        raise ValueError(f"`given` and `about` must be different variants, both are {given}.")
    curves = variant_curves(
        variants,
        x,
        key,
        scheme=scheme,
        n_noise=n_noise,
        pairs=((int(given), int(about)),),
        coordinate_curves=coordinate_curves,
        groups=groups,
        chunk_size=chunk_size,
    )
    a, b = int(given), int(about)
    return PointwiseInformation(
        curves.standard(a, b),
        curves.orthogonal(a, b),
        curves.standard_coords(a, b),
        curves.orthogonal_coords(a, b),
        curves,
    )


def _n_variants(variants) -> int:
    if isinstance(variants, ConditionVariants):
        return variants.n_variants
    if isinstance(variants, Sequence) and variants and isinstance(variants[0], ConditionVariants):
        return variants[0].n_variants
    _check_variant_list(variants, None, 0)
    raise AssertionError  # pragma: no cover


def variant_pid_information(
    variants: ConditionVariants | Sequence[ConditionVariants],
    x: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    scheme: LogSNRScheme,
    n_noise: int = 1,
    sample_weights: Float[ArrayLike, " N"] | None = None,
    groups: Int[ArrayLike, " N"] | None = None,
    chunk_size: int | None = None,
) -> PIDInformation:
    r"""The informations behind the PID (or, with a context, CPID) of two conditions about ``x``, from four
    variants ``[c, c + y_1, c + y_2, c + y_1 + y_2]`` (e.g. prompt without both words, without the second,
    without the first, full prompt; or empty prompt, only ``y_1``, only ``y_2``, both for a plain PID).

    Columns ``[0, 1, 2]`` of the result are ``i(x; y_1 | c)``, ``i(x; y_2 | c)``, ``i(x; y_1, y_2 | c)``
    (standard in ``pointwise``, orthogonal in ``orthogonal``, per coordinate in ``*_coords``), all
    against variant 0 on the same noisy points; ``sources = (1, 2)`` and ``context = (0,)`` name variants.
    Apply a measure with :func:`decompose` (``"pointwise_min"`` or ``"mmi"``) or :func:`variant_pid`.

    Args:
        variants: four condition variants in the order above, or one such set per group of points.
        x: clean points ``(N, d)`` (e.g. samples generated with the full prompt).
        key: PRNG key.
        scheme: the log-SNR rule.
        n_noise: noise draws per log-SNR.
        sample_weights: ``(N,)`` weights of the points (default uniform).
        groups: ``(N,)`` group of each point when ``variants`` is a sequence.
        chunk_size: points per compiled call.
    """
    m = _n_variants(variants)
    if m != 4:
        raise ValueError(
            f"`variants` must hold exactly 4 condition variants [c, c+y1, c+y2, c+y1+y2] for a PID, got {m}."
        )
    curves = variant_curves(
        variants,
        x,
        key,
        scheme=scheme,
        n_noise=n_noise,
        pairs=((0, 1), (0, 2), (0, 3)),
        groups=groups,
        chunk_size=chunk_size,
    )
    n = curves.mmse.shape[0]
    w = _sample_weights(sample_weights, n)
    pw = np.stack([curves.standard(0, k) for k in (1, 2, 3)], axis=1)
    orth = np.stack([curves.orthogonal(0, k) for k in (1, 2, 3)], axis=1)
    pw_c = np.stack([curves.standard_coords(0, k) for k in (1, 2, 3)], axis=1)
    orth_c = np.stack([curves.orthogonal_coords(0, k) for k in (1, 2, 3)], axis=1)
    return PIDInformation(pw, orth, pw_c, orth_c, None, None, w, curves, (1, 2), (0,))


def variant_pid(
    variants: ConditionVariants | Sequence[ConditionVariants],
    x: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    measure: str | Sequence[str],
    scheme: LogSNRScheme,
    estimator: str = "standard",
    map_estimator: str = "orthogonal",
    n_noise: int = 1,
    sample_weights: Float[ArrayLike, " N"] | None = None,
    groups: Int[ArrayLike, " N"] | None = None,
    chunk_size: int | None = None,
) -> dict[str, PIDResult]:
    r"""PID / CPID (redundancy, unique informations, synergy) of two conditions about ``x`` on any model:
    :func:`variant_pid_information` then :func:`decompose` per measure,

    ``R = E min(i_1, i_2)`` (``"pointwise_min"``, DiffusionPID) or ``min(E i_1, E i_2)`` (``"mmi"``),
    ``U_k = E i_k - R``, ``S = E i_12 - E i_1 - E i_2 + R``; pixel maps from the per-coordinate
    informations of ``map_estimator`` (``maps``, ``sample_maps``; see :func:`pixel_pid` for images).

    Args:
        variants: four variants ``[c, c+y1, c+y2, c+y1+y2]`` (or one set per group, with ``groups``).
        x: clean points ``(N, d)``.
        key: PRNG key.
        measure: one measure name or several (``"pointwise_min"``, ``"mmi"``).
        scheme: the log-SNR rule.
        estimator: ``"standard"`` or ``"orthogonal"`` image-level informations.
        map_estimator: ``"orthogonal"`` (non-negative, DiffusionPID's maps) or ``"standard"``.
        n_noise: noise draws per log-SNR.
        sample_weights: ``(N,)`` point weights.
        groups: ``(N,)`` group of each point when ``variants`` is a sequence.
        chunk_size: points per compiled call.

    Returns:
        ``{measure: PIDResult}`` in the order the measures are named.
    """
    measures = _check_measures(measure)
    for name, est in (("estimator", estimator), ("map_estimator", map_estimator)):
        if est not in ESTIMATORS:
            raise ValueError(f"Unknown `{name}` {est!r}; use one of {ESTIMATORS}.")
    info = variant_pid_information(
        variants,
        x,
        key,
        scheme=scheme,
        n_noise=n_noise,
        sample_weights=sample_weights,
        groups=groups,
        chunk_size=chunk_size,
    )
    return {m: decompose(info, m, estimator=estimator, map_estimator=map_estimator) for m in measures}


def _check_measures(measure) -> tuple[str, ...]:
    measures = (measure,) if isinstance(measure, str) else tuple(measure)
    if not measures:
        raise ValueError("`measure` must name at least one PID measure.")
    for m in measures:
        _check_measure(m)
        if m not in VARIANT_PID_MEASURES:
            raise ValueError(
                f"`measure` {m!r} needs the posterior over an alphabet of alternative conditions "
                "(Williams-Beer specific information), which four variants do not give; use one of "
                f"{VARIANT_PID_MEASURES}."
            )
    return measures


class PixelPID(eqx.Module):
    """Pixel-wise PID maps (returned by :func:`pixel_pid`).

    Attributes:
        maps: :class:`PIDTerms` of ``(H, W)`` arrays, weighted over the points.
        sample_maps: :class:`PIDTerms` of ``(N, H, W)`` arrays, per point (pointwise_min only, else ``None``).
        information: ``(N, 3, H, W)`` the pixel informations ``[i_1, i_2, i_12]`` they come from.
    """

    maps: PIDTerms
    sample_maps: PIDTerms | None
    information: Float[np.ndarray, "N 3 H W"]


def pixel_pid(
    info: PIDInformation,
    image_shape: Sequence[int],
    *,
    measure: str = "pointwise_min",
    estimator: str = "orthogonal",
) -> PixelPID:
    r"""Pixel-wise PID maps (DiffusionPID): the per-coordinate informations summed over channels into
    pixel informations ``i_j`` (Kong et al. 2024 sum latent channels; :func:`pixel_map`), then per pixel
    ``R_j = min(i_{1,j}, i_{2,j})``, ``U_{k,j} = i_{k,j} - R_j``, ``S_j = i_{12,j} - i_{1,j} - i_{2,j} + R_j``
    (``"pointwise_min"``; ``"mmi"`` takes the min of the point-averaged maps).

    Args:
        info: from :func:`variant_pid_information` (or :func:`pid_information`).
        image_shape: ``(H, W)`` or ``(C, H, W)`` of one point.
        measure: ``"pointwise_min"`` or ``"mmi"``.
        estimator: per-coordinate informations, ``"orthogonal"`` (non-negative) or ``"standard"``.
    """
    if not isinstance(info, PIDInformation):
        raise TypeError(f"`info` must be a PIDInformation, got {type(info).__name__}.")
    _check_measures(measure)
    if estimator not in ESTIMATORS:
        raise ValueError(f"Unknown `estimator` {estimator!r}; use one of {ESTIMATORS}.")
    coords = info.orthogonal_coords if estimator == "orthogonal" else info.pointwise_coords
    if coords is None:
        raise ValueError("`info` has no per-coordinate informations (exact informations have none).")
    pix = pixel_map(np.asarray(coords), image_shape)  # (N, 3, H, W)
    maps = pid_terms(pix[:, 0], pix[:, 1], pix[:, 2], measure, weights=info.weights)
    sample = None
    if measure == "pointwise_min":
        sample = pid_terms(pix[:, 0], pix[:, 1], pix[:, 2], measure, axis=None)
        sample = PIDTerms(*(np.asarray(v) for v in sample.as_tuple()))
    return PixelPID(PIDTerms(*(np.asarray(v) for v in maps.as_tuple())), sample, pix)


__all__ = [
    "VARIANT_PID_MEASURES",
    "PixelPID",
    "pixel_pid",
    "variant_curves",
    "variant_information",
    "variant_pid",
    "variant_pid_information",
]
