r"""Membership inference from critical windows (Li & Chen, ICML 2024): how long a sample's features
survive noising-denoising, and the exact Mann-Whitney AUC between training and held-out samples.

A model that memorised its training set sends a noised training sample back to (near) itself for longer than
a held-out sample of the same distribution, so a training sample's class survives renoising up to larger
``T_hat``. Per clean sample ``i`` with retention curve ``r_i(T_hat)`` (the fraction of its re-denoisings
that keep its class, from :func:`~diffsim.analysis.windows.feature_retention`):

- ``area``: ``A_i = (T_n - T_1)^{-1} int_{T_1}^{T_n} r_i(T) dT`` (trapezoid over the ``T_hat`` grid);
- ``forget_time``: the first ``T_hat`` at which ``r_i`` drops to ``level`` (linear interpolation; the
  last ``T_hat`` when it never does).

Larger scores mean "more likely a training sample". :func:`membership_auc` is the probability that a
training score exceeds a held-out one, ties counting one half (the Mann-Whitney U statistic over
``n_1 n_0``), computed exactly from mid-ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float

from ..._types import ArrayOrSequence
from ..._validation import check_probability


__all__ = ["membership_auc", "membership_scores"]


def _area(ts: np.ndarray, per_sample: np.ndarray) -> np.ndarray:
    """Normalised trapezoid area of each column of ``per_sample`` (n_t, N) over the sorted grid ``ts``."""
    if ts.size == 1:
        return per_sample[0].astype(float)
    return np.trapezoid(per_sample, ts, axis=0) / (ts[-1] - ts[0])


def _forget_time(ts: np.ndarray, per_sample: np.ndarray, level: float) -> np.ndarray:
    out = np.full(per_sample.shape[1], float(ts[-1]))
    for i in range(per_sample.shape[1]):
        r = per_sample[:, i]
        hit = np.nonzero(r <= level)[0]
        if hit.size == 0:
            continue
        j = int(hit[0])
        if j == 0:
            out[i] = ts[0]
            continue
        r0, r1 = r[j - 1], r[j]
        frac = 1.0 if r0 == r1 else (r0 - level) / (r0 - r1)
        out[i] = ts[j - 1] + frac * (ts[j] - ts[j - 1])
    return out


def membership_scores(result: Any, *, kind: str = "area", level: float = 0.5) -> Float[np.ndarray, " N"]:
    r"""Per-sample membership scores from a :class:`~diffsim.analysis.windows.FeatureRetention`.

    Args:
        result: the output of :func:`~diffsim.analysis.windows.feature_retention` on the samples to score.
        kind: ``"area"`` (normalised area under the sample's retention curve) or ``"forget_time"`` (the
            first ``T_hat`` where its retention drops to ``level``); module docstring.
        level: the retention level of ``"forget_time"``, in ``(0, 1)``.

    Returns:
        Scores ``(N,)``: larger means the sample's features survive renoising longer.
    """
    from ._any_model import FeatureRetention

    if not isinstance(result, FeatureRetention):
        raise TypeError(f"`result` must be a FeatureRetention, got {type(result).__name__}.")
    if kind == "area":
        return _area(result.t_hats, result.per_sample)
    if kind == "forget_time":
        return _forget_time(result.t_hats, result.per_sample, check_probability(level, "level"))
    raise ValueError(f"`kind` must be 'area' or 'forget_time', got {kind!r}.")


def _scores(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array of scores, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains non-finite scores.")
    return arr


def membership_auc(scores_train: ArrayOrSequence, scores_heldout: ArrayOrSequence) -> float:
    r"""Exact Mann-Whitney AUC ``P(S_train > S_heldout) + 1/2 P(S_train = S_heldout)``.

    With mid-ranks ``rank`` of the pooled scores (ties share their average rank),
    ``AUC = (sum_{i in train} rank_i - n_1 (n_1 + 1) / 2) / (n_1 n_0)``, equal to the pairwise count
    ``(n_1 n_0)^{-1} sum_{i, j} [1(s_i > s_j) + 1/2 1(s_i = s_j)]`` in ``O((n_1 + n_0) log(n_1 + n_0))``.
    0.5: no membership signal; 1: every training sample scores above every held-out one.

    Args:
        scores_train: scores ``(n_1,)`` of training (member) samples.
        scores_heldout: scores ``(n_0,)`` of held-out samples.

    Returns:
        The AUC in ``[0, 1]``.
    """
    s1 = _scores(scores_train, "scores_train")
    s0 = _scores(scores_heldout, "scores_heldout")
    pooled = np.concatenate([s1, s0])
    order = np.argsort(pooled, kind="mergesort")
    sorted_vals = pooled[order]
    ranks = np.empty(pooled.size)
    # mid-ranks: every run of equal values gets the average of its 1-based positions
    starts = np.r_[0, np.nonzero(np.diff(sorted_vals))[0] + 1]
    ends = np.r_[starts[1:], pooled.size]
    mid = 0.5 * (starts + ends - 1) + 1.0
    ranks[order] = np.repeat(mid, ends - starts)
    n1, n0 = s1.size, s0.size
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
