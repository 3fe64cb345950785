"""Processes: closed forms against independent formulas, autodiff consistency of drift/diffusion with
the marginals, inverses, discrete schedules, forward-SDE simulation vs exact marginals, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsim as ds
from diffsim.processes import alpha_bar_to_time, to_betas


PROCESSES = {
    "ou": ds.VP.ou(),
    "linear": ds.VP.linear(),
    "cosine": ds.VP.cosine(),
    "ve": ds.VE(0.01, 50.0),
    "discrete": ds.VP.from_betas(np.linspace(1e-4, 0.02, 1000)),
}
TS = jnp.array([0.003, 0.05, 0.2, 0.5, 0.9])


@pytest.fixture(params=sorted(PROCESSES))
def process(request):
    return PROCESSES[request.param]


def test_ou_closed_form():
    p = PROCESSES["ou"]
    chex.assert_trees_all_close(p.alpha(TS), jnp.exp(-TS), rtol=1e-14)
    chex.assert_trees_all_close(p.sigma2(TS), 1 - jnp.exp(-2 * TS), rtol=1e-13)
    chex.assert_trees_all_close(p.drift(0.3, jnp.ones(3)), -jnp.ones(3), rtol=1e-14)
    chex.assert_trees_all_close(p.diffusion(0.3), jnp.sqrt(2.0), rtol=1e-14)


def test_linear_matches_score_sde():
    # score_sde VPSDE: log mean coeff = -1/4 t^2 (b1 - b0) - 1/2 t b0, std = sqrt(1 - exp(2 lmc)).
    p = PROCESSES["linear"]
    lmc = -0.25 * TS**2 * (20.0 - 0.1) - 0.5 * TS * 0.1
    chex.assert_trees_all_close(p.alpha(TS), jnp.exp(lmc), rtol=1e-13)
    chex.assert_trees_all_close(p.sigma(TS), jnp.sqrt(1 - jnp.exp(2 * lmc)), rtol=1e-12)
    chex.assert_trees_all_close(p.beta(TS), 0.1 + TS * 19.9, rtol=1e-14)


def test_cosine_matches_nichol_dhariwal():
    p = PROCESSES["cosine"]
    s = 0.008
    f = lambda t: jnp.cos((t + s) / (1 + s) * jnp.pi / 2) ** 2  # noqa: E731
    chex.assert_trees_all_close(p.alpha_bar(TS), f(TS) / f(0.0), rtol=1e-12)


def test_ve_matches_score_sde_diffusion():
    p = PROCESSES["ve"]
    smin, smax = 0.01, 50.0
    # score_sde VESDE diffusion: sigma_min (smax/smin)^t sqrt(2 log(smax/smin))
    g = smin * (smax / smin) ** TS * jnp.sqrt(2 * jnp.log(smax / smin))
    chex.assert_trees_all_close(p.diffusion(TS), g, rtol=1e-12)
    chex.assert_trees_all_close(p.sigma2(TS), smin**2 * ((smax / smin) ** (2 * TS) - 1), rtol=1e-12)
    chex.assert_trees_all_close(p.sigma(p.t_min), smin, rtol=1e-12)
    assert p.prior_std == pytest.approx(float(p.sigma(1.0)))


def test_coefficients_consistent_with_sde(process):
    """d log alpha / dt = f(t) and d sigma^2 / dt = 2 f sigma^2 + g^2 (the moment ODEs of the SDE)."""
    ts = TS * process.t_max if process.t_max > 1 else TS
    dlog_alpha = jax.vmap(jax.grad(process.log_alpha))(ts)
    dsig2 = jax.vmap(jax.grad(process.sigma2))(ts)
    f, g2 = process.drift_coefficient(ts), process.beta(ts)
    chex.assert_trees_all_close(dlog_alpha, f, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(dsig2, 2 * f * process.sigma2(ts) + g2, rtol=1e-9)


def test_log_snr_inverse(process):
    ts = jnp.linspace(process.t_min, process.t_max * 0.999, 17)
    lam = process.log_snr(ts)
    assert np.all(np.diff(np.asarray(lam)) < 0), "log-SNR must decrease"
    chex.assert_trees_all_close(process.t_from_log_snr(lam), ts, rtol=1e-9, atol=1e-10)
    chex.assert_trees_all_close(lam, jnp.log(process.alpha(ts) ** 2 / process.sigma2(ts)), rtol=1e-10)


def test_transition_composes(process):
    s, t, u = 0.1 * process.t_max, 0.3 * process.t_max, 0.7 * process.t_max
    a_st, b_st = process.transition(s, t)
    a_tu, b_tu = process.transition(t, u)
    a_su, b_su = process.transition(s, u)
    chex.assert_trees_all_close(a_st * a_tu, a_su, rtol=1e-12)
    chex.assert_trees_all_close(a_tu**2 * b_st**2 + b_tu**2, b_su**2, rtol=1e-10)
    # from data: transition(0, t) is the marginal
    a0, b0 = process.transition(0.0, t)
    chex.assert_trees_all_close((a0, b0), (process.alpha(t), process.sigma(t)), rtol=1e-12)


def test_discrete_schedule_roundtrip():
    betas = np.linspace(1e-4, 0.02, 1000)
    p = ds.VP.from_betas(betas)
    abar = np.cumprod(1 - betas)
    n = np.arange(1000)
    chex.assert_trees_all_close(p.alpha_bar((n + 1) / 1000), abar, rtol=1e-10)
    chex.assert_trees_all_close(alpha_bar_to_time(p, abar), (n + 1) / 1000, rtol=1e-9)
    back = to_betas(p, jnp.asarray(np.concatenate([[0.0], (n + 1) / 1000])))
    chex.assert_trees_all_close(back, betas, rtol=1e-9)
    # beta(t) is the piecewise-constant slope of B = -log alpha_bar
    chex.assert_trees_all_close(p.beta(0.5 / 1000), -np.log(abar[0]) * 1000, rtol=1e-10)


def test_ou_ddpm_time_map():
    """The map t = -1/2 log alpha_bar used by Biroli et al. (2024) to read DDPM steps as OU times."""
    abar = jnp.array([0.9, 0.5, 0.01])
    chex.assert_trees_all_close(alpha_bar_to_time(ds.VP.ou(), abar), -0.5 * jnp.log(abar), rtol=1e-12)


def test_prior(process, key):
    x = process.prior_sample(key, (20000, 3))
    np.testing.assert_allclose(np.std(x), process.prior_std, rtol=0.02)
    z = jnp.array([[0.3, -1.0, 2.0]])
    s2 = process.prior_std**2
    expected = -0.5 * jnp.sum(z**2) / s2 - 1.5 * jnp.log(2 * jnp.pi * s2)
    chex.assert_trees_all_close(process.prior_log_prob(z)[0], expected, rtol=1e-12)


_POINT = ds.GaussianMixture(jnp.ones(1), jnp.array([[1.5, -0.5]]), 1e-12)  # a (near) point mass


@pytest.mark.parametrize("name", ["ou", "linear", "ve"])
def test_forward_sde_simulation_matches_marginal(name, key):
    """Euler-Maruyama on the forward SDE from a fixed x0 reproduces N(alpha x0, sigma^2 I)."""
    p = PROCESSES[name]
    score = ds.GaussianMixture(jnp.ones(1), jnp.array([[1.5, -0.5]]), 1.0, process=p)
    t1 = 0.5 * p.t_max if p.t_max > 1 else 0.5
    n = 20000
    x0 = jnp.tile(jnp.array([1.5, -0.5]), (n, 1))
    traj = ds.simulate(score, "forward_em", jnp.linspace(0.0, t1, 201), x=x0, key=key)
    mean, std = p.marginal(jnp.array([1.5, -0.5]), t1)
    se = float(std) / np.sqrt(n)
    np.testing.assert_allclose(traj.x.mean(0), mean, atol=5 * se + 0.01 * float(std))
    np.testing.assert_allclose(traj.x.std(0), std, rtol=0.03)
    exact = ds.simulate(score, "forward", jnp.array([0.0, t1]), x=x0, key=key)
    np.testing.assert_allclose(exact.x.mean(0), mean, atol=5 * se)
    np.testing.assert_allclose(exact.x.std(0), std, rtol=0.03)


def test_bad_input():
    p = ds.VP.ou()
    with pytest.raises(ValueError, match="t"):
        p.check_time(-0.1)
    with pytest.raises(ValueError, match="t_max"):
        p.check_time(11.0)
    with pytest.raises(ValueError, match="non-finite"):
        p.check_time(jnp.nan)
    with pytest.raises(ValueError):
        p.check_time(0.0, allow_zero=False)
    with pytest.raises(ValueError, match="beta_min"):
        ds.VP.linear(-1.0, 20.0)
    with pytest.raises(ValueError, match="sigma_min"):
        ds.VE(5.0, 1.0)
    with pytest.raises(ValueError, match="t_max < 1"):
        ds.VP.cosine(t_max=1.0)
    with pytest.raises(ValueError, match="betas"):
        ds.VP.from_betas([0.1, 1.2])
    with pytest.raises(ValueError, match="decreasing"):
        ds.VP.from_alpha_bar([0.5, 0.9])
    with pytest.raises(ValueError, match="t_min"):
        ds.VP.ou(t_min=2.0, t_max=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        ds.VP.from_betas([0.1, np.nan])
