"""Tests for diffsim.data.synthetic: mixture constructors and token mixtures (PID gates, blocks)."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim import GaussianMixture
from diffsim.data.synthetic import (
    GATES,
    binary_prior,
    block_structured,
    hierarchy,
    pid_gate,
    ring,
    separated_clusters,
    spread_points,
)


@eqx.filter_jit
def _scores(gm, t, x):
    return jax.vmap(lambda xi: gm.score(t, xi))(x)


@eqx.filter_jit
def _posteriors(gm, t, x):
    return jax.vmap(lambda xi: gm.posterior(t, xi))(x)


def _pairwise(p):
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    return d[~np.eye(len(p), dtype=bool)]


@pytest.mark.parametrize("n,dim", [(2, 1), (5, 1), (3, 2), (6, 2), (4, 4), (3, 8), (7, 3)])
def test_spread_points_nearest_distance(n, dim):
    p = spread_points(n, dim, 2.5)
    assert p.shape == (n, dim)
    d = _pairwise(p)
    np.testing.assert_allclose(d.min(), 2.5, rtol=1e-12)
    np.testing.assert_allclose(p.mean(0), 0.0, atol=1e-12)


def test_separated_clusters_hierarchy_ring():
    gm = separated_clusters(4, 3, separation=5.0, std=0.4)
    assert isinstance(gm, GaussianMixture) and gm.n_components == 4
    np.testing.assert_allclose(_pairwise(np.asarray(gm.means)).min(), 5.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gm.eigvals), 0.16, rtol=1e-6)

    h = hierarchy(2, 3, 2, coarse_separation=10.0, fine_separation=1.0, std=0.2)
    assert h.n_components == 6
    np.testing.assert_array_equal(np.asarray(h.labels), [0, 0, 0, 1, 1, 1])
    m = np.asarray(h.means).reshape(2, 3, 2)
    np.testing.assert_allclose(_pairwise(m[0]).min(), 1.0, rtol=1e-6)  # fine pattern inside a group
    np.testing.assert_allclose(np.linalg.norm(m[0].mean(0) - m[1].mean(0)), 10.0, rtol=1e-6)
    assert h.condition(1).n_components == 3

    r = ring(8, radius=3.0, std=0.1)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(r.means), axis=1), 3.0, rtol=1e-6)


def test_gate_code_tables():
    expected = {  # (y1, y2) -> g
        "UNQ": {(0, 0): 0, (0, 1): 0, (1, 0): 1, (1, 1): 1},
        "XOR": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0},
        "RDN": {(0, 0): 0, (1, 1): 1},
        "AND": {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1},
        "COPY": {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 3},
    }
    for gate in GATES:
        tm = pid_gate(gate, separation=8.0, std=0.5)
        table = {tuple(int(v) for v in t): int(g) for t, g in zip(tm.tokens, tm.code, strict=False)}
        assert table == expected[gate], gate
        # components with the same code share a mean; different codes are >= separation apart
        means = np.asarray(tm.mixture.means)
        for i, j in itertools.combinations(range(len(tm.code)), 2):
            dist = np.linalg.norm(means[i] - means[j])
            assert (dist < 1e-9) if tm.code[i] == tm.code[j] else (dist >= 8.0 - 1e-9)
        np.testing.assert_allclose(tm.prior.sum(), 1.0)
    np.testing.assert_allclose(pid_gate("RDN").prior, np.diag([0.5, 0.5]))


def test_token_mixture_conditioning_matches_sampling():
    tm = pid_gate("AND", separation=6.0, std=0.7, prior=binary_prior(0.4))
    x, tok = tm.sample(jr.key(0), 20_000)
    assert tok.shape == (20_000, 2)
    # empirical token frequencies against the prior
    freq = np.zeros((2, 2))
    np.add.at(freq, (np.asarray(tok[:, 0]), np.asarray(tok[:, 1])), 1)
    np.testing.assert_allclose(freq / freq.sum(), binary_prior(0.4), atol=0.012)  # 4 SE
    # p(x | y1 = 1): the conditioned mixture's mean equals the mean of samples with y1 = 1
    cond = tm.condition({"y1": 1})
    mean_exact = np.asarray(jnp.sum(cond.weights[:, None] * cond.means, 0))
    mean_mc = np.asarray(x[np.asarray(tok[:, 0]) == 1].mean(0))
    np.testing.assert_allclose(mean_mc, mean_exact, atol=0.08)  # ~4 SE
    # a sequence with None is the same assignment; the empty assignment is the full mixture
    same = tm.condition([1, None])
    np.testing.assert_allclose(np.asarray(same.weights), np.asarray(cond.weights))
    assert tm.condition({}) is tm.mixture
    np.testing.assert_allclose(tm.marginal_prior([1]), binary_prior(0.4).sum(0))
    np.testing.assert_allclose(tm.marginal_prior([1, 0]), binary_prior(0.4).T)


def test_gate_posterior_recovers_code_when_separated():
    """Well separated: x carries exactly g, so p(g | x_0) is one-hot at the true code."""
    tm = pid_gate("COPY", separation=12.0, std=0.5)
    x, tok = tm.sample(jr.key(1), 500)
    post = _posteriors(tm.mixture, tm.mixture.process.t_min, x)
    g_true = 2 * np.asarray(tok[:, 0]) + np.asarray(tok[:, 1])
    g_post = np.asarray(post) @ np.eye(4)[tm.code]
    assert np.mean(np.argmax(g_post, 1) == g_true) == 1.0
    assert np.min(np.max(g_post, 1)) > 0.999


def test_block_structure_and_structural_zeros():
    tm = block_structured(("y1", "y2", "none"), block_size=3, separation=4.0, std=0.5)
    assert tm.dim == 9 and tm.alphabet_sizes == (2, 2) and tm.mixture.n_components == 4
    means = np.asarray(tm.mixture.means)
    masks = tm.support
    np.testing.assert_array_equal(masks["2:none"], np.arange(9) >= 6)
    for k, (y1, y2) in enumerate(tm.tokens):
        np.testing.assert_allclose(means[k, masks["0:y1"]], (2 * y1 - 1) * 2.0)
        np.testing.assert_allclose(means[k, masks["1:y2"]], (2 * y2 - 1) * 2.0)
        np.testing.assert_allclose(means[k, masks["2:none"]], 0.0)
    # y1 is independent of y2 and blocks are conditionally independent: conditioning on y1 leaves the
    # score on the y2 block and on the "none" block exactly unchanged (no information about y1 there)
    x = jr.normal(jr.key(2), (50, 9)) * 2.5
    t = 0.3
    full = _scores(tm.mixture, t, x)
    for v in (0, 1):
        cond = _scores(tm.condition({"y1": v}), t, x)
        blk = masks["1:y2"] | masks["2:none"]
        np.testing.assert_allclose(np.asarray(cond)[:, blk], np.asarray(full)[:, blk], atol=1e-10)
        assert np.max(np.abs(np.asarray(cond - full)[:, masks["0:y1"]])) > 1e-2
    xor = block_structured(("xor", "and", "y3"), block_size=1)
    assert xor.alphabet_sizes == (2, 2, 2) and xor.mixture.n_components == 8


def test_binary_prior_correlation():
    for rho in (-0.6, 0.0, 0.9):
        p = binary_prior(rho)
        y = np.array(list(itertools.product([0, 1], [0, 1])))
        w = p.ravel()
        m = w @ y
        cov = (w[:, None] * (y - m)).T @ (y - m)
        np.testing.assert_allclose(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), rho, atol=1e-12)


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="Unknown gate"):
        pid_gate("NAND")
    with pytest.raises(ValueError, match="off the diagonal"):
        pid_gate("RDN", prior=np.full((2, 2), 0.25))
    with pytest.raises(ValueError, match="sum to one"):
        pid_gate("XOR", prior=np.full((2, 2), 0.3))
    with pytest.raises(ValueError, match="Unknown block function"):
        block_structured(("y1", "or"))
    with pytest.raises(ValueError, match="fine_separation"):
        hierarchy(coarse_separation=1.0, fine_separation=2.0)
    with pytest.raises(ValueError, match="separation"):
        separated_clusters(3, 2, separation=-1.0)
    with pytest.raises(ValueError, match="correlation"):
        binary_prior(1.5)
    tm = pid_gate("XOR")
    with pytest.raises(ValueError, match="out of range"):
        tm.condition({"y1": 2})
    with pytest.raises(ValueError, match="Unknown token name"):
        tm.condition({"y3": 0})
    with pytest.raises(ValueError, match="zero prior"):
        pid_gate("RDN").condition({"y1": 0, "y2": 1})
