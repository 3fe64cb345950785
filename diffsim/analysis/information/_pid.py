"""Partial information decomposition of what two tokens say about an image: the informations behind
every measure (estimated from MMSE curves, or exact for analytic mixtures) and the measures themselves."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ...scores.conditional import AbstractConditionalDenoiser, ConditionalMixture
from ._logsnr import LogSNRScheme
from ._mmse import (
    InformationCurves,
    _check_model,
    _check_points,
    _mask_table,
    _sample_tokens,
    _slots,
    mmse_curves,
)
from ._pointwise import _exact_pmi


PID_MEASURES = ("pointwise_min", "mmi", "wb_imin")
ESTIMATORS = ("standard", "orthogonal")
NATS_PER_BIT = math.log(2.0)


class PIDTerms(eqx.Module):
    """Redundancy, the two unique informations and synergy (nats unless converted), any common shape.

    Attributes:
        redundancy: ``R``, the information both sources carry.
        unique1: ``U_1``, the information only the first source carries.
        unique2: ``U_2``, the information only the second source carries.
        synergy: ``S``, the information only the pair carries.
    """

    redundancy: ArrayLike
    unique1: ArrayLike
    unique2: ArrayLike
    synergy: ArrayLike

    def to_bits(self) -> PIDTerms:
        return PIDTerms(*(np.asarray(v) / NATS_PER_BIT for v in self.as_tuple()))

    def as_tuple(self) -> tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]:
        """``(R, U1, U2, S)``: the fields in their declared order."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def as_dict(self) -> dict[str, ArrayLike]:
        """``{"redundancy": R, "unique1": U1, "unique2": U2, "synergy": S}``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def as_array(self) -> np.ndarray:
        """``(4, ...)``: ``[R, U1, U2, S]``."""
        return np.stack([np.asarray(v, float) for v in self.as_tuple()])


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

    Args:
        i1: informations about the first source, any shape (samples along ``axis``).
        i2: informations about the second source, same shape.
        i12: informations about the pair, same shape.
        measure: ``"pointwise_min"``, ``"mmi"`` or ``"wb_imin"`` (else ``ValueError``).
        weights: sample weights along ``axis`` (normalised here); ``None`` (default) for the plain mean.
        axis: the sample axis averaged over (default ``0``); ``None`` keeps every element (per-sample terms;
            not allowed for ``"mmi"``).
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

    Columns ``[0, 1, 2]`` = ``[y_1, y_2, (y_1, y_2)]`` (all given the context ``c``). Returned by
    :func:`pid_information` and :func:`exact_pid_information`.

    Attributes:
        pointwise: ``(N, 3)`` pointwise MIs ``i(x; . | c)`` (standard estimator or exact).
        orthogonal: ``(N, 3)`` orthogonal-estimator informations (``None`` when exact).
        pointwise_coords: ``(N, 3, d)`` per-coordinate standard-estimator informations (``None`` when exact).
        orthogonal_coords: ``(N, 3, d)`` per-coordinate orthogonal-estimator informations (``None`` when
            exact).
        specific: ``(N, 3)`` specific informations ``KL(p(. | x, c) || p(. | c))`` (Williams-Beer), or
            ``None``.
        posterior: ``(N, A_1, A_2)`` the token posterior ``p(y_1, y_2 | x, c)`` behind them, or ``None``.
        weights: ``(N,)`` sample weights (sum to one).
        curves: the MMSE curves (conditions ``c, c+y_1, c+y_2, c+y_1+y_2``, then one per token pair for
            the posterior), or ``None`` when exact.
        sources: the two source token slots ``(s1, s2)``.
        context: the context token slots ``c``.
    """

    pointwise: Float[Array | np.ndarray, "N 3"]
    orthogonal: Float[Array | np.ndarray, "N 3"] | None
    pointwise_coords: Float[Array | np.ndarray, "N 3 d"] | None
    orthogonal_coords: Float[Array | np.ndarray, "N 3 d"] | None
    specific: Float[Array | np.ndarray, "N 3"] | None
    posterior: Float[Array | np.ndarray, "N A1 A2"] | None
    weights: Float[Array | np.ndarray, " N"]
    curves: InformationCurves | None
    sources: tuple[int, int] = eqx.field(static=True)
    context: tuple[int, ...] = eqx.field(static=True)

    def select(self, index: slice | ArrayLike, weights: ArrayLike | None = None) -> PIDInformation:
        """The informations of the samples ``index`` (a slice or an index array), without the MMSE curves.
        ``weights`` replaces their sample weights (default: the selected weights); :func:`decompose`
        normalises them."""

        def pick(v):
            return None if v is None else v[index]

        return PIDInformation(
            self.pointwise[index],
            pick(self.orthogonal),
            pick(self.pointwise_coords),
            pick(self.orthogonal_coords),
            pick(self.specific),
            pick(self.posterior),
            self.weights[index] if weights is None else np.asarray(weights),
            None,
            self.sources,
            self.context,
        )


