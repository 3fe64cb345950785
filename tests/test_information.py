"""I-MMSE information estimators and PID against exact values.

Independent routes: closed-form Gaussian MMSE and log-density; exact pointwise MIs from the analytic
conditional mixture (log-density differences); exact discrete PIDs of the well-separated limit, checked
against the ``dit`` package; invariances (token swap, irrelevant token, structural zeros)."""

import math

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import information as info
from diffsim.analysis.information import LogSNRScheme
from diffsim.data.synthetic import GATES, block_structured, pid_gate
from diffsim.processes import VP
from diffsim.scores.conditional import ConditionalMixture, TokenNetworkDenoiser
from diffsim.scores.mixture import GaussianMixture
from diffsim.scores.nn import MLPScore


LN2 = math.log(2.0)
GATE_SCHEME = LogSNRScheme.logistic(128, loc=-2.0, scale=2.0, clip=5.0)
CHUNK = 64  # fixed compiled chunk shape shared by the tests


def _zscores(estimates, exact):
    """Replicates (R, N) of an estimator vs exact (N,): z-score of the replicate mean per point."""
    est = np.asarray(estimates)
    se = est.std(axis=0, ddof=1) / math.sqrt(est.shape[0])
    return (est.mean(axis=0) - np.asarray(exact)) / np.maximum(se, 1e-12)


# =====================================================================================================
# log-SNR schemes
# =====================================================================================================
def test_logistic_weights_integrate_over_the_support():
    """Importance weights: sum_l w_l f(l) estimates the integral over [loc - c s, loc + c s]
    (checked for f = 1, whose integral is the support length 2 c s, and a Gaussian bump)."""
    lam, w = info.logsnr_samples(jr.key(0), 200_000, "logistic", loc=1.0, scale=2.0, clip=3.0)
    assert float(lam.min()) >= -5.0 and float(lam.max()) <= 7.0
    chex.assert_trees_all_close(float(jnp.sum(w)), 12.0, rtol=0.01)
    bump = jnp.exp(-0.5 * (lam - 1.5) ** 2)
    exact = math.sqrt(2 * math.pi) * 0.5 * (math.erf(5.5 / math.sqrt(2)) + math.erf(6.5 / math.sqrt(2)))
    chex.assert_trees_all_close(float(jnp.sum(w * bump)), exact, rtol=0.01)
    lam_u, w_u = info.logsnr_samples(jr.key(1), 100_000, "uniform", lo=-3.0, hi=4.0, stratified=True)
    chex.assert_trees_all_close(
        float(jnp.sum(w_u * jnp.sin(lam_u))), math.cos(-3.0) - math.cos(4.0), atol=1e-3
    )


def test_gauss_legendre_and_fixed_rules():
    lam, w = info.logsnr_samples(None, 6, "gauss_legendre", lo=-2.0, hi=3.0)
    chex.assert_trees_all_close(
        float(jnp.sum(w * lam**7)), (3.0**8 - 2.0**8) / 8, rtol=1e-10
    )  # degree <= 11 exact
    fixed = LogSNRScheme.fixed([2.0, -1.0, 0.0])
    _, w_f = fixed.sample(None)
    chex.assert_trees_all_close(
        np.asarray(w_f), np.asarray([1.0, 0.5, 1.5])
    )  # trapezoid on the sorted values
    assert fixed.support == (-1.0, 2.0)


def test_from_spectrum_matches_itd_defaults():
    s = LogSNRScheme.from_spectrum([1.0, 1.0], 8)
    assert (s.loc, s.scale, s.clip) == (0.0, 1.0, 4.0)
    s2 = LogSNRScheme.from_spectrum([math.e**2, 1.0], 8)
    chex.assert_trees_all_close(s2.loc, -1.0)
    chex.assert_trees_all_close(s2.scale, math.sqrt(1 + 3 * 1.0 / math.pi**2))


# =====================================================================================================
# Gaussian data: MMSE curves, zero gap, -log p(x)
# =====================================================================================================
V = np.array([0.3, 1.0, 2.5])
MU = np.array([0.5, -1.0, 0.0])


