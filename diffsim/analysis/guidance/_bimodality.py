r"""Hartigan's dip test of unimodality, with a Monte Carlo calibrated p-value.

The dip of a distribution function ``F`` is its sup-distance to the closest unimodal distribution function
(Hartigan & Hartigan 1985, "The dip test of unimodality", Ann. Statist. 13):

$$
D(F) = \inf_{G \text{ unimodal}} \sup_x |F(x) - G(x)|,
$$

where ``G`` is unimodal when it is convex left of some mode ``m`` and concave right of it. For the empirical
distribution function ``F_n`` of ``n`` points, ``1/(2n) <= D(F_n) <= 1/4``; a sample of a unimodal law has
``D(F_n) = O(n^{-1/2})`` while a sample of a bimodal law keeps ``D(F_n)`` bounded away from 0.

Among unimodal laws the uniform is asymptotically the least favourable (its ``sqrt(n) D`` is stochastically
largest, Hartigan & Hartigan 1985, Theorem 5), so the p-value is calibrated against the dips of
``n_null`` uniform samples of the same size: ``p = (1 + #{D_b >= D}) / (1 + n_null)``. At level ``alpha``
the test rejects unimodality with probability ``<= alpha`` (``= alpha`` for the uniform, less for
Gaussians) up to the Monte Carlo error of the calibration.

:func:`dip_statistic` follows the published algorithm: alternate greatest convex minorant / least concave
majorant passes over a shrinking modal interval ``[x_low, x_high]``, ``O(n)`` per pass after sorting.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import numpy as np
from jaxtyping import ArrayLike

from ..._validation import check_positive_int, check_probability


__all__ = ["DipTest", "dip_null_quantile", "dip_statistic", "dip_test"]


def _hull_links(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predecessor links of the convex minorant (``mn``) and successor links of the concave majorant
    (``mj``) of the points ``(x_j, j)`` (0-based indices of the sorted sample)."""
    n = x.size
    mn = np.zeros(n, dtype=np.int64)
    for j in range(1, n):
        mn[j] = j - 1
        while True:
            a = mn[j]
            b = mn[a]
            if a == 0 or (x[j] - x[a]) * (a - b) < (x[a] - x[b]) * (j - a):
                break
            mn[j] = b
    mj = np.full(n, n - 1, dtype=np.int64)
    for k in range(n - 2, -1, -1):
        mj[k] = k + 1
        while True:
            a = mj[k]
            b = mj[a]
            if a == n - 1 or (x[k] - x[a]) * (a - b) < (x[a] - x[b]) * (k - a):
                break
            mj[k] = b
    return mn, mj


def _dip_sorted(x: np.ndarray) -> float:
    """Dip of the empirical distribution of the sorted float64 sample ``x`` (Hartigan & Hartigan 1985)."""
    n = x.size
    if n < 2 or x[0] == x[-1]:
        return 0.5 / n
    mn, mj = _hull_links(x)
    low, high = 0, n - 1
    dip = 1.0  # in units of 1/n counts; the result is dip / (2 n)
    while True:
        gcm = [high]  # convex minorant change points from high down to low
        while gcm[-1] > low:
            gcm.append(int(mn[gcm[-1]]))
        lcm = [low]  # concave majorant change points from low up to high
        while lcm[-1] < high:
            lcm.append(int(mj[lcm[-1]]))
        n_g, n_l = len(gcm), len(lcm)
        ig, ih = n_g - 1, n_l - 1
        ix, iv = n_g - 2, 1
        d = 0.0
        if n_g != 2 or n_l != 2:
            # largest vertical distance between the minorant and the majorant on [low, high]
            while True:
                g, lc = gcm[ix], lcm[iv]
                if g > lc:
                    g1 = gcm[ix + 1]
                    dx = (lc - g1 + 1) - (x[lc] - x[g1]) * (g - g1) / (x[g] - x[g1])
                    iv += 1
                    if dx >= d:
                        d, ig, ih = dx, ix + 1, iv - 1
                else:
                    l1 = lcm[iv - 1]
                    dx = (x[g] - x[l1]) * (lc - l1) / (x[lc] - x[l1]) - (g - l1 - 1)
                    ix -= 1
                    if dx >= d:
                        d, ig, ih = dx, ix + 1, iv
                ix = max(ix, 0)
                iv = min(iv, n_l - 1)
                if gcm[ix] == lcm[iv]:
                    break
        else:
            d = 1.0
        if d < dip:
            break
        # the dips of the minorant on [low, gcm[ig]] and of the majorant on [lcm[ih], high]
        dip_l = 0.0
        for j in range(ig, n_g - 1):
            jb, je = gcm[j + 1], gcm[j]
            best = 1.0
            if je - jb > 1 and x[je] != x[jb]:
                seg = np.arange(jb, je + 1)
                best = max(
                    best, float(np.max((seg - jb + 1) - (x[seg] - x[jb]) * (je - jb) / (x[je] - x[jb])))
                )
            dip_l = max(dip_l, best)
        dip_u = 0.0
        for j in range(ih, n_l - 1):
            jb, je = lcm[j], lcm[j + 1]
            best = 1.0
            if je - jb > 1 and x[je] != x[jb]:
                seg = np.arange(jb, je + 1)
                best = max(
                    best, float(np.max((x[seg] - x[jb]) * (je - jb) / (x[je] - x[jb]) - (seg - jb - 1)))
                )
            dip_u = max(dip_u, best)
        dip = max(dip, dip_l, dip_u)
        if low == gcm[ig] and high == lcm[ih]:
            break
        low, high = gcm[ig], lcm[ih]
    return dip / (2.0 * n)


