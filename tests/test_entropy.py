"""Entropy routes checked against Gaussian closed forms, exact mixture densities and each other."""

import math

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis.entropy import (
    entropy_rate,
    flow_entropy_rate,
    gaussian_entropy,
    gaussian_marginal_entropy,
    knn_distances,
    knn_entropy,
    knn_weights,
    marginal_path_entropy,
    model_log_density,
    pf_ode_entropy,
    prior_entropy,
    sampler_map_entropy,
    unit_ball_log_volume,
)
from diffsim.scores.guidance import guided_mixture


LOG_2PI_E = math.log(2 * math.pi * math.e)


# --------------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------------
def test_gaussian_closed_forms_agree():
    a = jnp.array([[1.0, 0.4, 0.0], [0.4, 2.0, 0.3], [0.0, 0.3, 0.5]])
    lam = jnp.linalg.eigvalsh(a)
    chex.assert_trees_all_close(gaussian_entropy(a), gaussian_entropy(lam), atol=1e-12)
    chex.assert_trees_all_close(gaussian_entropy(2.0, dim=3), 1.5 * (LOG_2PI_E + math.log(2.0)), atol=1e-12)
    p = ds.VP.ou()
    for t in (0.0, 0.3, 3.0):
        c_t = p.alpha(t) ** 2 * a + p.sigma2(t) * jnp.eye(3)
        chex.assert_trees_all_close(gaussian_marginal_entropy(p, a, t), gaussian_entropy(c_t), atol=1e-12)
    with pytest.raises(ValueError, match="dim"):
        gaussian_entropy(1.0)
    with pytest.raises(ValueError, match="positive"):
        gaussian_entropy(jnp.array([1.0, -1.0]))


def test_unit_ball_volume():
    assert unit_ball_log_volume(1) == pytest.approx(math.log(2.0))
    assert unit_ball_log_volume(2) == pytest.approx(math.log(math.pi))
    assert unit_ball_log_volume(3) == pytest.approx(math.log(4 * math.pi / 3))