@pytest.fixture(scope="module")
def gaussian():
    """N(MU, diag V) with an irrelevant binary token: two identical components labelled 0 and 1."""
    return ConditionalMixture(GaussianMixture([0.5, 0.5], [MU, MU], [V, V]), np.array([[0], [1]]), (2,))


@pytest.fixture(scope="module")
def gaussian_points():
    return jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)) * np.sqrt(V) + MU)


def test_gaussian_mmse_gap_is_zero_and_mmse_matches_closed_form(gaussian, gaussian_points):
    """(1) Conditioning on a token the data do not depend on changes no denoiser: the MMSE gap (standard and
    orthogonal integrands) vanishes at every log-SNR, per point and per coordinate. (2)
    E_eps |eps - eps_hat|^2 at fixed x is sum_i [a^4 v_i^2 + a^2 b^2 (x_i - mu_i)^2] / c_i^2 with
    c_i = a^2 v_i + b^2 (closed form); (3) its average over x ~ p is ITD's base curve
    sum_i sigmoid(l + log v_i)."""
    scheme = LogSNRScheme.gauss_legendre(16, -8.0, 8.0)
    x = gaussian_points
    tok = jnp.zeros((6, 2, 1), jnp.int32)
    masks = jnp.asarray([[False], [True]])
    cur = info.mmse_curves(
        gaussian,
        x,
        tok,
        masks,
        jr.key(0),
        scheme=scheme,
        n_noise=3000,
        pairs=((0, 1),),
        coordinate_curves=True,
    )
    chex.assert_shape(cur.mmse, (6, 2, 16))
    chex.assert_trees_all_close(cur.standard_integrand(0, 1), np.zeros((6, 16)), atol=1e-12)
    chex.assert_trees_all_close(cur.orthogonal_integrand(0, 1), np.zeros((6, 16)), atol=1e-12)
    chex.assert_trees_all_close(cur.mmse_curve_coords[:, 0], cur.mmse_curve_coords[:, 1], atol=1e-12)
    lams = np.asarray(cur.log_snr[0])
    a2, b2 = 1 / (1 + np.exp(-lams)), 1 / (1 + np.exp(lams))
    c = a2[:, None] * V + b2[:, None]  # (L, d)
    dx2 = (np.asarray(x) - MU) ** 2  # (N, d)
    var = (a2[:, None] ** 2 * V**2 / c**2)[None]  # per-coordinate error eps_j - eps_hat_j ~ N(m_j, var_j)
    mean2 = a2[None, :, None] * b2[None, :, None] * dx2[:, None, :] / c[None] ** 2  # m_j^2
    closed = var + mean2
    se = np.sqrt((2 * var**2 + 4 * mean2 * var).sum(-1) / 3000)  # Monte-Carlo SE of the mean of |e|^2
    z = (cur.mmse[:, 0] - closed.sum(-1)) / se
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    avg = ((a2[:, None] ** 2 * V**2) + a2[:, None] * b2[:, None] * V) / c**2
    chex.assert_trees_all_close(avg.sum(-1), info.gaussian_mmse(lams, V).sum(-1), rtol=1e-12)


@pytest.mark.slow
def test_itd_neg_log_likelihood_matches_exact_density(gaussian, gaussian_points):
    """-log p(x) = h_G + 1/2 int (mmse - mmse_G) matches the exact log-density within Monte-Carlo error
    (16 independent replicates per point, |z| < 4), with an unmatched (v = 1) and a matched base."""
    reps = 16
    x = jnp.tile(gaussian_points, (reps, 1))  # point i uses fold_in(key, i): replicates are independent
    exact = -np.asarray(
        jax.vmap(lambda xi: gaussian.data_log_prob(xi, jnp.asarray([0]), jnp.asarray([False])))(
            gaussian_points
        )
    )
    scheme = LogSNRScheme.logistic(128, loc=0.0, scale=2.0, clip=8.0)
    for base in (1.0, V):
        nll = info.neg_log_likelihood(
            gaussian, x, jr.key(0), scheme=scheme, n_noise=16, base_variances=base, chunk_size=CHUNK
        )
        est = np.asarray(nll.nll).reshape(reps, 6)
        z = _zscores(est, exact)
        assert np.all(np.abs(z) < 4.0), z
        assert np.all(np.abs(est.mean(0) - exact) < 0.1)
        chex.assert_trees_all_close(nll.nll_coords.sum(-1), nll.nll)


