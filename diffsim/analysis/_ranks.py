"""Rank statistics: average ranks with ties, AUROC (Mann-Whitney) and Spearman rank correlation."""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike


__all__ = ["auroc", "spearman"]


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) along the last axis."""
    v = np.asarray(v, float)
    order = np.argsort(v, axis=-1, kind="mergesort")
    sv = np.take_along_axis(v, order, -1)
    n = v.shape[-1]
    ranks_sorted = np.broadcast_to(np.arange(1, n + 1, dtype=float), v.shape).copy()
    flat_sv = sv.reshape(-1, n)
    flat_r = ranks_sorted.reshape(-1, n)
    for row in range(flat_sv.shape[0]):
        s = flat_sv[row]
        start = 0
        while start < n:
            end = start + 1
            while end < n and s[end] == s[start]:
                end += 1
            if end - start > 1:
                flat_r[row, start:end] = 0.5 * (start + 1 + end)
            start = end
    out = np.empty_like(ranks_sorted)
    np.put_along_axis(out, order, flat_r.reshape(v.shape), -1)
    return out


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    r"""Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive): the Mann-Whitney statistic
    ``(R_+ - n_+ (n_+ + 1)/2) / (n_+ n_-)`` with average ranks for ties. NaN when a class is absent.

    With probabilities ``(N, A)`` and integer labels, the macro average of the one-vs-rest AUROCs of the
    classes present (both as positives and negatives).

    Args:
        scores: scores ``(N,)`` (higher means positive), or class probabilities ``(N, A)``.
        labels: binary labels ``(N,)`` (1 positive, anything else negative) with 1-D ``scores``; integer
            class labels ``(N,)`` in ``[0, A)`` with 2-D ``scores``.

    Returns:
        The AUROC in ``[0, 1]`` (a float), NaN when a class is absent.
    """
    s = np.asarray(scores, float)
    y = np.asarray(labels)
    if s.ndim == 2:
        if y.shape != (s.shape[0],):
            raise ValueError(f"`labels` must have shape ({s.shape[0]},), got {y.shape}.")
        vals = [auroc(s[:, c], (y == c).astype(int)) for c in range(s.shape[1])]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"`scores` and `labels` must be 1-D of the same length, got {s.shape} and {y.shape}."
        )
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: ArrayLike, b: ArrayLike, axis: int = -1) -> np.ndarray:
    """Spearman rank correlation of ``a`` and ``b`` along ``axis`` (Pearson correlation of average ranks);
    NaN where either is constant.

    Args:
        a: values, any shape broadcastable with ``b``.
        b: values.
        axis: the axis along which the ranks are taken and correlated (default -1).

    Returns:
        The correlations, the broadcast shape without ``axis`` (a 0-d array for 1-D inputs).
    """
    x, y = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    rx, ry = _ranks(x), _ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)