# --------------------------------------------------------------------------------------------------
# Kozachenko-Leonenko
# --------------------------------------------------------------------------------------------------
def test_knn_distances_match_brute_force():
    x = jr.normal(jr.key(1), (203, 3))
    d = np.sqrt(((np.asarray(x)[:, None] - np.asarray(x)[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    expect = np.sort(d, axis=1)[:, :4]
    chex.assert_trees_all_close(knn_distances(x, 4, chunk_size=64), expect, atol=1e-12)  # 203 = 3*64 + 11
    x1 = x[:, :1]
    d1 = np.abs(np.asarray(x1) - np.asarray(x1).T)
    np.fill_diagonal(d1, np.inf)
    chex.assert_trees_all_close(knn_distances(x1, 3), np.sort(d1, axis=1)[:, :3], atol=1e-12)


# tolerances: |bias| + 3 sd of the k = 1 estimator measured over 20 seeds at n = 10000 in float64
# (bias/sd: d = 1 0.000/0.016, d = 2 -0.005/0.020, d = 4 -0.021/0.022, d = 8 0.000/0.027; docs/guidance.md)
@pytest.mark.slow
@pytest.mark.parametrize("d, tol", [(1, 0.05), (2, 0.07), (4, 0.09), (8, 0.09)])
def test_knn_entropy_gaussian_closed_form(d, tol):
    scales = jnp.linspace(0.5, 2.0, d)
    x = jr.normal(jr.key(d), (10_000, d)) * scales[None, :]
    truth = gaussian_entropy(scales**2)
    h = knn_entropy(x)
    assert abs(float(h - truth)) < tol, (float(h), float(truth))
    # the d log 2 bug (radius-one ball volume with diameters) would be far outside the tolerance
    assert abs(float(h + d * math.log(2.0) - truth)) > 0.5


def test_knn_bias_corrected_option():
    w = knn_weights(8, 8)
    chex.assert_trees_all_close(w.sum(), 1.0, atol=1e-12)
    j = np.arange(1, 9)
    g = np.exp([math.lgamma(i + 2 / 8) - math.lgamma(i) for i in j])
    assert abs(float(w @ g)) < 1e-10  # kills the n^{-2/d} term
    chex.assert_trees_all_close(knn_weights(3, 2), np.array([0.0, 0.0, 1.0]))
    x = jr.normal(jr.key(7), (4000, 4))
    h = knn_entropy(x, bias_correction=True)
    assert abs(float(h) - 2 * LOG_2PI_E) < 0.1


def test_knn_duplicates_and_bad_input():
    x = jnp.concatenate([jr.normal(jr.key(0), (50, 2)), jnp.zeros((2, 2))])
    with pytest.raises(ValueError, match="duplicated"):
        knn_entropy(x)
    assert np.isfinite(float(knn_entropy(x, ties="resolution")))
    with pytest.raises(ValueError, match="more points"):
        knn_entropy(jnp.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match="ties"):
        knn_entropy(x, ties="drop")


# --------------------------------------------------------------------------------------------------
# PF-ODE routes
# --------------------------------------------------------------------------------------------------
COV2 = jnp.array([[0.3, 0.4], [0.4, 2.0]])


@pytest.fixture(scope="module")
def gauss2d():
    """A correlated Gaussian (non-diagonal velocity Jacobian, so Hutchinson probes are not exact)."""
    return ds.GaussianMixture(jnp.array([1.0]), jnp.array([[1.0, -0.5]]), COV2[None])


def test_pf_ode_entropy_gaussian(gauss2d):
    """Per-sample model log-densities equal the exact log p_{t_min} (the PF-ODE of the exact score
    transports the prior onto p_{t_min}; the only gap is p_T vs the prior, ~ e^{-T}); entropy matches the
    closed form within Monte Carlo error."""
    p = gauss2d.process
    z = jr.normal(jr.key(0), (400, 2))
    est = pf_ode_entropy(gauss2d, z=z)
    exact = jax.vmap(lambda x: gauss2d.log_prob(p.t_min, x))(est.x)
    chex.assert_trees_all_close(est.log_density, exact, atol=2e-4)
    # exactly, once the prior is replaced by the true p_T
    prior_gap = jax.vmap(lambda x: gauss2d.log_prob(p.t_max, x))(z) - p.prior_log_prob(z)
    chex.assert_trees_all_close(est.log_density + prior_gap, exact, atol=1e-6)
    truth = gaussian_marginal_entropy(p, COV2, p.t_min)
    # the flow is affine: h(prior) + log|det| is exact (no Monte Carlo noise), up to p_T vs the prior
    assert float(est.stderr) < 1e-8
    assert abs(float(est.entropy - truth)) < 1e-6
    # the model density at given points (diffsim.log_likelihood forwards) agrees with the backward pass
    fwd = model_log_density(gauss2d, est.x[:50])
    chex.assert_trees_all_close(fwd, est.log_density[:50], atol=1e-5)


def test_pf_ode_entropy_estimator_on_guided_mixture():
    """Monte Carlo PF-ODE entropy of a guided (non-affine) flow vs Gauss-Hermite quadrature of the same
    change of variables; the closed-form prior term leaves only the log-determinant's noise (a standard
    error 40x smaller than that of -mean log q here)."""
    mix = ds.GaussianMixture(
        jnp.array([0.2, 0.5, 0.3]), jnp.array([[-2.0], [0.5], [3.0]]), jnp.array([0.2, 1.0, 0.5])
    )
    g = guided_mixture(mix, 1, 3.0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    quad = pf_ode_entropy(g, z=jnp.asarray(nodes[:, None]), weights=jnp.asarray(weights / weights.sum()))
    mc = pf_ode_entropy(g, key=jr.key(3), n=500)
    assert abs(float(mc.entropy - quad.entropy)) < 4 * float(mc.stderr) + 1e-5
    plain_se = float(jnp.std(mc.log_density)) / math.sqrt(499)
    assert float(mc.stderr) < 0.1 * plain_se
    # the estimate is the same expectation: -mean log q agrees within its own (larger) error
    assert abs(float(-jnp.mean(mc.log_density) - quad.entropy)) < 4 * plain_se
    assert prior_entropy(g.process, 3) == pytest.approx(1.5 * LOG_2PI_E)


def test_pf_ode_entropy_hutchinson_unbiased(gauss2d):
    z = jr.normal(jr.key(2), (400, 2))
    exact = pf_ode_entropy(gauss2d, z=z)
    hutch = pf_ode_entropy(gauss2d, z=z, divergence="hutchinson", key=jr.key(5), n_probes=2)
    chex.assert_trees_all_close(exact.x, hutch.x, atol=1e-6)
    err = hutch.log_density - exact.log_density
    assert abs(float(jnp.mean(err))) < 4 * float(jnp.std(err)) / math.sqrt(400) + 1e-4
    assert float(jnp.std(err)) > 1e-3  # it is a stochastic estimate
    with pytest.raises(TypeError, match="key"):
        pf_ode_entropy(gauss2d, z=z, divergence="hutchinson")


def test_sampler_map_entropy_is_exact_for_linear_maps(gauss2d):
    """For Gaussian data the DDIM map is affine; its Jacobian equals finite differences of the map, and
    the output entropy is h(prior) + log|det J| exactly."""
    p = gauss2d.process
    grid = ds.grids.logsnr_uniform(p, 20)
    z = jr.normal(jr.key(3), (3, 2))
    est = sampler_map_entropy(gauss2d, grid, key=jr.key(0), z=z)
    logdet = -(est.log_density - p.prior_log_prob(z))

    def run(zz):
        return ds.simulate(gauss2d, "ddim", grid, x=zz, key=jr.key(0)).x

    eye = jnp.eye(2)
    cols = jnp.stack([run(z[:1] + eye[i][None, :]) - run(z[:1]) for i in range(2)], -1)[0]
    chex.assert_trees_all_close(logdet, jnp.full((3,), jnp.linalg.slogdet(cols)[1]), atol=1e-8)
    h = 0.5 * 2 * LOG_2PI_E + logdet[0]
    chex.assert_trees_all_close(h, gaussian_entropy(cols @ cols.T), atol=1e-10)
    with pytest.raises(ValueError, match="deterministic"):
        sampler_map_entropy(gauss2d, grid, key=jr.key(0), z=z, method="ddpm")


# --------------------------------------------------------------------------------------------------
# entropy-rate identity
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mix1d():
    return ds.GaussianMixture(
        jnp.array([0.2, 0.5, 0.3]), jnp.array([[-2.0], [0.5], [3.0]]), jnp.array([0.2, 1.0, 0.5])
    )


def _quadrature_entropy_and_fisher(mix, t):
    x = jnp.linspace(-12, 12, 24001)[:, None]
    dx = float(x[1, 0] - x[0, 0])
    lp = jax.vmap(lambda y: mix.log_prob(t, y))(x)
    s = jax.vmap(lambda y: mix.score(t, y))(x)[:, 0]
    pdf = jnp.exp(lp)
    return -jnp.sum(pdf * lp) * dx, jnp.sum(pdf * s**2) * dx


def test_entropy_rate_identity_by_quadrature(mix1d):
    """dH/dt (central difference of the quadrature entropy) = d f + 1/2 g^2 J(p_t) (J by quadrature)."""
    p = mix1d.process
    for t in (0.05, 0.3, 1.0):
        eps = 1e-4
        h_plus, _ = _quadrature_entropy_and_fisher(mix1d, t + eps)
        h_minus, _ = _quadrature_entropy_and_fisher(mix1d, t - eps)
        _, fisher = _quadrature_entropy_and_fisher(mix1d, t)
        rate = entropy_rate(p, t, fisher, 1)
        chex.assert_trees_all_close((h_plus - h_minus) / (2 * eps), rate, atol=1e-5)


def test_marginal_path_entropy_matches_quadrature(mix1d):
    # J is a Monte Carlo mean with common random numbers over t: its error integrates coherently (large n)
    path = marginal_path_entropy(mix1d, key=jr.key(0), n=200_000, t0=0.01, t1=6.0, n_times=80)
    for i in (0, 20, 50):
        h_q, j_q = _quadrature_entropy_and_fisher(mix1d, float(path.times[i]))
        assert abs(float(path.entropy[i] - h_q)) < 0.02
        assert abs(float(path.fisher[i] / j_q - 1.0)) < 0.05
    with pytest.raises(TypeError, match="exact"):
        marginal_path_entropy(guided_mixture(mix1d, 0, 2.0), key=jr.key(0))


def test_flow_entropy_rate_matches_pf_ode_for_guided_output(mix1d):
    """Liouville along fine DDIM particles vs the Gauss-Hermite change of variables of the PF-ODE."""
    g = guided_mixture(mix1d, 1, 3.0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    quad = pf_ode_entropy(g, z=jnp.asarray(nodes[:, None]), weights=jnp.asarray(weights / weights.sum()))
    fr = flow_entropy_rate(g, ds.grids.logsnr_uniform(g.process, 400), key=jr.key(1), n=3000)
    assert abs(float(fr.entropy[-1] - quad.entropy)) < 0.03
    assert float(fr.entropy[0]) == pytest.approx(0.5 * LOG_2PI_E)