# =====================================================================================================
# pointwise MI: standard per sample, orthogonal on average, chain rule
# =====================================================================================================
@pytest.fixture(scope="module")
def copy_gate():
    """2-D, 4 components indexed by (y1, y2), uniform tokens, well separated (reference notes 4.2)."""
    return ConditionalMixture.from_token_mixture(pid_gate("COPY", separation=6.0, std=0.5))


def test_standard_estimator_matches_exact_pmi_per_sample(copy_gate):
    """Well-separated 4-component case: i(x; y1) = i(x; y2) = log 2 and i(x; y1, y2) = log 4 exactly; the
    standard estimator recovers each sample's exact value (replicates, |z| < 4)."""
    x, y, _ = copy_gate.sample_stratified(jr.key(0), 2)  # 8 points, 2 per component
    exact = info.exact_pid_information(copy_gate, x, y).pointwise
    chex.assert_trees_all_close(exact, np.tile([LN2, LN2, 2 * LN2], (8, 1)), atol=1e-6)
    reps = 8
    est = info.pid_information(
        copy_gate,
        jnp.tile(x, (reps, 1)),
        jnp.tile(y, (reps, 1)),
        jr.key(1),
        scheme=GATE_SCHEME,
        n_noise=16,
        specific=False,
        chunk_size=CHUNK,
    )
    for k in range(3):
        z = _zscores(est.pointwise[:, k].reshape(reps, 8), exact[:, k])
        assert np.all(np.abs(z) < 4.0), (k, z)
    assert np.abs(est.pointwise.mean(0) - exact.mean(0)).max() < 0.05


@pytest.fixture(scope="module")
def overlapping_gate():
    """AND gate with overlapping components (separation 2, std 0.8): pointwise MIs are graded."""
    return ConditionalMixture.from_token_mixture(pid_gate("AND", separation=2.0, std=0.8))


@pytest.mark.slow
def test_orthogonal_estimator_matches_on_average_not_per_sample(overlapping_gate):
    """E_{x ~ p(x|y)} i^o(x; y) = E_{x ~ p(x|y)} i(x; y) (orthogonality principle), although per sample the
    two differ; checked for every value of the conditioning tokens (y1 for i(x; y1), y2 for i(x; y2), the
    pair for i(x; y1, y2)) with 64 draws per component, against exact pointwise MIs. Within one component
    (a finer stratum than the conditioning value) the averages do NOT agree: the identity needs p(x | y)."""
    m = overlapping_gate
    x, y, _ = m.sample_stratified(jr.key(4), 64)
    exact = info.exact_pid_information(m, x, y).pointwise
    est = info.pid_information(
        m, x, y, jr.key(5), scheme=GATE_SCHEME, n_noise=8, specific=False, chunk_size=CHUNK
    )
    o = est.orthogonal
    yn = np.asarray(y)
    strata = [yn[:, 0], yn[:, 1], 2 * yn[:, 0] + yn[:, 1]]
    for k in range(3):
        for value in np.unique(strata[k]):
            sel = strata[k] == value
            diff = o[sel, k] - exact[sel, k]
            se = diff.std(ddof=1) / math.sqrt(sel.sum())
            assert abs(diff.mean()) < 4 * se + 0.01, (k, value, diff.mean(), se)
    comp = 2 * yn[:, 0] + yn[:, 1]
    finer = o[comp == 2, 0] - exact[comp == 2, 0]  # y1 = 1 split by y2: a stratum finer than y1
    assert abs(finer.mean()) > 4 * finer.std(ddof=1) / 8
    # per sample the orthogonal estimate is not the pointwise MI (it is >= 0 while i can be negative)
    assert np.all(o >= 0) and np.any(exact < -0.1)
    assert np.sqrt(np.mean((o - exact) ** 2)) > 0.1


