"""Critical windows on any model: the noising-denoising protocol with a classifier, against the exact routes.

Oracle: an exact ``GaussianMixture`` wrapped as an OPAQUE denoiser (a ``CallableScore`` of its x0 prediction,
so no closed form reaches the protocol) and its exact posterior classifier (``MixtureClassifier``). The
protocol's retention and ``[keep, forget]`` must reproduce ``window_curve`` (the reweighting identity, the
route of the critical-windows study) within Monte-Carlo error: every tolerance is 4 standard errors (the
protocol's cluster standard error and the identity route's own standard error, in quadrature).
"""

import dataclasses
import itertools

import chex
import jax
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis import windows as cw
from diffsim.scores.adapters import CallableScore
from diffsim.scores.empirical import EmpiricalScore
from diffsim.scores.guidance import MixtureClassifier


OU = ds.VP.ou()
R, D = 4.0, 2
EPS = 0.05
T_HATS = np.linspace(0.3, 4.3, 11)


def _close(got, want, tol):
    """``|got - want| <= tol`` elementwise (``tol`` an array: a Monte-Carlo tolerance per point)."""
    got, want = np.asarray(got), np.asarray(want)
    assert np.all(np.abs(got - want) <= tol), (got, want, tol)


def _mixture(r=R):
    means = np.stack([r * np.eye(D)[0], -r * np.eye(D)[0]])
    return ds.GaussianMixture([0.5, 0.5], means, 1.0, process=OU)


def _opaque(mix, event_shape=(D,)):
    def fn(x, t):
        flat = x.reshape(x.shape[0], D)
        return jax.vmap(mix.denoise)(t, flat).reshape(x.shape)

    return CallableScore(fn, mix.process, event_shape, parametrisation="x0")


MIX = _mixture()
OPAQUE = _opaque(MIX)
CLASSIFIER = MixtureClassifier(MIX)


@pytest.fixture(scope="module", params=["sde", "ode"])
def oracle(request):
    sampler = request.param
    x0 = MIX.restrict([0]).sample(jr.key(3), 512)[0]
    res = cw.feature_retention(
        OPAQUE,
        x0,
        T_HATS,
        classifier=CLASSIFIER,
        key=jr.key(1),
        n_repeats=16,
        sampler=sampler,
        n_steps=100,
        labels=np.zeros(512, int),
        eps=EPS,
        n_bootstrap=400,
    )
    opts = dict(key=jr.key(5), sampler=sampler, t_out=OU.t_min, n_outer=20_000)
    keep = cw.window_curve(MIX, [0], [0], T_HATS, **opts)
    forget = cw.window_curve(MIX, [0], [0, 1], T_HATS, **opts)
    return sampler, res, keep, forget


def test_retention_matches_identity_route(oracle):
    sampler, res, keep, _ = oracle
    assert isinstance(res, cw.FeatureRetention) and res.sampler == sampler
    tol = 4 * np.hypot(res.retention_stderr, keep.retention_init_stderr) + 1e-3
    _close(res.soft_retention, keep.retention_init, tol)
    _close(res.retention, keep.retention_init, tol)
    # hard labels (argmax) and soft labels agree for a well-separated mixture (boundary mass ~ 1e-4)
    chex.assert_trees_all_close(res.retention, res.soft_retention, atol=5e-3)
    if sampler == "sde":  # a third route: the NumPy quadrature oracle of the critical-windows study
        oracle_r = cw.symmetric_retention_oracle(R, T_HATS)
        _close(res.retention, oracle_r, 4 * res.retention_stderr + 2e-3)
    # the class-level keep TV is the classifier's image of the exact TV: a lower bound (up to MC error)
    assert np.all(res.keep_curve.tv <= keep.tv + 4 * np.hypot(res.retention_stderr, keep.tv_stderr))
    # bootstrap interval vs cluster standard error: width ~ 2 * 1.96 * se
    ok = res.retention_stderr > 1e-3
    width = (res.retention_high - res.retention_low)[ok] / (2 * 1.96 * res.retention_stderr[ok])
    assert np.all(np.abs(width - 1) < 0.3), width