class PIDResult(eqx.Module):
    """One PID measure applied to :class:`PIDInformation` (returned by :func:`decompose` and :func:`pid`).

    Attributes:
        measure: the PID measure (``"pointwise_min"``, ``"mmi"`` or ``"wb_imin"``).
        estimator: ``"standard"``, ``"orthogonal"`` or ``"exact"``.
        terms: image-level :class:`PIDTerms` (scalars, nats).
        mutual_information: ``(3,)`` ``[I(X;Y_1|C), I(X;Y_2|C), I(X;Y_1,Y_2|C)]`` used by the terms.
        sample_terms: per-sample terms ``(N,)`` (pointwise_min: pointwise MIs; wb_imin: specific
            informations) or ``None`` (mmi).
        maps: per-coordinate terms ``(d,)`` from the per-coordinate informations of the chosen estimator
            (``None`` for wb_imin and for exact informations).
        sample_maps: per-sample per-coordinate terms ``(N, d)`` (pointwise_min only, else ``None``).
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

    Args:
        model: the conditional denoiser.
        x: the samples' points, shape ``(N, d)`` (or ``(d,)``).
        tokens: ``(N, n)`` each sample's own token values (or ``(n,)`` shared).
        key: PRNG key of the log-SNRs and noise draws.
        sources: the two token slots decomposed (default ``(0, 1)``).
        context: token slots conditioned on throughout (disjoint from ``sources``); empty for an
            unconditional PID.
        scheme: the log-SNR rule (:class:`LogSNRScheme`).
        n_noise: noise draws per log-SNR, shared by all conditions.
        specific: also estimate the token posterior and the specific informations (needs the model's
            ``token_prior``; required by ``"wb_imin"``).
        sample_weights: ``(N,)`` non-negative sample weights (normalised); ``None`` for equal weights.
        chunk_size: points evaluated at once (memory only; ``None`` chooses).
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
    pointwise MIs from exact log-densities and the exact token posterior ``p(y | x, c)``.

    Args:
        model: the analytic mixture (else ``TypeError``).
        x: the samples' points, shape ``(N, d)`` (or ``(d,)``).
        tokens: ``(N, n)`` each sample's own token values (or ``(n,)`` shared).
        sources: the two token slots decomposed (default ``(0, 1)``).
        context: token slots conditioned on throughout; empty for an unconditional PID.
        sample_weights: ``(N,)`` non-negative sample weights (normalised); ``None`` for equal weights.
    """
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

    Args:
        info: the informations, from :func:`pid_information` or :func:`exact_pid_information`.
        measure: ``"pointwise_min"``, ``"mmi"`` or ``"wb_imin"`` (the latter needs ``info.specific``).
        estimator: ``"standard"`` (default) or ``"orthogonal"`` image-level informations.
        map_estimator: ``"orthogonal"`` (default) or ``"standard"`` per-coordinate informations for the maps.
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
            PIDTerms(*(float(v) for v in terms.as_tuple())),
            mi,
            PIDTerms(*(np.asarray(v) for v in sample.as_tuple())),
            None,
            None,
        )
    vals = info.pointwise if (exact or estimator == "standard") else info.orthogonal
    terms = pid_terms(vals[:, 0], vals[:, 1], vals[:, 2], measure, weights=w)
    mi = np.asarray(_weighted_mean(vals, w, 0))
    sample = None
    if measure == "pointwise_min":
        sample = pid_terms(vals[:, 0], vals[:, 1], vals[:, 2], measure, axis=None)
        sample = PIDTerms(*(np.asarray(v) for v in sample.as_tuple()))
    maps = sample_maps = None
    c = info.orthogonal_coords if map_estimator == "orthogonal" else info.pointwise_coords
    if c is not None:
        maps = pid_terms(c[:, 0], c[:, 1], c[:, 2], measure, weights=w)
        maps = PIDTerms(*(np.asarray(v) for v in maps.as_tuple()))
        if measure == "pointwise_min":
            sm = pid_terms(c[:, 0], c[:, 1], c[:, 2], measure, axis=None)
            sample_maps = PIDTerms(*(np.asarray(v) for v in sm.as_tuple()))
    return PIDResult(
        measure, label, PIDTerms(*(float(v) for v in terms.as_tuple())), mi, sample, maps, sample_maps
    )


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
) -> dict[str, PIDResult]:
    """PID of what tokens ``sources`` say about ``x`` (given ``context``: conditional PID), with the
    measure(s) named explicitly. ``estimator="exact"`` uses the exact informations of a
    :class:`ConditionalMixture` (no ``key``/``scheme`` needed).

    Returns a dict ``{measure: PIDResult}`` in the order the measures are named, whether ``measure`` is
    one name or a sequence of names (``pid(..., measure="mmi")["mmi"].terms``).

    Args:
        model: the conditional denoiser (a :class:`ConditionalMixture` for ``estimator="exact"``).
        x: the samples' points, shape ``(N, d)`` (or ``(d,)``).
        tokens: ``(N, n)`` each sample's own token values (or ``(n,)`` shared).
        key: PRNG key of the MMSE estimators; unused (may be ``None``) for ``"exact"``.
        measure: one measure name or a non-empty sequence of them (``"pointwise_min"``, ``"mmi"``,
            ``"wb_imin"``).
        estimator: ``"standard"`` (default), ``"orthogonal"`` or ``"exact"``.
        sources: the two token slots decomposed (default ``(0, 1)``).
        context: token slots conditioned on throughout; empty for an unconditional PID.
        scheme: the log-SNR rule; required unless ``estimator="exact"``.
        n_noise: noise draws per log-SNR.
        sample_weights: ``(N,)`` non-negative sample weights (normalised); ``None`` for equal weights.
        chunk_size: points evaluated at once (memory only; ``None`` chooses).
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
    return {
        m: decompose(info, m, estimator="standard" if estimator == "exact" else estimator) for m in measures
    }


def pid_tolerances(
    estimate: PIDInformation,
    exact: PIDInformation,
    weights: ArrayLike,
    *,
    n_se: float = 4.0,
    floor_bits: float = 0.005,
) -> dict[str, float]:
    r"""Monte-Carlo tolerances (bits) of the image-level PID terms of ``estimate`` (from
    :func:`pid_information`, with specific informations) against ``exact`` (from
    :func:`exact_pid_information` on the same samples and ``weights``), from the estimator's own
    per-sample noise ``n_i = i_hat_i - i_i``:

    - ``SE = sqrt(sum_i w_i^2 |n_i|^2)`` over the three information columns (every term involves at most all
      three);
    - pointwise min: ``min(a + n_1, b + n_2) - min(a, b)`` has mean in ``[-E|n_1 - n_2|/2, E|n_1 - n_2|/2]``
      (``min(u, v) = (u + v)/2 - |u - v|/2``), so the bias allowance is ``sum_i w_i |n_i1 - n_i2| / 2``;
    - MMI: the same bound on the averaged informations, ``sqrt(sum_i w_i^2 (n_i1 - n_i2)^2) sqrt(2/pi) / 2``;
    - Williams-Beer: ``n_se`` SE of the specific informations (no allowance).

    Each tolerance is ``n_se * SE + allowance``, floored at ``floor_bits`` (float32 rounding). Returns
    ``{measure: tolerance}`` for every measure of :data:`PID_MEASURES`.

    Args:
        estimate: the estimated informations (with ``specific``), from :func:`pid_information`.
        exact: the exact informations of the same samples, from :func:`exact_pid_information`.
        weights: ``(N,)`` the sample weights of the PID (normalised weights, as in ``info.weights``).
        n_se: how many standard errors each tolerance allows (default 4).
        floor_bits: the smallest tolerance returned, in bits.
    """
    w = np.asarray(weights, float)
    noise = (np.asarray(estimate.pointwise, float) - np.asarray(exact.pointwise, float)) / NATS_PER_BIT
    se = math.sqrt(float(np.sum((w[:, None] * noise) ** 2)))
    diff = noise[:, 0] - noise[:, 1]
    allow = {
        "pointwise_min": float(np.sum(w * np.abs(diff)) / 2),
        "mmi": float(math.sqrt(np.sum((w * diff) ** 2)) * math.sqrt(2 / math.pi) / 2),
    }
    out = {m: n_se * se + allow[m] for m in allow}
    spec = (np.asarray(estimate.specific, float) - np.asarray(exact.specific, float)) / NATS_PER_BIT
    out["wb_imin"] = n_se * math.sqrt(float(np.sum((w[:, None] * spec) ** 2)))
    return {m: max(v, floor_bits) for m, v in out.items()}