def test_chain_rule(overlapping_gate):
    """i(x; y1, y2) = i(x; y1) + i(x; y2 | y1): exactly for the exact values; to rounding for the standard
    estimator with common random numbers (separate calls, same key: same log-SNRs and noise); and within
    Monte-Carlo error of the exact value."""
    m = overlapping_gate
    x, y = m.sample(jr.key(6), 16)
    ex = {
        k: info.exact_pointwise_information(m, x, y, about=a, given=g)
        for k, (a, g) in {"12": ((0, 1), ()), "1": ((0,), ()), "2|1": ((1,), (0,))}.items()
    }
    chex.assert_trees_all_close(ex["12"], ex["1"] + ex["2|1"], atol=1e-10)
    est = {
        k: info.pointwise_information(
            m, x, y, jr.key(7), about=a, given=g, scheme=GATE_SCHEME, n_noise=8, chunk_size=CHUNK
        )
        for k, (a, g) in {"12": ((0, 1), ()), "1": ((0,), ()), "2|1": ((1,), (0,))}.items()
    }
    chex.assert_trees_all_close(est["12"].standard, est["1"].standard + est["2|1"].standard, atol=1e-9)
    chex.assert_trees_all_close(
        est["12"].standard_coords, est["1"].standard_coords + est["2|1"].standard_coords, atol=1e-9
    )
    for k, exact in ex.items():
        assert np.sqrt(np.mean((est[k].standard - exact) ** 2)) < 0.3, k


# =====================================================================================================
# PID on the gates: engine vs exact discrete vs dit
# =====================================================================================================
def _dit_pid(joint, measure):
    dit = pytest.importorskip("dit")
    from dit.pid import PID_MMI, PID_WB

    cls = {"wb_imin": PID_WB, "mmi": PID_MMI}[measure]
    outcomes, probs = [], []
    for idx in np.ndindex(*joint.shape):
        if joint[idx] > 0:
            outcomes.append(tuple(int(i) for i in idx))
            probs.append(float(joint[idx]))
    d = dit.Distribution(outcomes, probs)
    p = cls(d, [[0], [1]], [2])
    keys = [((0,), (1,)), ((0,),), ((1,),), ((0, 1),)]
    return np.array([float(p.get_pi(k)) for k in keys])


def test_discrete_pid_matches_dit_on_random_tables():
    rng = np.random.default_rng(0)
    for shape in [(2, 2, 2), (2, 3, 3), (3, 2, 4)]:
        joint = rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
        for measure in ("wb_imin", "mmi"):
            ours = info.discrete_pid(joint, measure, unit="bits").as_array()
            chex.assert_trees_all_close(ours, _dit_pid(joint, measure), atol=1e-9)


def test_discrete_pointwise_min_known_values():
    """AND gate (uniform inputs): pointwise-min R = E min(i1, i2) = (log2(4/3)*1 + (-log2(3/2))*2 + 1) / 4
    = 0.0613 bits, MMI R = I(G; Y1) = h(1/4) - 1/2 = 0.3113 bits (reference notes 4.4)."""
    m = ConditionalMixture.from_token_mixture(pid_gate("AND"))
    joint = info.well_separated_joint(m)
    r_pm = (math.log2(4 / 3) - 2 * math.log2(3 / 2) + 1) / 4
    chex.assert_trees_all_close(
        info.discrete_pid(joint, "pointwise_min", unit="bits").redundancy, r_pm, atol=1e-12
    )
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    chex.assert_trees_all_close(info.discrete_pid(joint, "mmi", unit="bits").redundancy, h - 0.5, atol=1e-12)
    assert abs(r_pm - 0.0613) < 1e-4 and abs(h - 0.5 - 0.3113) < 1e-4


@pytest.fixture(scope="module")
def gate_results():
    """Engine (standard estimator) and exact PIDs for the five well-separated gates (bits)."""
    out = {}
    scheme = LogSNRScheme.logistic(256, loc=-2.0, scale=2.0, clip=5.0)
    for g in GATES:
        m = ConditionalMixture.from_token_mixture(pid_gate(g)).padded(4)  # RDN has 2 components: share shapes
        x, y, w = m.sample_stratified(jr.key(10), 16)
        est = info.pid(
            m,
            x,
            y,
            jr.key(11),
            measure=info.PID_MEASURES,
            scheme=scheme,
            n_noise=16,
            sample_weights=w,
            chunk_size=CHUNK,
        )
        exact = info.pid(m, x, y, None, measure=info.PID_MEASURES, estimator="exact", sample_weights=w)
        out[g] = (m, est, exact)
    return out


