"""Exact discrete PID references: the three measures on a probability table ``p([c,] y_1, y_2, g)``, the
table of the well-separated limit of a token mixture, and ``dit``'s values for comparison."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import ArrayLike

from ...scores.conditional import ConditionalMixture
from ._pid import NATS_PER_BIT, PIDTerms, _check_measure, _source_slots


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
    - ``"wb_imin"``: ``R = sum_{g,c} p(g, c) min_k I(G=g; Y_k | c)``,
      ``I(G=g; Y_k | c) = sum_y p(y | g, c) i_k``;

    then ``U_k = I_k - R`` and ``S = I_12 - I_1 - I_2 + R``.

    Args:
        joint: the probability table, shape ``(A1, A2, G)`` (or ``(C, A1, A2, G)`` with ``context=True``);
            non-negative and summing to one, else ``ValueError``.
        measure: the redundancy measure: ``"pointwise_min"``, ``"mmi"`` or ``"wb_imin"``.
        unit: ``"nats"`` (default) or ``"bits"``.
        context: when ``True`` the first axis of ``joint`` is a context ``c`` and the PID is conditional
            on it.

    Returns:
        The four atoms as a :class:`PIDTerms` of Python floats.
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
        terms = PIDTerms(*(float(v) / NATS_PER_BIT for v in terms.as_tuple()))
    return PIDTerms(*(float(v) for v in terms.as_tuple()))


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
    ``(C, A1, A2, G)`` with the context slots flattened into ``C`` when ``context`` is non-empty.

    Args:
        model: the token mixture (a :class:`~diffsim.scores.conditional.ConditionalMixture`, else
            ``TypeError``).
        sources: the two token slots whose values are ``y_1``, ``y_2``.
        context: token slots conditioned on (flattened row-major into ``C``); empty (default) for none.
        decimals: means and covariances are rounded to this many decimals before components are compared.
    """
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


def dit_pid_values(joint: ArrayLike) -> dict[str, list[float]] | None:
    """``[R, U1, U2, S]`` in bits from the ``dit`` package (``PID_WB`` as ``"wb_imin"``, ``PID_MMI`` as
    ``"mmi"``, ``PID_BROJA`` as ``"broja"``, ``PID_CCS`` as ``"ccs"``) for a table ``p(y1, y2, g)`` of shape
    ``(A1, A2, G)``; an optimiser failure inside ``dit`` gives NaNs for that measure. None when ``dit`` is not
    installed (it is a test dependency only): an independent reference for :func:`discrete_pid`.

    Args:
        joint: the probability table ``p(y1, y2, g)``, shape ``(A1, A2, G)``; entries below ``1e-15`` are
            dropped from ``dit``'s distribution.
    """
    try:
        import dit
        from dit.pid import PID_BROJA, PID_CCS, PID_MMI, PID_WB
    except ImportError:
        return None
    joint = np.asarray(joint)
    outcomes, probs = [], []
    for idx in np.ndindex(*joint.shape):
        if joint[idx] > 1e-15:
            outcomes.append(tuple(int(i) for i in idx))
            probs.append(float(joint[idx]))
    d = dit.Distribution(outcomes, probs)
    keys = [((0,), (1,)), ((0,),), ((1,),), ((0, 1),)]
    out = {}
    for name, cls in (("wb_imin", PID_WB), ("mmi", PID_MMI), ("broja", PID_BROJA), ("ccs", PID_CCS)):
        try:
            p = cls(d, [[0], [1]], [2])
            out[name] = [float(p.get_pi(k)) for k in keys]
        except Exception:  # noqa: BLE001 - an optimiser failure in dit must not stop a study
            out[name] = [float("nan")] * 4
    return out
