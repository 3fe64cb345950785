"""Exact PID values of the case-study mixtures (diffsim.data._information_cases) against closed-form reasoning
on hand-built probability tables, and the estimator on one case against the exact values."""

import math

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis.information import (
    LogSNRScheme,
    decompose,
    discrete_pid,
    exact_pid_information,
    pid_information,
    pid_tolerances,
    well_separated_joint,
)
from diffsim.data import bias_sweep_mixture, co_hyponyms, context_switch, homonym, synonyms
from diffsim.scores.conditional import AbstractConditionalDenoiser, ConditionalMixture


def h2(p):
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def mi_bits(table):
    """I(A; B) in bits of a 2-D joint table (independent route: entropies)."""
    t = np.asarray(table, float)
    pa, pb = t.sum(1), t.sum(0)
    nz = t > 0
    return float(np.sum(t[nz] * np.log2(t[nz] / np.outer(pa, pb)[nz])))


def joint_of(tm, **kw):
    return well_separated_joint(ConditionalMixture.from_token_mixture(tm), **kw)


def pid_bits(tm, measure, **kw):
    return discrete_pid(joint_of(tm, **kw), measure, unit="bits", context="context" in kw).as_array()


def test_context_switch_pid_and_cpid():
    # hand-built table p(y1, y2, g) with c marginalised: g = y1 (c = 0) or y2 (c = 1), each 1/2
    t = np.zeros((2, 2, 2))
    for y1 in (0, 1):
        for y2 in (0, 1):
            t[y1, y2, y1] += 1 / 8
            t[y1, y2, y2] += 1 / 8
    chex.assert_trees_all_close(joint_of(context_switch()), t, atol=1e-12)
    i1, i12 = mi_bits(t.sum(1)), mi_bits(t.reshape(4, 2))
    assert abs(i1 - (1 - h2(0.75))) < 1e-12 and abs(i12 - 0.5) < 1e-12
    mmi = pid_bits(context_switch(), "mmi")
    chex.assert_trees_all_close(mmi, np.array([i1, 0.0, 0.0, i12 - i1]), atol=1e-9)
    # CPID given c: c = 0 is UNQ on y1, c = 1 UNQ on y2 -> pointwise min and Williams-Beer R = 0
    for m in ("pointwise_min", "wb_imin"):
        chex.assert_trees_all_close(
            pid_bits(context_switch(), m, context=(2,)), np.array([0, 0.5, 0.5, 0]), atol=1e-9
        )
    chex.assert_trees_all_close(
        pid_bits(context_switch(), "mmi", context=(2,)), np.array([0.5, 0, 0, 0.5]), atol=1e-9
    )


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_synonyms_redundancy_is_the_shared_entropy(p):
    for m in ("pointwise_min", "mmi", "wb_imin"):
        chex.assert_trees_all_close(
            pid_bits(synonyms(shared_probability=p), m), np.array([h2(p), 0, 0, 0]), atol=1e-9
        )


def test_near_synonyms_mmi_and_conditional_informations():
    p, q = 0.25, 0.9
    tm = synonyms(shared_probability=p, agreement=q)
    # joint of (f, y2): I(F; Y2) is the redundancy, H(f) - I(F; Y2) the unique information of y1
    fy2 = np.array([[(1 - p) * q, (1 - p) * (1 - q)], [p * (1 - q), p * q]])
    r = mi_bits(fy2)
    chex.assert_trees_all_close(pid_bits(tm, "mmi"), np.array([r, h2(p) - r, 0, 0]), atol=1e-9)
    # H(f | y2) = H(f) - I(F; Y2): the information y1 adds given y2 (and y3)
    h_f_y2 = h2(p) + h2(q) - h2(p * q + (1 - p) * (1 - q))
    assert abs(h_f_y2 - (h2(p) - r)) < 1e-12


def test_homonym_synergy_and_its_collapse():
    # resolved: g = 0 (y1 = 0), 1 + y2 (y1 = 1): I1 = 1, I2 = 1/2, I12 = 3/2
    t = np.zeros((2, 2, 3))
    for y2 in (0, 1):
        t[0, y2, 0] = 0.25
        t[1, y2, 1 + y2] = 0.25
    chex.assert_trees_all_close(joint_of(homonym()), t, atol=1e-12)
    i1, i2, i12 = mi_bits(t.sum(1)), mi_bits(t.sum(0)), mi_bits(t.reshape(4, 3))
    chex.assert_trees_all_close(np.array([i1, i2, i12]), np.array([1.0, 0.5, 1.5]), atol=1e-12)
    for m in ("pointwise_min", "mmi", "wb_imin"):
        chex.assert_trees_all_close(pid_bits(homonym(), m), np.array([0.5, 0.5, 0, 0.5]), atol=1e-9)
        chex.assert_trees_all_close(pid_bits(homonym(resolved=False), m), np.array([0, 1, 0, 0]), atol=1e-9)