@pytest.mark.parametrize("gate", GATES)
def test_gate_pid_reproduces_exact_and_dit(gate, gate_results):
    m, est, exact = gate_results[gate]
    joint = info.well_separated_joint(m)
    for measure in info.PID_MEASURES:
        disc = info.discrete_pid(joint, measure, unit="bits").as_array()
        chex.assert_trees_all_close(exact[measure].terms.to_bits().as_array(), disc, atol=1e-6)
        tol = 0.03 if measure == "wb_imin" else 0.08
        got = est[measure].terms.to_bits().as_array()
        assert np.abs(got - disc).max() < tol, (measure, got, disc)
        if measure != "pointwise_min":
            chex.assert_trees_all_close(disc, _dit_pid(joint, measure), atol=1e-9)


def test_swapping_tokens_swaps_unique_terms(gate_results):
    """UNQ gate (g = y1) with its token columns swapped (g = y2): U1 and U2 trade places; and the same
    model with sources=(1, 0) gives exactly swapped terms (common random numbers)."""
    m, est, _ = gate_results["UNQ"]
    swapped = ConditionalMixture(
        GaussianMixture(m.weights, m.means, m.eigvals), np.asarray(m.component_tokens)[:, ::-1], (2, 2)
    )
    x, y, w = m.sample_stratified(jr.key(10), 16)
    scheme = LogSNRScheme.logistic(256, loc=-2.0, scale=2.0, clip=5.0)
    bs = info.pid(
        swapped,
        x,
        y[:, ::-1],
        jr.key(11),
        measure=info.PID_MEASURES,
        scheme=scheme,
        n_noise=16,
        sample_weights=w,
        chunk_size=CHUNK,
    )
    cs = info.pid(
        m,
        x,
        y,
        jr.key(11),
        measure=info.PID_MEASURES,
        sources=(1, 0),
        scheme=scheme,
        n_noise=16,
        sample_weights=w,
        chunk_size=CHUNK,
    )
    for measure in info.PID_MEASURES:
        a = est[measure].terms.to_bits()
        assert a.unique1 > 0.9 and abs(a.unique2) < 0.05
        b = bs[measure].terms.to_bits()
        chex.assert_trees_all_close(
            (b.unique1, b.unique2, b.redundancy, b.synergy),
            (a.unique2, a.unique1, a.redundancy, a.synergy),
            atol=1e-9,
        )
        c = cs[measure].terms
        chex.assert_trees_all_close(
            (c.unique1, c.unique2), (est[measure].terms.unique2, est[measure].terms.unique1), atol=1e-9
        )


def _with_irrelevant_token(m):
    """Duplicate every component with a third token y3 in {0, 1} (weights halved, same law)."""
    k = m.n_components
    tok = np.asarray(m.component_tokens)
    tok3 = np.concatenate([np.c_[tok, np.zeros(k, int)], np.c_[tok, np.ones(k, int)]])
    w = np.concatenate([np.asarray(m.weights)] * 2) / 2
    mix = GaussianMixture(
        w, np.concatenate([np.asarray(m.means)] * 2), np.concatenate([np.asarray(m.eigvals)] * 2)
    )
    return ConditionalMixture(mix, tok3, (2, 2, 2))


