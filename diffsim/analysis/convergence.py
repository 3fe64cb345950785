"""Convergence orders of samplers: slopes of error against the number of steps.

A sampler of order ``p`` has error ``C n^{-p}`` at ``n`` steps in the asymptotic regime, so ``p`` is the
slope of ``-log(error)`` against ``log(n)`` over the finest grids. Weak errors estimated by Monte Carlo are
only usable where they stand clear of their standard error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from ._gaussian_law import (
    gaussian_law_error as gaussian_law_error,
    gaussian_pathwise_error as gaussian_pathwise_error,
    scan_sampler as scan_sampler,
)


__all__ = ["fit_order", "gaussian_law_error", "gaussian_pathwise_error", "scan_sampler", "significant_tail"]


def fit_order(
    steps: Real[ArrayLike, " m"] | Sequence[float],
    errors: Float[ArrayLike, " m"] | Sequence[float],
    mask: Bool[ArrayLike, " m"] | Sequence[bool] | None = None,
    last: int = 3,
) -> float:
    """Slope of ``-log(error)`` vs ``log(steps)`` (least squares) over the finest ``last`` usable step counts;
    NaN when fewer than two points are usable or an error is not positive.

    Args:
        steps: the numbers of steps, increasing (finest last), shape ``(m,)``.
        errors: the errors at those step counts, shape ``(m,)``.
        mask: which points are usable (e.g. :func:`significant_tail`); ``None`` (default): all.
        last: how many of the finest usable points to fit (default 3).

    Returns:
        The fitted order ``p`` (a float).
    """
    steps, errors = np.asarray(steps, float), np.asarray(errors, float)
    if steps.shape != errors.shape or steps.ndim != 1:
        raise ValueError(
            f"fit_order: steps and errors must be 1-D of one length, got {steps.shape}, {errors.shape}."
        )
    if mask is not None:
        steps, errors = steps[np.asarray(mask, bool)], errors[np.asarray(mask, bool)]
    steps, errors = steps[-last:], errors[-last:]
    if steps.size < 2 or np.any(errors <= 0):
        return float("nan")
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])


def significant_tail(
    gaps: Float[ArrayLike, " m"] | Sequence[float],
    ses: Float[ArrayLike, " m"] | Sequence[float],
    n_se: float = 4.0,
) -> Bool[np.ndarray, " m"]:
    """Mask of the contiguous run of step counts, ending at the finest, whose signed gap exceeds ``n_se``
    standard errors with the sign of the finest such gap (pre-asymptotic sign changes, as in DDPM's variance
    deficit at coarse grids, end the run).

    Args:
        gaps: the signed (weak) errors at increasing step counts, shape ``(m,)``.
        ses: their Monte-Carlo standard errors, shape ``(m,)``.
        n_se: how many standard errors a gap must exceed (default 4).

    Returns:
        A boolean mask, shape ``(m,)``, to pass to :func:`fit_order`; all ``False`` when no gap is
        significant.
    """
    gaps, ses = np.asarray(gaps, float), np.asarray(ses, float)
    above = np.abs(gaps) > n_se * ses
    mask = np.zeros(gaps.shape, bool)
    idx = np.flatnonzero(above)
    if idx.size == 0:
        return mask
    sign = np.sign(gaps[idx[-1]])
    for i in range(idx[-1], -1, -1):
        if not above[i] or np.sign(gaps[i]) != sign:
            break
        mask[i] = True
    return mask
