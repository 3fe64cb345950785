"""Dip test of unimodality and the discretisation split of strong guidance (Wu et al. 2024, section 6)."""

from __future__ import annotations

import math

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import dip_statistic, dip_test
from diffsim.analysis.guidance import centre_step_slopes, output_modes_1d, split_map
from diffsim.analysis.guidance._split import _KERNELS, _padded_grid, _padded_outputs
from diffsim.processes import VP
from diffsim.sampling import grids, simulate
from diffsim.scores.guidance import guided_mixture
from diffsim.scores.mixture import GaussianMixture


def _dip_lp(x: np.ndarray) -> float:
    """Brute-force dip: for every mode segment, the smallest band half-width around F_n that holds a
    continuous piecewise-linear distribution function with knots at the sample points, convex left of the
    segment and concave right of it (a linear programme); the minimum over segments, at least 1/(2n)."""
    from scipy.optimize import linprog

    x = np.sort(x)
    n = x.size
    dx = np.diff(x)
    best = np.inf
    for mode in range(n - 1):
        rows, rhs = [], []

        def add(coefs, b, rows=rows, rhs=rhs):
            r = np.zeros(n + 1)
            for i, c in coefs:
                r[i] += c
            rows.append(r)
            rhs.append(b)

        for i in range(n):
            for f in (i / n, (i + 1) / n):  # F_n just left of x_i and at x_i
                add([(i, 1.0), (n, -1.0)], f)
                add([(i, -1.0), (n, -1.0)], -f)
        for i in range(n - 1):
            add([(i, 1.0), (i + 1, -1.0)], 0.0)
        for i in range(n - 2):
            c = [(i + 1, 1 / dx[i]), (i, -1 / dx[i]), (i + 2, -1 / dx[i + 1]), (i + 1, 1 / dx[i + 1])]
            add(c if i + 1 <= mode else [(j, -v) for j, v in c], 0.0)
        res = linprog(
            np.r_[np.zeros(n), 1.0],
            A_ub=np.array(rows),
            b_ub=np.array(rhs),
            bounds=[(0, 1)] * n + [(0, None)],
            method="highs",
        )
        if res.status == 0:
            best = min(best, res.fun)
    return max(best, 0.5 / n)