def test_window_matches_identity_route(oracle):
    sampler, res, keep, forget = oracle
    exact = cw.critical_window(keep, forget, EPS)
    got = res.window
    assert got.keep < got.forget
    tol_keep = 4 * np.hypot(got.keep_stderr, exact.keep_stderr)
    tol_forget = 4 * np.hypot(got.forget_stderr, exact.forget_stderr)
    assert abs(got.keep - exact.keep) <= tol_keep, (got, exact)
    assert abs(got.forget - exact.forget) <= tol_forget, (got, exact)
    # the forget TV tends to 0 and the fresh samples split the classes evenly
    assert abs(res.forget_curve.tv[-1]) < 4 * res.forget_curve.tv_stderr[-1] + 0.01
    chex.assert_trees_all_close(res.fresh_frequencies, np.array([0.5, 0.5]), atol=0.03)


# ---------------------------------------------------------------------------------------------------
# feature functions, event shapes, determinism
# ---------------------------------------------------------------------------------------------------
def _sign_feature(batch):
    return np.asarray(batch.reshape(batch.shape[0], -1)[:, 0] > 0).astype(int)


def _small(score, x0, key, **kw):
    return cw.feature_retention(
        score, x0, [0.5, 1.5, 3.0], classifier=_sign_feature, key=key, n_repeats=4, n_steps=20, **kw
    )


SHAPED = _opaque(MIX, event_shape=(1, D))


@pytest.fixture(scope="module")
def small_run():
    x0 = MIX.sample(jr.key(7), 32)[0]
    return x0, _small(SHAPED, x0.reshape(32, 1, D), jr.key(2))


def test_feature_function_event_shape_and_determinism(small_run):
    score = SHAPED
    x0, a = small_run
    b = _small(score, x0, jr.key(2))  # flat (N, d) input: the same run
    for field in ("retention", "per_sample", "membership_score", "retention_low", "fresh_frequencies"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # field by field: a window edge that is not reached is NaN, and NaN != NaN in a dataclass comparison
    for field in ("keep", "forget", "keep_stderr", "forget_stderr", "eps"):
        np.testing.assert_array_equal(getattr(a.window, field), getattr(b.window, field))
    assert np.all(np.isnan(a.soft_retention))  # discrete features: no soft labels
    np.testing.assert_array_equal(a.classes, [0, 1])
    c = _small(score, x0, jr.key(3))
    assert not np.array_equal(a.per_sample, c.per_sample)
    # retention falls with T_hat; per-class retention averages to the pooled one
    assert a.retention[0] > a.retention[-1]
    frac = np.bincount(a.labels, minlength=2) / a.labels.size
    chex.assert_trees_all_close(np.nansum(a.class_retention * frac, axis=1), a.retention, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# membership inference
# ---------------------------------------------------------------------------------------------------
def test_membership_auc_equals_pairwise_count():
    rng = np.random.default_rng(0)
    for n1, n0 in ((1, 1), (7, 5), (40, 63)):
        s1 = rng.integers(0, 6, n1).astype(float)  # many ties
        s0 = rng.integers(0, 6, n0).astype(float)
        brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(s1, s0)])
        assert cw.membership_auc(s1, s0) == pytest.approx(brute, abs=1e-12)
    assert cw.membership_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert cw.membership_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert cw.membership_auc([1.0, 1.0], [1.0]) == 0.5


def test_membership_scores_forget_time(small_run):
    per = np.array([[1.0, 1.0, 0.2], [0.6, 0.2, 0.2], [0.4, 0.1, 0.2]])
    res = dataclasses.replace(small_run[1], t_hats=np.array([1.0, 2.0, 3.0]), per_sample=per)
    # columns are samples: 0 crosses 0.5 halfway between T = 2 and 3, 1 between 1 and 2, 2 at once
    np.testing.assert_allclose(cw.membership_scores(res, kind="forget_time"), [2.5, 1.0 + 0.5 / 0.8, 1.0])
    np.testing.assert_allclose(cw.membership_scores(res), [0.65, 0.375, 0.2])  # trapezoid / (3 - 1)
    with pytest.raises(ValueError, match="kind"):
        cw.membership_scores(res, kind="median")