def dip_statistic(samples: ArrayLike) -> float:
    r"""Hartigan's dip ``D(F_n)`` of a 1-D sample: the sup-distance of its empirical distribution function to
    the closest unimodal distribution function (Hartigan & Hartigan 1985).

    ``1/(2n) <= D <= 1/4``; ``1/4`` is reached by two equal point masses.

    Args:
        samples: the sample, shape ``(n,)`` or ``(n, 1)``, finite, ``n >= 2``.

    Returns:
        The dip, a float.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"`samples` must be a 1-D sample (shape (n,) or (n, 1)), got shape {x.shape}.")
    if x.size < 2:
        raise ValueError(f"`samples` needs at least 2 points, got {x.size}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`samples` must be finite (NaN or inf found).")
    return _dip_sorted(np.sort(x))


@functools.lru_cache(maxsize=64)
def _null_dips(n: int, n_null: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng((seed, n))
    return np.sort([_dip_sorted(np.sort(rng.uniform(size=n))) for _ in range(n_null)])


def dip_null_quantile(n: int, level: float, *, n_null: int = 500, seed: int = 0) -> float:
    """The ``1 - level`` quantile of the dip of ``n`` uniform points (Monte Carlo with ``n_null`` draws): the
    critical value of the dip test at ``level``.

    Args:
        n: sample size (``>= 2``).
        level: test level in ``(0, 1)``.
        n_null: Monte Carlo draws of the uniform null.
        seed: NumPy seed of the null draws (cached per ``(n, n_null, seed)``).

    Returns:
        The critical dip.
    """
    n = check_positive_int(n, "n", minimum=2)
    level = check_probability(level, "level")
    null = _null_dips(n, check_positive_int(n_null, "n_null"), int(seed))
    return float(np.quantile(null, 1.0 - level))


class DipTest(eqx.Module):
    """Result of :func:`dip_test`: the dip, its calibrated p-value, the sample size, the level and the
    decision ``bimodal = p_value < level`` (unimodality rejected).

    Attributes:
        dip: Hartigan's dip of the sample, in ``(0, 1/2]``.
        p_value: the Monte Carlo calibrated p-value, at least ``1 / (1 + n_null)``.
        n: the sample size.
        level: the test level.
        bimodal: ``p_value < level``.
    """

    dip: float
    p_value: float
    n: int
    level: float
    bimodal: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain JSON-able values."""
        return dataclasses.asdict(self)


def dip_test(samples: ArrayLike, *, level: float = 0.01, n_null: int = 500, seed: int = 0) -> DipTest:
    r"""Hartigan's dip test of unimodality with a p-value calibrated on uniform samples of the same size.

    ``p = (1 + #{b: D_b >= D}) / (1 + n_null)`` where ``D_b`` are the dips of ``n_null`` uniform samples of
    size ``n`` (the least favourable unimodal null, Hartigan & Hartigan 1985); ``bimodal`` is ``p < level``.
    The rejection rate on any unimodal law is at most ``level`` asymptotically (exactly ``level`` for the
    uniform), up to the ``O(n_null^{-1/2})`` calibration error; the p-value cannot go below
    ``1 / (1 + n_null)``, so ``n_null`` must exceed ``1 / level``.

    Args:
        samples: 1-D sample, shape ``(n,)`` or ``(n, 1)``, ``n >= 4``.
        level: test level in ``(0, 1)``.
        n_null: Monte Carlo draws of the uniform null (``> 1 / level``).
        seed: NumPy seed of the null draws (the null is cached per ``(n, n_null, seed)``).

    Returns:
        A :class:`DipTest`.
    """
    level = check_probability(level, "level")
    n_null = check_positive_int(n_null, "n_null")
    if (1 + n_null) * level <= 1.0:
        raise ValueError(
            f"`n_null` = {n_null} cannot reach a p-value below `level` = {level}: need n_null > 1 / level."
        )
    d = dip_statistic(samples)
    n = int(np.asarray(samples).shape[0])
    if n < 4:
        raise ValueError(f"`samples` needs at least 4 points for the dip test, got {n}.")
    null = _null_dips(n, n_null, int(seed))
    p = (1.0 + float(np.sum(null >= d - 1e-12))) / (1.0 + n_null)
    return DipTest(dip=float(d), p_value=p, n=n, level=level, bimodal=bool(p < level))