def test_independent_irrelevant_token_changes_nothing(gate_results):
    """An extra token independent of everything leaves every PID term unchanged, both as a bystander and
    as the context of a conditional PID (same estimator draws: equal to rounding)."""
    m, est, _ = gate_results["AND"]
    m3 = _with_irrelevant_token(m)
    x, y, w = m.sample_stratified(jr.key(10), 16)
    y3 = jnp.c_[y, (jnp.arange(y.shape[0]) % 2).astype(y.dtype)]
    scheme = LogSNRScheme.logistic(256, loc=-2.0, scale=2.0, clip=5.0)
    for context in ((), (2,)):
        got = info.pid(
            m3,
            x,
            y3,
            jr.key(11),
            measure=info.PID_MEASURES,
            context=context,
            scheme=scheme,
            n_noise=16,
            sample_weights=w,
            chunk_size=CHUNK,
        )
        for measure in info.PID_MEASURES:
            chex.assert_trees_all_close(
                got[measure].terms.as_array(), est[measure].terms.as_array(), atol=1e-8
            )
    exact3 = info.pid(m3, x, y3, None, measure="wb_imin", estimator="exact", context=(2,), sample_weights=w)[
        "wb_imin"
    ]
    chex.assert_trees_all_close(
        exact3.terms.as_array(), gate_results["AND"][2]["wb_imin"].terms.as_array(), atol=1e-10
    )


def test_pid_returns_a_dict_and_select_keeps_the_terms(copy_gate):
    """pid() returns {measure: PIDResult} for one measure and for several; selecting every sample (with the
    same weights) leaves the terms unchanged, selecting half the samples averages over those only."""
    m = copy_gate
    x, y, w = m.sample_stratified(jr.key(4), 4)
    one = info.pid(m, x, y, None, measure="mmi", estimator="exact", sample_weights=w)
    both = info.pid(m, x, y, None, measure=("mmi", "wb_imin"), estimator="exact", sample_weights=w)
    assert list(one) == ["mmi"] and list(both) == ["mmi", "wb_imin"]
    assert all(isinstance(r, info.PIDResult) for r in (*one.values(), *both.values()))
    chex.assert_trees_all_close(one["mmi"].terms.as_array(), both["mmi"].terms.as_array(), atol=0)
    ex = info.exact_pid_information(m, x, y, sample_weights=w)
    n = x.shape[0]
    for measure in ("pointwise_min", "wb_imin"):
        full = info.decompose(ex.select(slice(0, n)), measure).terms
        chex.assert_trees_all_close(full.as_array(), info.decompose(ex, measure).terms.as_array(), atol=1e-12)
        half = info.decompose(ex.select(np.arange(0, n, 2)), measure).terms
        want = info.pid_terms(*(ex.specific if measure == "wb_imin" else ex.pointwise)[::2].T, measure)
        chex.assert_trees_all_close(half.as_array(), want.as_array(), atol=1e-12)


def test_conditional_pid_context_that_copies_a_source():
    """CPID: with context c = y1 (and y2 = y1, RDN), given c neither token tells anything more: every
    conditional term vanishes, while the unconditional redundancy is 1 bit."""
    base = ConditionalMixture.from_token_mixture(pid_gate("RDN"))
    tok = np.asarray(base.component_tokens)
    m = ConditionalMixture(
        GaussianMixture(base.weights, base.means, base.eigvals), np.c_[tok, tok[:, 0]], (2, 2, 2)
    )
    x, y, w = m.sample_stratified(jr.key(2), 16)
    for measure in info.PID_MEASURES:
        cond = info.pid(m, x, y, None, measure=measure, estimator="exact", context=(2,), sample_weights=w)[
            measure
        ]
        chex.assert_trees_all_close(cond.terms.as_array(), np.zeros(4), atol=1e-10)
        unc = info.pid(m, x, y, None, measure=measure, estimator="exact", sample_weights=w)[measure]
        chex.assert_trees_all_close(unc.terms.to_bits().redundancy, 1.0, atol=1e-6)
    est = info.pid(
        m.padded(8),
        x,
        y,
        jr.key(3),
        measure=info.PID_MEASURES,
        context=(2,),
        scheme=LogSNRScheme.logistic(256, loc=-2.0, scale=2.0, clip=5.0),
        n_noise=4,
        sample_weights=w,
        chunk_size=CHUNK,
    )
    for measure in info.PID_MEASURES:  # identical conditions given c: every term is exactly zero
        chex.assert_trees_all_close(est[measure].terms.as_array(), np.zeros(4), atol=1e-10)
    chex.assert_trees_all_close(est["pointwise_min"].maps.redundancy, np.zeros(2), atol=1e-10)


