r"""Reading windows off window curves: the ``eps`` window of one curve and the critical window
``[keep, forget]`` of a feature."""

from __future__ import annotations

import equinox as eqx
import numpy as np

from ._curves import WindowCurve
from ._groups import _check_eps


class Window(eqx.Module):
    """The longest run of ``T_hat`` with ``TV <= eps``: ``[lower, upper]`` with standard errors.

    An end that coincides with the first/last ``T_hat`` evaluated is *censored* (the curve was already
    below ``eps`` there); both ends are NaN when the curve never drops below ``eps``.

    Attributes:
        lower: first ``T_hat`` of the window (NaN when empty).
        upper: last ``T_hat`` of the window (NaN when empty).
        lower_stderr: standard error of ``lower`` (delta method; 0 when censored).
        upper_stderr: standard error of ``upper`` (delta method; 0 when censored).
        lower_censored: ``lower`` is the first ``T_hat`` evaluated, so the true end may lie below it.
        upper_censored: ``upper`` is the last ``T_hat`` evaluated, so the true end may lie above it.
        eps: the TV tolerance the window was read at.
    """

    lower: float
    upper: float
    lower_stderr: float
    upper_stderr: float
    lower_censored: bool
    upper_censored: bool
    eps: float

    @property
    def empty(self) -> bool:
        return bool(np.isnan(self.lower))


def _crossing(ts, vals, errs, j0, j1, eps):
    """Linear interpolation of the ``eps`` crossing between grid points ``j0``, ``j1``; error se/|slope|."""
    v0, v1 = vals[j0], vals[j1]
    slope = (v1 - v0) / (ts[j1] - ts[j0])
    frac = 0.0 if v1 == v0 else (eps - v0) / (v1 - v0)
    frac = float(np.clip(frac, 0.0, 1.0))
    t = ts[j0] + frac * (ts[j1] - ts[j0])
    se = (1 - frac) * errs[j0] + frac * errs[j1]
    err = se / abs(slope) if slope != 0 else np.inf
    return float(t), float(err)


def read_window(curve: WindowCurve, eps: float) -> Window:
    r"""The window ``{T_hat : TV(p^{S_init,T_hat}, p^{S_targ}) <= eps}`` read off a :class:`WindowCurve`.

    Takes the longest run of consecutive ``T_hat`` (sorted) below ``eps``; interior ends are linear
    interpolations of the crossing, with standard error ``se(TV)/|dTV/dT_hat|`` (delta method).

    Args:
        curve: a :class:`WindowCurve` (from :func:`window_curve` or :func:`simulated_window_curve`).
        eps: the TV tolerance, in ``(0, 1)``.

    Returns:
        A :class:`Window` (both ends NaN when the curve never drops below ``eps``).
    """
    if not isinstance(curve, WindowCurve):
        raise TypeError(f"`curve` must be a WindowCurve, got {type(curve).__name__}.")
    eps = _check_eps(eps)
    order = np.argsort(curve.t_hats)
    ts, tv, se = curve.t_hats[order], curve.tv[order], curve.tv_stderr[order]
    below = tv <= eps
    if not below.any():
        return Window(np.nan, np.nan, np.nan, np.nan, False, False, eps)
    best, start = (0, -1), None
    for j, b in enumerate(np.append(below, False)):
        if b and start is None:
            start = j
        if not b and start is not None:
            if j - start > best[1] - best[0] + 1 or best[1] < 0:
                best = (start, j - 1)
            start = None
    j_lo, j_hi = best
    if j_lo == 0:
        lo, lo_se, lo_c = float(ts[0]), 0.0, True
    else:
        lo, lo_se = _crossing(ts, tv, se, j_lo - 1, j_lo, eps)
        lo_c = False
    if j_hi == ts.size - 1:
        hi, hi_se, hi_c = float(ts[-1]), 0.0, True
    else:
        hi, hi_se = _crossing(ts, tv, se, j_hi, j_hi + 1, eps)
        hi_c = False
    return Window(lo, hi, lo_se, hi_se, lo_c, hi_c, eps)


class CriticalWindow(eqx.Module):
    """The critical window ``[keep, forget]`` of a feature (a group ``S`` inside its parent ``V``).

    ``keep``: the last ``T_hat`` with ``TV(p^{S,T_hat}, p^S) <= eps`` (the feature is still decided);
    ``forget``: the first ``T_hat`` with ``TV(p^{S,T_hat}, p^V) <= eps`` (the feature is fully resampled
    within ``V``). The sampler decides the feature during ``[keep, forget]``.

    Attributes:
        keep: the upper end of the keep curve's window (NaN if that curve never drops below ``eps``).
        forget: the lower end of the forget curve's window (NaN if it never drops below ``eps``).
        keep_stderr: standard error of ``keep``.
        forget_stderr: standard error of ``forget``.
        eps: the TV tolerance of both windows.
    """

    keep: float
    forget: float
    keep_stderr: float
    forget_stderr: float
    eps: float

    @property
    def width(self) -> float:
        return self.forget - self.keep

    @property
    def centre(self) -> float:
        return 0.5 * (self.keep + self.forget)


def critical_window(keep_curve: WindowCurve, forget_curve: WindowCurve, eps: float) -> CriticalWindow:
    """``[keep, forget]`` from the curves with ``S_targ = S_init = S`` (keep) and ``S_targ = V`` (forget).

    Args:
        keep_curve: the :class:`WindowCurve` with ``s_targ == s_init`` (the feature kept).
        forget_curve: the :class:`WindowCurve` from the same ``s_init`` to the parent group ``V``.
        eps: the TV tolerance, in ``(0, 1)``.

    Returns:
        A :class:`CriticalWindow`: ``keep`` is the keep window's upper end, ``forget`` the forget
        window's lower end.
    """
    if keep_curve.s_init != keep_curve.s_targ:
        raise ValueError("`keep_curve` must have s_targ == s_init (the feature kept).")
    if forget_curve.s_init != keep_curve.s_init:
        raise ValueError("`forget_curve` must start from the same group as `keep_curve`.")
    wk, wf = read_window(keep_curve, eps), read_window(forget_curve, eps)
    return CriticalWindow(wk.upper, wf.lower, wk.upper_stderr, wf.lower_stderr, float(eps))