def test_co_hyponyms_blocks_and_image():
    for m in ("pointwise_min", "mmi", "wb_imin"):
        chex.assert_trees_all_close(
            pid_bits(co_hyponyms(target="parent"), m), np.array([1, 0, 0, 0.0]), atol=1e-9
        )
        chex.assert_trees_all_close(
            pid_bits(co_hyponyms(target="child1"), m), np.array([0, 1, 0, 0.0]), atol=1e-9
        )
        chex.assert_trees_all_close(
            pid_bits(co_hyponyms(target="child2"), m), np.array([0, 0, 1, 0.0]), atol=1e-9
        )
        # whole image: x carries (y1, y2) (8 equiprobable values): I_k = 2, I_12 = 3, min-based R = 2
        chex.assert_trees_all_close(pid_bits(co_hyponyms(), m), np.array([2, 0, 0, 1.0]), atol=1e-9)


def test_bias_sweep_mixture_redundancy_given_the_correlation_token():
    rhos = (0.0, 0.5, 0.9)
    j = joint_of(bias_sweep_mixture(rhos), context=(2,))
    for i, rho in enumerate(rhos):
        ji = j[i] / j[i].sum()
        p = (1 + rho) / 2
        y1y2 = np.array([[p, 1 - p], [1 - p, p]]) / 2
        r = discrete_pid(ji, "mmi", unit="bits")
        assert abs(r.redundancy - mi_bits(y1y2)) < 1e-9 and abs(r.unique1 - (1 - mi_bits(y1y2))) < 1e-9


def test_bad_arguments():
    with pytest.raises(ValueError, match="shared_probability"):
        synonyms(shared_probability=1.0)
    with pytest.raises(ValueError, match="agreement"):
        synonyms(agreement=0.0)
    with pytest.raises(ValueError, match="target"):
        co_hyponyms(target="leaf")
    with pytest.raises(TypeError, match="resolved"):
        homonym(resolved="yes")
    with pytest.raises(ValueError, match="correlations"):
        bias_sweep_mixture([1.0])
    with pytest.raises(ValueError, match="block_size"):
        context_switch(block_size=0)


def test_estimator_on_the_homonym_matches_the_exact_pid():
    m = ConditionalMixture.from_token_mixture(homonym(separation=6.0))
    x, y, w = m.sample_stratified(jr.key(0), 4)
    scheme = LogSNRScheme.logistic(64, -2.0, 2.0, 5.0, stratified=True)
    est = pid_information(m, x, y, jr.key(1), scheme=scheme, n_noise=4, sample_weights=w)
    ex = exact_pid_information(m, x, y, sample_weights=w)
    tol = pid_tolerances(est, ex, w)
    for meas in ("mmi", "wb_imin"):
        got = decompose(est, meas).terms.as_array() / math.log(2)
        want = discrete_pid(well_separated_joint(m), meas, unit="bits").as_array()
        assert np.max(np.abs(got - want)) <= tol[meas], (meas, got, want, tol[meas])


class _ContextBlind(AbstractConditionalDenoiser):
    """A predictor that never reads the context word (slot 1): the failure case of the homonym."""

    inner: ConditionalMixture

    @property
    def dim(self):
        return self.inner.dim

    @property
    def alphabet_sizes(self):
        return self.inner.alphabet_sizes

    @property
    def token_prior(self):
        return self.inner.token_prior

    def eps(self, log_snr, x, tokens, mask):
        return self.inner.eps(log_snr, x, tokens, mask.at[1].set(False))


def test_a_context_blind_predictor_on_the_resolved_homonym_is_the_unresolved_law():
    """The prediction of the study's blind network (part ``trained_homonym``): a predictor that ignores the
    context word is, under every condition, the unresolved law's (same p(x | y1), same p(x)); on the resolved
    data the engine gives the same estimate for both and their exact PID is [0, 1, 0, 0]."""
    resolved = ConditionalMixture.from_token_mixture(homonym(separation=6.0))
    unresolved = ConditionalMixture.from_token_mixture(homonym(separation=6.0, resolved=False))
    blind = _ContextBlind(resolved)
    x, y, w = resolved.sample_stratified(jr.key(0), 4)
    for lam in (-4.0, 0.0, 3.0):
        for mask in ([True, True], [True, False], [False, True], [False, False]):
            m = jnp.asarray(mask)
            for xi, yi in zip(x[::5], y[::5], strict=True):
                chex.assert_trees_all_close(
                    blind.eps(lam, xi, yi, m), unresolved.eps(lam, xi, yi, m), atol=1e-5
                )
    scheme = LogSNRScheme.logistic(32, -2.0, 2.0, 5.0, stratified=True)
    kw = dict(scheme=scheme, n_noise=2, sample_weights=w)
    est_blind = pid_information(blind, x, y, jr.key(1), **kw)
    est_unres = pid_information(unresolved, x, y, jr.key(1), **kw)
    ex = exact_pid_information(unresolved, x, y, sample_weights=w)
    for meas in ("pointwise_min", "mmi", "wb_imin"):
        a = decompose(est_blind, meas).terms.as_array()
        b = decompose(est_unres, meas).terms.as_array()
        chex.assert_trees_all_close(a, b, atol=1e-4)
        chex.assert_trees_all_close(
            decompose(ex, meas).terms.as_array() / math.log(2), np.array([0, 1, 0, 0.0]), atol=1e-6
        )