# =====================================================================================================
# pixel maps: structural zeros
# =====================================================================================================
def test_blocks_independent_of_a_token_get_zero_pixel_information():
    """Blocks (y1, y2, none), independent tokens: E[eps_B | x, y1] = E[eps_B | x] on every block B that
    does not depend on y1, so the analytic model's per-pixel i^o_j(x; y1) is exactly zero there (and
    the same for y2); with an xor block coupling the tokens the 'none' block stays exactly zero."""
    tm = block_structured(("y1", "y2", "none", "none"), block_size=2, separation=3.0, std=0.6)
    m = ConditionalMixture.from_token_mixture(tm)
    x, y = m.sample(jr.key(0), 12)
    res = info.decompose(
        info.pid_information(
            m, x, y, jr.key(1), scheme=GATE_SCHEME, n_noise=2, specific=False, chunk_size=CHUNK
        ),
        "pointwise_min",
    )
    masks = {k.split(":")[1]: v for k, v in tm.support.items()}  # (the two 'none' blocks share a key)
    masks["y1"], masks["y2"] = tm.support["0:y1"], tm.support["1:y2"]
    pi = info.pid_information(
        m, x, y, jr.key(1), scheme=GATE_SCHEME, n_noise=2, specific=False, chunk_size=CHUNK
    )
    o1, o2 = pi.orthogonal_coords[:, 0], pi.orthogonal_coords[:, 1]
    assert np.abs(o1[:, ~masks["y1"]]).max() < 1e-12 and o1[:, masks["y1"]].mean() > 0.05
    assert np.abs(o2[:, ~masks["y2"]]).max() < 1e-12 and o2[:, masks["y2"]].mean() > 0.05
    assert np.abs(pi.pointwise_coords[:, 0][:, ~masks["y1"]]).max() < 1e-12  # the standard map too
    assert np.abs(res.maps.redundancy).max() < 1e-12  # no pixel carries both tokens
    chex.assert_trees_all_close(
        res.maps.unique1 + res.maps.unique2, pi.orthogonal_coords[:, 2].mean(0), atol=1e-12
    )

    tm_x = block_structured(("y1", "y2", "xor", "none"), block_size=2, separation=3.0, std=0.6)
    mx = ConditionalMixture.from_token_mixture(tm_x)
    xx, yx = mx.sample(jr.key(2), 12)
    px = info.pid_information(
        mx, xx, yx, jr.key(3), scheme=GATE_SCHEME, n_noise=2, specific=False, chunk_size=CHUNK
    )
    none = tm_x.support["3:none"]
    assert np.abs(px.orthogonal_coords[:, :, none]).max() < 1e-12
    assert px.orthogonal_coords[:, 0, tm_x.support["1:y2"]].max() > 1e-4  # coupling: y1 informs the y2 block


def test_pixel_map_sums_channels():
    v = np.arange(2 * 2 * 3 * 2, dtype=float).reshape(2, 12)
    out = info.pixel_map(v, (2, 3, 2))
    chex.assert_trees_all_close(out, v.reshape(2, 2, 3, 2).sum(1))
    with pytest.raises(ValueError, match="image_shape"):
        info.pixel_map(v, (5, 5))


# =====================================================================================================
# network adapter plumbing and bad input
# =====================================================================================================
def test_network_adapter_runs_pid(key):
    net = MLPScore(2, key=key, alphabet_sizes=(2, 2), width=16, depth=1, process=VP.linear())
    model = TokenNetworkDenoiser(net, np.full((2, 2), 0.25))
    x = jr.normal(jr.key(1), (4, 2))
    y = jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]])
    lo, hi = model.log_snr_range
    res = info.pid(
        model,
        x,
        y,
        jr.key(2),
        measure=info.PID_MEASURES,
        scheme=LogSNRScheme.uniform(8, max(lo, -8.0), min(hi, 8.0)),
        n_noise=2,
    )
    for r in res.values():
        chex.assert_tree_all_finite(r.terms.as_array())
    with pytest.raises(ValueError, match="token prior"):
        info.pid(TokenNetworkDenoiser(net), x, y, jr.key(2), measure="wb_imin", scheme=GATE_SCHEME)


