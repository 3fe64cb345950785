"""Sample-quality metrics against brute-force NumPy and SciPy routes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from diffsim.analysis.metrics import (
    energy_distance,
    expected_calibration_error,
    mean_pairwise_distance,
    mmd,
    mode_weight_error,
    wasserstein_1d,
)
from diffsim.processes import VP
from diffsim.scores import GaussianMixture


RNG = np.random.default_rng(0)
X = RNG.normal(size=(37, 3))
Y = RNG.normal(size=(29, 3)) + 0.5


def _dists(a, b):
    return np.sqrt(np.sum((a[:, None] - b[None]) ** 2, -1))


def test_energy_distance_matches_brute_force_u_statistic_with_ragged_chunks():
    dxy, dxx, dyy = _dists(X, Y), _dists(X, X), _dists(Y, Y)
    n, m = len(X), len(Y)
    ref = 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))
    for chunk in (5, 8, 1024):  # 37 and 29 are not multiples of 5 or 8: padding must be masked
        np.testing.assert_allclose(float(energy_distance(X, Y, chunk=chunk)), ref, rtol=1e-10)
    np.testing.assert_allclose(float(mean_pairwise_distance(X, Y, chunk=7)), dxy.mean(), rtol=1e-10)


def test_mmd_matches_brute_force_and_vanishes_for_identical_distributions():
    h = 1.3
    kxy, kxx, kyy = (np.exp(-(_dists(a, b) ** 2) / (2 * h * h)) for a, b in ((X, Y), (X, X), (Y, Y)))
    n, m = len(X), len(Y)
    ref = (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()
    np.testing.assert_allclose(float(mmd(X, Y, bandwidth=h, chunk=6)), ref, rtol=1e-10)
    a = jax.random.normal(jax.random.key(1), (2000, 2))
    b = jax.random.normal(jax.random.key(2), (2000, 2))
    assert abs(float(mmd(a, b))) < 3e-3 < float(mmd(a, b + 0.5))


def test_wasserstein_1d_matches_scipy():
    a, b = RNG.normal(size=500), RNG.exponential(size=500)
    np.testing.assert_allclose(
        float(wasserstein_1d(a, b)), scipy.stats.wasserstein_distance(a, b), rtol=1e-10
    )
    # W2 between N(0,1) and N(2,1) is 2 (a shift); quantile coupling of equal-size samples recovers it
    z = RNG.normal(size=1000)
    np.testing.assert_allclose(float(wasserstein_1d(z, z + 2.0, p=2.0)), 2.0, rtol=1e-10)


def test_expected_calibration_error_matches_a_loop():
    probs = jax.nn.softmax(jnp.asarray(RNG.normal(size=(200, 4)) * 2))
    labels = jnp.asarray(RNG.integers(0, 4, 200))
    p, y = np.asarray(probs), np.asarray(labels)
    conf, pred = p.max(1), p.argmax(1)
    ece = 0.0
    for b in range(10):
        sel = np.clip((conf * 10).astype(int), 0, 9) == b
        if sel.any():
            ece += sel.sum() / len(p) * abs(conf[sel].mean() - (pred[sel] == y[sel]).mean())
    np.testing.assert_allclose(float(expected_calibration_error(probs, labels, n_bins=10)), ece, rtol=1e-10)


def test_mode_weight_error_small_for_exact_samples():
    gmm = GaussianMixture(jnp.array([0.2, 0.8]), jnp.array([[-1.0], [1.0]]), 0.5, process=VP.ou())
    x, _ = gmm.sample(jax.random.key(0), 20000)
    freq, err = mode_weight_error(gmm, x)
    assert float(err) < 0.02, freq


def test_metric_input_errors():
    # x: "N d", y: "M d" (one d) is the annotated contract: the test-time type checker (tests/conftest.py)
    # may reject it first with a TypeError naming the parameter
    with pytest.raises((ValueError, TypeError), match="same dimension|parameter 'y'"):
        energy_distance(X, Y[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        mmd(X[:1], Y)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(X, Y, bandwidth=-1.0)
