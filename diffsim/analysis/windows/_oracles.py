r"""Closed-form oracles for the symmetric two-Gaussian mixture ``1/2 N(+r e_1, I) + 1/2 N(-r e_1, I)`` (OU).

Independent of the window machinery (plain NumPy float64 Gauss-Hermite quadrature):

- :func:`symmetric_retention_oracle`: the reverse-SDE retention ``R(T_hat)`` of the ``+`` component;
- :func:`symmetric_window_asymptotes`: the large-``r`` ends of the critical window in units of
  ``a = r e^{-T_hat}`` (the window shifts like ``log r`` with a constant shape).
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float

from ..._types import ArrayOrSequence


__all__ = ["symmetric_retention_oracle", "symmetric_window_asymptotes"]


def symmetric_retention_oracle(r: float, t_hats: ArrayOrSequence) -> Float[np.ndarray, " n"]:
    r"""Retention ``R_SDE(T) = 2 E_fwd[P(+|X_0) P(+|X_T)]`` of ``1/2 N(±r, 1)`` at each ``T`` of ``t_hats``.

    The 1-D reduction of ``1/2 N(±r e_1, I_d)`` (exact for every ``d``) under the OU process:
    ``X_0 = ±r + Z_0``, ``X_T = e^{-T} X_0 + sqrt(1 - e^{-2T}) Z_1``, ``P(+|x, t) = sigmoid(2 e^{-t} r x)``;
    tensor Gauss-Hermite with 200 nodes per axis (float64 NumPy). This is the probability that a
    noising-denoising run started in ``+`` and noised to ``T`` returns to ``+`` (soft labels).

    Args:
        r: the half-distance between the two means (means ``±r e_1``).
        t_hats: the OU noising times ``T_hat``, a sequence or 1-D array.

    Returns:
        The retentions, a float64 array of shape ``(len(t_hats),)`` with values in ``[1/2, 1]``.
    """
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / math.sqrt(2 * math.pi)
    out = []
    for t in t_hats:
        a, s = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
        tot = 0.0
        for sign in (1.0, -1.0):
            x0 = sign * r + z
            p0 = 0.5 * (1.0 + np.tanh(r * x0))  # sigmoid(2 r x0) without overflow
            xt = a * x0[:, None] + s * z[None, :]
            pt = 0.5 * (1.0 + np.tanh(a * r * xt))
            tot += 0.5 * np.sum(w[:, None] * w[None, :] * p0[:, None] * pt)
        out.append(2.0 * tot)
    return np.asarray(out)


def symmetric_window_asymptotes(eps: float) -> tuple[float, float]:
    r"""Large-``r`` window ends ``(a_keep, a_forget)`` in units of ``a = r e^{-T_hat}`` (reference note 1.5).

    With ``R(a) = E sigmoid(2a(a + Z))`` (the well-separated retention), keep solves ``1 - R(a) = eps`` and
    forget solves ``R(a) - 1/2 = eps`` (bisection, 80 steps; 160-node Gauss-Hermite). The window is then
    ``[log r - log a_keep, log r - log a_forget]``.

    Args:
        eps: the TV tolerance of the window, in ``(0, 1/2)``.

    Returns:
        ``(a_keep, a_forget)`` as floats.
    """
    z, w = np.polynomial.hermite_e.hermegauss(160)
    w = w / math.sqrt(2 * math.pi)

    def retention(a: float) -> float:
        return float(np.sum(w * 0.5 * (1 + np.tanh(a * (a + z)))))

    def solve(f, lo, hi):
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return 0.5 * (lo + hi)

    a_keep = solve(lambda a: eps - (1 - retention(a)), 0.05, 10.0)  # 1 - R decreasing in a
    a_forget = solve(lambda a: (retention(a) - 0.5) - eps, 1e-4, 5.0)  # R - 1/2 increasing in a
    return a_keep, a_forget