def test_bad_input_errors(copy_gate):
    m = copy_gate
    x, y = m.sample(jr.key(0), 4)
    with pytest.raises(ValueError, match="Unknown PID measure"):
        info.pid(m, x, y, jr.key(0), measure="broja", scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="Unknown PID measure"):
        info.pid_terms(1.0, 1.0, 2.0, "min")
    with pytest.raises(ValueError, match="Unknown PID measure"):
        info.discrete_pid(np.full((2, 2, 2), 1 / 8), "ccs")
    with pytest.raises(ValueError, match="alphabet"):  # token value outside the model's alphabet
        info.pid(m, x, y.at[0, 1].set(5), jr.key(0), measure="mmi", scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="token slot"):  # wrong number of token slots
        info.pid(m, x, jnp.c_[y, y], jr.key(0), measure="mmi", scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="out of range"):
        info.pointwise_information(m, x, y, jr.key(0), about=(2,), scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="n_noise"):
        info.pid(m, x, y, jr.key(0), measure="mmi", scheme=GATE_SCHEME, n_noise=0)
    with pytest.raises(ValueError, match="`n`"):
        LogSNRScheme.logistic(0)
    with pytest.raises(ValueError, match="`n`"):
        info.logsnr_samples(jr.key(0), -3)
    with pytest.raises(ValueError, match="chunk_size"):
        info.pid(m, x, y, jr.key(0), measure="mmi", scheme=GATE_SCHEME, chunk_size=0)
    with pytest.raises(ValueError, match="n_per_component"):
        m.sample_stratified(jr.key(0), 0)
    with pytest.raises(ValueError, match="Unknown log-SNR scheme"):
        info.logsnr_samples(jr.key(0), 8, "cosine")
    with pytest.raises(ValueError, match="scale"):
        LogSNRScheme.logistic(8, scale=-1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        LogSNRScheme.uniform(8, 2.0, 1.0)
    with pytest.raises(ValueError, match="exactly two"):
        info.pid(m, x, y, jr.key(0), measure="mmi", sources=(0,), scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="disjoint"):
        info.pid(m, x, y, jr.key(0), measure="mmi", context=(0,), scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        info.pid(m, jnp.zeros((4, 3)), y, jr.key(0), measure="mmi", scheme=GATE_SCHEME)
    with pytest.raises(ValueError, match="Unknown `estimator`"):
        info.pid(m, x, y, jr.key(0), measure="mmi", estimator="fast", scheme=GATE_SCHEME)
    with pytest.raises(TypeError, match="LogSNRScheme"):
        info.pid(m, x, y, jr.key(0), measure="mmi", scheme="logistic")
    with pytest.raises(ValueError, match="sample_weights"):
        info.pid(m, x, y, jr.key(0), measure="mmi", scheme=GATE_SCHEME, sample_weights=-np.ones(4))
    with pytest.raises(ValueError, match="probability table"):
        info.discrete_pid(np.full((2, 2, 2), 0.2), "mmi")


def test_dit_helper():
    """The dit helper agrees with the exact discrete PID on AND (the study's config checks are CLI tests in
    tests/test_runner.py)."""
    pytest.importorskip("dit")
    joint = info.well_separated_joint(ConditionalMixture.from_token_mixture(pid_gate("AND")))
    vals = info.dit_pid_values(joint)
    for measure in ("wb_imin", "mmi"):
        chex.assert_trees_all_close(
            np.asarray(vals[measure]), info.discrete_pid(joint, measure, unit="bits").as_array(), atol=1e-9
        )
    chex.assert_trees_all_close(np.asarray(vals["broja"]), np.asarray([0.3113, 0.0, 0.0, 0.5]), atol=1e-3)


def test_pid_terms_views_follow_the_declared_fields():
    terms = info.PIDTerms(1.0, 2.0, 3.0, 4.0)
    assert terms.as_tuple() == (1.0, 2.0, 3.0, 4.0)
    assert terms.as_dict() == {"redundancy": 1.0, "unique1": 2.0, "unique2": 3.0, "synergy": 4.0}
    np.testing.assert_array_equal(terms.as_array(), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(terms.to_bits().as_array() * math.log(2.0), terms.as_array(), rtol=1e-15)