def _cell(batch):
    """A fine feature: the cell of a 0.2-grid that holds the point (an integer per point)."""
    cells = np.floor(np.asarray(batch).reshape(batch.shape[0], -1) / 0.2).astype(int)
    return cells[:, 0] * 100_000 + cells[:, 1]


def test_membership_detects_a_memorising_model():
    """A memorising model (the exact score of its training set) sends a slightly noised training sample
    back to itself, a held-out sample to its nearest training sample: the fine feature (the grid cell)
    survives renoising for training samples only, so the membership AUC is near 1; the exact mixture score
    (no memorisation) treats both sets alike, AUC 1/2 within error."""
    mix = _mixture(r=1.0)
    n = 32
    x0 = np.asarray(mix.sample(jr.key(11), 2 * n)[0])
    train = x0[:n]
    aucs = {}
    for name, score in (("memorising", EmpiricalScore(train, process=OU)), ("exact", _opaque(mix))):
        res = cw.feature_retention(
            score,
            x0,
            [0.003, 0.01, 0.03, 0.1],
            classifier=_cell,
            key=jr.key(4),
            n_repeats=4,
            n_steps=20,
            n_bootstrap=20,
        )
        s = cw.membership_scores(res)
        aucs[name] = cw.membership_auc(s[:n], s[n:])
    assert aucs["memorising"] > 0.9, aucs
    assert abs(aucs["exact"] - 0.5) < 0.2, aucs  # sd of the AUC under no signal: ~0.07 for 32 + 32


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------
def test_bad_inputs_name_the_argument():
    x0 = np.zeros((4, D))
    ok = dict(classifier=CLASSIFIER, key=jr.key(0))
    with pytest.raises(ValueError, match="classifier"):
        cw.feature_retention(OPAQUE, x0, [1.0], classifier=None, key=jr.key(0))
    with pytest.raises(TypeError, match="classifier"):
        cw.feature_retention(OPAQUE, x0, [1.0], classifier=3, key=jr.key(0))
    for bad in ([11.0], [0.0], [-1.0], [OU.t_min / 2], [1.0, 1.0], []):
        with pytest.raises(ValueError, match="t_hats"):
            cw.feature_retention(OPAQUE, x0, bad, **ok)
    for shape in ((4, 3), (4,), (4, 1, 3), (1, D)):
        with pytest.raises(ValueError, match="x0"):
            cw.feature_retention(OPAQUE, np.zeros(shape), [1.0], **ok)
    with pytest.raises(ValueError, match="n_repeats"):
        cw.feature_retention(OPAQUE, x0, [1.0], n_repeats=0, **ok)
    with pytest.raises(ValueError, match="sampler"):
        cw.feature_retention(OPAQUE, x0, [1.0], sampler="langevin", **ok)
    with pytest.raises(ValueError, match="eps"):
        cw.feature_retention(OPAQUE, x0, [1.0], eps=1.5, **ok)
    with pytest.raises(ValueError, match="labels"):
        cw.feature_retention(OPAQUE, x0, [1.0], labels=np.zeros(3, int), **ok)
    with pytest.raises(ValueError, match="labels"):
        cw.feature_retention(OPAQUE, x0, [1.0], labels=np.full(4, 2), **ok)
    with pytest.raises(ValueError, match="grid"):
        cw.feature_retention(OPAQUE, x0, [1.0], grid=[0.5, 1.0], **ok)
    with pytest.raises(ValueError, match="classifier"):
        cw.feature_retention(OPAQUE, x0, [1.0], classifier=lambda b: np.zeros((3, 2)), key=jr.key(0))
    with pytest.raises(ValueError, match="scores_train"):
        cw.membership_auc([], [1.0])
    with pytest.raises(ValueError, match="scores_heldout"):
        cw.membership_auc([1.0], [np.nan])