def test_dip_statistic_matches_linear_programme():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(3)
    for trial in range(18):
        n = int(rng.integers(3, 11))
        kind = trial % 3
        if kind == 0:
            x = rng.normal(size=n)
        elif kind == 1:
            x = np.r_[rng.normal(-3, 1, n // 2), rng.normal(3, 1, n - n // 2)]
        else:
            x = rng.exponential(size=n)
        assert abs(dip_statistic(x) - _dip_lp(x)) < 1e-9, (trial, np.sort(x))


def test_dip_statistic_known_values():
    # two equal point masses: the largest possible dip 1/4; evenly spaced points: the smallest, 1/(2n)
    chex.assert_trees_all_close(dip_statistic(np.r_[np.zeros(20), np.ones(20)]), 0.25)
    chex.assert_trees_all_close(dip_statistic(np.arange(30.0)), 1 / 60)
    # invariant under affine maps and order
    x = np.random.default_rng(0).normal(size=101)
    chex.assert_trees_all_close(dip_statistic(3.0 * x[::-1] - 7.0), dip_statistic(x), rtol=1e-12)


def test_dip_test_false_positive_rate_and_power():
    rng = np.random.default_rng(11)
    level, reps, n = 0.05, 200, 200
    se = math.sqrt(level * (1 - level) / reps)
    rate_u = np.mean([dip_test(rng.uniform(size=n), level=level).bimodal for _ in range(reps)])
    rate_g = np.mean([dip_test(rng.normal(size=n), level=level).bimodal for _ in range(reps)])
    # the uniform is the calibration law: its rate is the level; Gaussians are rejected less often
    assert abs(rate_u - level) <= 3 * se, rate_u
    assert rate_g <= level + 3 * se, rate_g
    bimodal = [
        dip_test(np.r_[rng.normal(-2.5, 1, n // 2), rng.normal(2.5, 1, n // 2)], level=level).bimodal
        for _ in range(40)
    ]
    assert np.mean(bimodal) >= 0.95
    res = dip_test(np.r_[rng.normal(-2.5, 1, 100), rng.normal(2.5, 1, 100)], level=0.01)
    assert res.bimodal and res.p_value < 0.01 and res.n == 200 and res.to_dict()["level"] == 0.01


def test_dip_test_bad_input():
    with pytest.raises(ValueError, match="samples"):
        dip_statistic(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="samples"):
        dip_statistic(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="samples"):
        dip_test(np.arange(3.0))
    with pytest.raises(ValueError, match="level"):
        dip_test(np.arange(10.0), level=1.5)
    with pytest.raises(ValueError, match="n_null"):
        dip_test(np.arange(10.0), level=0.01, n_null=50)


M = 3.0
# float64 (conftest turns x64 on): collapsed DDIM outputs are below float32 rounding (docs/guidance.md)
MIX = GaussianMixture(jnp.full((3,), 1 / 3), jnp.array([[-M], [0.0], [M]]), 1.0, process=VP.ou())


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_centre_step_slopes_closed_form(sampler):
    """Slope of a guided step at the centre against its linearisation: the centre class's score is
    ``-(1 + eta kappa_t) x`` near 0 with ``kappa_t = a^2 Var_{k|x=0}[mu_k]``."""
    w, n_steps = 11.0, 8
    slopes = np.asarray(centre_step_slopes(MIX, 1, w, n_steps, sampler), np.float64)
    p = MIX.process
    ts = np.asarray(grids.logsnr_uniform(p, n_steps), np.float64)
    a, s = np.exp(-ts), np.sqrt(1 - np.exp(-2 * ts))
    at, st, an, sn = a[:-1], s[:-1], a[1:], s[1:]
    e = np.exp(-(at**2) * M**2 / 2)
    kappa = at**2 * M**2 * 2 * e / (1 + 2 * e)
    rho = sn if sampler == "ddim" else np.sqrt(np.maximum(sn**2 - (sn / st) ** 2 * (1 - (at / an) ** 2), 0))
    closed = an / at - (1 + (w - 1) * kappa) * st * (an * st / at - rho)
    chex.assert_trees_all_close(slopes, closed, rtol=2e-4, atol=2e-5)
    assert closed.min() < 0  # 8 steps at w = 11 overshoot the centre


def test_padded_driver_equals_simulate():
    score = guided_mixture(MIX, 1, 11.0)
    x_T = MIX.process.prior_sample(jr.key(1), (64, 1)).astype(MIX.means.dtype)
    grid, active = _padded_grid(MIX.process, 6, 20, "logsnr")
    x_pad = _padded_outputs(score, _KERNELS["ddim"], grid, active, x_T, jr.key(2))
    x_sim = simulate(score, "ddim", grids.logsnr_uniform(MIX.process, 6), x=x_T, key=jr.key(3)).x
    chex.assert_trees_all_close(x_pad, x_sim, rtol=1e-5, atol=1e-5)


def test_discretisation_split_and_continuous_limit():
    """Bimodal centre class at 8 steps and w = 11, unimodal at 256 steps, unimodal continuous limit."""
    sm = split_map(MIX, 1, (1.0, 11.0), (8, 256), key=jr.key(0), n=500, n_null=200)
    assert sm.bimodal.shape == (2, 2, 2)
    chex.assert_trees_all_close(sm.resolution, 1e4 * np.finfo(np.float64).eps * M)
    assert not sm.collapsed[:, 0, :].any()  # unguided outputs have unit-order spread
    # no split without amplified guidance, nor at many steps
    assert not sm.bimodal[:, 0, :].any()
    assert not sm.bimodal[:, :, -1].any()
    # the split at few steps and large strength, for both samplers, with a predicted fold
    assert sm.bimodal[:, 1, 0].all(), sm.p_value
    assert sm.fold[:, 1, 0].all() and not sm.fold[:, :, -1].any()
    # continuous time: exact output densities (PF-ODE change of variables, Fokker-Planck) are unimodal
    cont = output_modes_1d(MIX, 1, (1.0, 11.0), n_nodes=201)
    assert cont["ddim"].tolist() == [1, 1] and cont["ddpm"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="sampler"):
        split_map(MIX, 1, (1.0,), (4,), key=jr.key(0), samplers=("heun",))
    with pytest.raises(ValueError, match="steps"):
        split_map(MIX, 1, (1.0,), (), key=jr.key(0))


def test_output_modes_of_a_float32_mixture_under_x64():
    """A float32 mixture under ``jax_enable_x64`` (a float64 process): the PF-ODE likelihood keeps the
    particles' dtype (it raised a dtype error in Diffrax's buffer before) and counts the float64 modes."""
    mix32 = GaussianMixture(
        jnp.full((3,), 1 / 3, jnp.float32), jnp.array([[-M], [0.0], [M]], jnp.float32), 1.0, process=VP.ou()
    )
    assert mix32.means.dtype == jnp.float32
    out = output_modes_1d(mix32, 1, (1.0, 11.0), n_nodes=101, ddpm=False)
    ref = output_modes_1d(MIX, 1, (1.0, 11.0), n_nodes=101, ddpm=False)
    assert out["ddim"].tolist() == ref["ddim"].tolist() == [1, 1]
    assert np.asarray(out["x"]).dtype == np.float32
