"""The angle-bounded information-equalising schedule (``grids.information_schedule(..., max_angle=...)``) and
the DDIM contraction law it rests on."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.processes import VP
from diffsim.sampling import grids, simulate
from diffsim.scores.mixture import GaussianMixture


PROCESS = VP.linear()
LAM = np.linspace(-12.0, 12.0, 97)
DENS = np.exp(-0.5 * ((LAM + 2.0) / 1.2) ** 2)  # information concentrated around log-SNR -2
L0, L1 = float(PROCESS.log_snr(PROCESS.t_max)), float(PROCESS.log_snr(PROCESS.t_min))


def _theta(lam, s):
    return np.arctan(np.exp(-0.5 * np.asarray(lam)) / s)


def _shares(lam_grid, floor=0.1):
    """Information share of each step under the floored density, by an independent quadrature (Simpson's
    rule of the piecewise-linear density on a 60001-point grid)."""
    fine = np.linspace(L0, L1, 60001)
    q = np.interp(fine, LAM, DENS, left=0.0, right=0.0)
    h = fine[1] - fine[0]
    simpson = h / 3 * (q[0] + q[-1] + 4 * q[1:-1:2].sum() + 2 * q[2:-1:2].sum())
    qf = (1 - floor) * q / simpson + floor / (L1 - L0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (qf[1:] + qf[:-1]) * h)])
    return np.diff(np.interp(lam_grid, fine, cdf / cdf[-1]))


def _log_snr(g):
    return np.asarray(PROCESS.log_snr(jnp.asarray(g)))


def test_one_ddim_step_contracts_a_gaussian_by_the_cosine_of_the_angle():
    """DDIM is linear on a Gaussian N(mu, s^2 I): x_b - alpha_b mu = k (x_a - alpha_a mu) with
    k^2 v_a / v_b = cos^2(theta_a - theta_b), v = alpha^2 s^2 + sigma^2 (the exact flow has k^2 = v_b/v_a)."""
    s = 0.5
    mix = GaussianMixture(np.ones(1), jnp.asarray([[0.3, -1.0]]), s**2, process=PROCESS)
    for t_a, t_b in ((0.6, 0.3), (0.3, 0.05), (0.9, 0.001)):
        grid = jnp.asarray([t_a, t_b])
        x = jnp.asarray([[1.3, 0.2], [-0.7, 2.1]])
        xb = np.asarray(simulate(mix, "ddim", grid, x=x, key=jr.key(0)).x)
        a_a, a_b = float(PROCESS.alpha(t_a)), float(PROCESS.alpha(t_b))
        mu = np.asarray([0.3, -1.0])
        k = (xb - a_b * mu) / (np.asarray(x) - a_a * mu)
        v_a, v_b = (float(PROCESS.alpha(t)) ** 2 * s**2 + float(PROCESS.sigma(t)) ** 2 for t in (t_a, t_b))
        la, lb = float(PROCESS.log_snr(t_a)), float(PROCESS.log_snr(t_b))
        chex.assert_trees_all_close(
            k**2 * v_a / v_b, np.full((2, 2), np.cos(_theta(la, s) - _theta(lb, s)) ** 2), rtol=1e-8
        )


@pytest.mark.parametrize("stds", [0.5, (0.5, 1.3, 4.8)])
def test_bounded_schedule_respects_the_bound_and_equalises_the_free_steps(stds):
    n, delta = 10, 0.3
    g = np.asarray(grids.information_schedule(PROCESS, n, LAM, DENS, max_angle=delta, mode_std=stds))
    assert g.shape == (n + 1,) and np.all(np.diff(g) < 0)
    assert g[0] == pytest.approx(PROCESS.t_max) and g[-1] == pytest.approx(PROCESS.t_min)
    lam = _log_snr(g)
    angles = np.max([-np.diff(_theta(lam, s)) for s in np.atleast_1d(stds)], axis=0)
    assert angles.max() <= delta * (1 + 1e-6)
    bound = angles >= delta * (1 - 1e-6)
    assert bound.any() and (~bound).sum() >= 2  # the bound binds on some steps, not all
    shares = _shares(lam)
    free = shares[~bound]
    chex.assert_trees_all_close(free, np.full_like(free, free.max()), rtol=2e-3)
    assert np.all(shares[bound] <= free.max() * (1 + 2e-3))  # min-max: the bound steps carry no more
    # the plain schedule breaks the bound (its last step turns far more than delta)
    plain = _log_snr(grids.information_schedule(PROCESS, n, LAM, DENS))
    assert (-np.diff(_theta(plain, np.min(stds)))).max() > 2 * delta


def test_bounded_schedule_reduces_to_the_plain_one_when_the_bound_is_inactive():
    n = 10
    plain = np.asarray(grids.information_schedule(PROCESS, n, LAM, DENS))
    widest = (-np.diff(_theta(_log_snr(plain), 0.5))).max()
    loose = np.asarray(
        grids.information_schedule(PROCESS, n, LAM, DENS, max_angle=1.01 * widest, mode_std=0.5)
    )
    np.testing.assert_array_equal(loose, plain)
    # just below the plain schedule's widest angle the bound binds and the grid moves, but only a little
    tight = np.asarray(
        grids.information_schedule(PROCESS, n, LAM, DENS, max_angle=0.98 * widest, mode_std=0.5)
    )
    assert not np.array_equal(tight, plain)
    assert np.max(np.abs(_log_snr(tight) - _log_snr(plain))) < 1.0


def test_bounded_schedule_bad_inputs():
    with pytest.raises(ValueError, match="max_angle"):
        grids.information_schedule(PROCESS, 8, LAM, DENS, max_angle=0.0)
    with pytest.raises(ValueError, match="max_angle"):
        grids.information_schedule(PROCESS, 8, LAM, DENS, max_angle=float("nan"))
    with pytest.raises(ValueError, match="mode_std"):
        grids.information_schedule(PROCESS, 8, LAM, DENS, max_angle=0.3, mode_std=-1.0)
    with pytest.raises(ValueError, match="infeasible"):  # 8 steps of 0.1 rad cannot turn ~pi/2
        grids.information_schedule(PROCESS, 8, LAM, DENS, max_angle=0.1, mode_std=0.5)
