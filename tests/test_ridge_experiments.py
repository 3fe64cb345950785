"""Intrinsic-dimension estimators on data of known dimension, and the tangent / normal loss split of the
random-feature 2-mode toy (He, Qiu & Tao 2026) against independent routes."""

import math

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import ridge
from diffsim.scores import EmpiricalScore, random_features


def _embedded(d, n=800, ambient=12, seed=0, kind="gaussian"):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) if kind == "gaussian" else rng.uniform(size=(n, d))
    basis = np.linalg.qr(rng.normal(size=(ambient, d)))[0]
    return z @ basis.T


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_intrinsic_dimension_on_linear_subspaces(d):
    x = _embedded(d)
    chex.assert_trees_all_close(ridge.two_nn_dimension(x), float(d), rtol=0.15)
    chex.assert_trees_all_close(ridge.two_nn_dimension(x, discard=0.1), float(d), rtol=0.15)
    chex.assert_trees_all_close(ridge.mle_dimension(x), float(d), rtol=0.15)


def test_intrinsic_dimension_on_a_curved_manifold():
    # a circle (d = 1) and a 2-sphere (d = 2) embedded in R^3: curvature must not inflate the estimate
    rng = np.random.default_rng(1)
    th = rng.uniform(0, 2 * np.pi, 600)
    circle = np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], 1)
    sphere = rng.normal(size=(1500, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    assert abs(ridge.two_nn_dimension(circle) - 1) < 0.15
    assert abs(ridge.mle_dimension(sphere) - 2) < 0.3


def test_two_nn_is_the_pareto_mle():
    # independent route: the two-NN ratios of a d-dimensional Poisson cloud are Pareto(d); the estimator
    # must equal N / sum log(r2 / r1) computed by brute force
    x = _embedded(3, n=300, kind="uniform")
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    r = np.sort(dist, axis=1)[:, :2]
    chex.assert_trees_all_close(
        ridge.two_nn_dimension(x), len(x) / np.log(r[:, 1] / r[:, 0]).sum(), rtol=1e-10
    )


def test_eigengap_dimension():
    lam = np.array([[-1.0, -1.5, -50.0, -50.5], [-1.0, -40.0, -41.0, -42.0]])
    np.testing.assert_array_equal(ridge.eigengap_dimension(lam), [2, 1])
    # the empirical Hessian between two points at moderate t: a 1-ridge (the segment)
    emp = EmpiricalScore(jnp.asarray([[-3.0, 0.0], [3.0, 0.0]]))
    lam, _ = ridge.hessian_spectrum(emp, 0.5, jnp.asarray([[0.1, 0.05]]))
    np.testing.assert_array_equal(ridge.eigengap_dimension(lam), [1])


def test_intrinsic_dimension_bad_input():
    with pytest.raises(ValueError, match="duplicate"):
        ridge.two_nn_dimension(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="discard"):
        ridge.two_nn_dimension(_embedded(2, n=50), discard=1.0)
    with pytest.raises(ValueError, match="more than"):
        ridge.mle_dimension(_embedded(2, n=10), k_max=20)
    with pytest.raises(ValueError, match="descending"):
        ridge.eigengap_dimension(np.array([-3.0, -1.0]))
    with pytest.raises(ValueError, match="eigvals"):
        ridge.eigengap_dimension(np.array([1.0]))


# --- the 2-mode toy: tangent (x) / normal (y) loss split --------------------------------------------
@pytest.fixture(scope="module")
def toy():
    data = jnp.asarray([[-3.0, 0.0], [3.0, 0.0]])
    ts = random_features.make_training_set(data, key=jr.key(0), n_times=21, n_noise=8)
    model = random_features.RandomFeatureScore(2, 48, key=jr.key(1), n_freqs=4)
    return ts, model, random_features.fit_moments(model, ts)


def test_toy_loss_split_matches_the_forward_pass(toy):
    # independent route: the per-axis weighted DSM loss evaluated by the model's forward pass
    ts, model, mom = toy
    taus = np.array([10.0, 100.0, 1000.0])
    stack = jnp.concatenate([mom.readout_at(model.readout, taus), mom.readout_limit(model.readout)[None]])
    split = np.asarray(mom.loss_per_coordinate(stack))
    for a, row in zip(stack, split, strict=True):
        m = model.with_readout(a)
        pred = np.stack(
            [
                np.asarray(jnp.stack([m.output(t, xi) for xi in x]))
                for t, x in zip(ts.times, ts.inputs, strict=True)
            ]
        )
        sq = (pred - np.asarray(ts.targets)) ** 2  # (n_t, n_s, 2)
        direct = np.einsum("j,jd->d", np.asarray(ts.weights), sq.mean(1)) / 2
        chex.assert_trees_all_close(row, direct, rtol=1e-6, atol=1e-10)
    # normal (y) loss is pure optimisation error: V_y = C_y = 0
    assert np.all(np.diff(split[:, 1]) <= 0)


def test_toy_normal_loss_spectral_closed_form(toy):
    # with V_y = 0 and C_y = 0: L_y(tau) = (1/d) sum_k lambda_k (A_y(0) q_k)^2 exp(-4 lambda_k tau)
    _, model, mom = toy
    lam, q = np.asarray(mom.eigvals), np.asarray(mom.eigvecs)
    a0 = np.asarray(model.readout)[1] @ q
    for tau in (1.0, 50.0, 500.0):
        closed = np.sum(lam * a0**2 * np.exp(-4 * lam * tau)) / 2
        chex.assert_trees_all_close(
            float(mom.loss_per_coordinate(mom.readout_at(model.readout, tau))[1]), closed, rtol=1e-8
        )


def test_toy_normal_direction_is_y(toy):
    # the split by axes equals the split by the ridge frame of the empirical Hessian (normal = e_y)
    emp = EmpiricalScore(jnp.asarray([[-3.0, 0.0], [3.0, 0.0]]))
    x = jnp.asarray([[0.3, 0.2], [-1.0, -0.1], [0.6, 0.05]])
    geo = ridge.ridge_geometry(emp, 0.5, x, 1)
    assert bool(np.all(np.asarray(geo.valid)))
    chex.assert_trees_all_close(
        np.abs(np.asarray(geo.normal_basis)[:, :, 0]), np.tile([0.0, 1.0], (3, 1)), atol=1e-10
    )
    h = 1 - math.exp(-1.0)
    chex.assert_trees_all_close(np.asarray(geo.residual), np.abs(np.asarray(x)[:, 1]) / h, rtol=1e-10)
