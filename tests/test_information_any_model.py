"""Information on any conditional model (condition variants): oracle agreement with the exact PID gate
values of the ``information`` study, with the exact conditional denoisers wrapped as OPAQUE x0-callables."""

from __future__ import annotations

import math

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis.information import (
    ConditionVariants,
    LogSNRScheme,
    decompose,
    discrete_pid,
    exact_pid_information,
    exact_pointwise_information,
    pid_information,
    pid_tolerances,
    pixel_pid,
    variant_curves,
    variant_information,
    variant_pid,
    variant_pid_information,
    well_separated_joint,
)
from diffsim.data.synthetic import GATES, pid_gate
from diffsim.processes import VP
from diffsim.scores import GaussianMixture
from diffsim.scores.adapters import CallableScore
from diffsim.scores.conditional import ConditionalMixture


LN2 = math.log(2.0)
# the information study's gate setting (quick preset): separation 6, std 0.5, 8 samples per component,
# 128 stratified truncated-logistic log-SNRs (loc -2, scale 2, clip 5), 8 noise draws, 4 SE tolerances
N_LOGSNR, N_NOISE, PER_COMPONENT = 128, 8, 8
SCHEME = LogSNRScheme.logistic(N_LOGSNR, -2.0, 2.0, 5.0, stratified=True)
PROCESS = VP.ou(t_min=1e-5, t_max=12.0)  # log-SNR range [-24, 10.8] covers the scheme's [-12, 8]
SUBSETS = ([], [0], [1], [0, 1])  # c, c + y1, c + y2, c + y1 + y2 (c empty: plain PID)
CALLS: list[int] = []


class OpaqueDenoiser(eqx.Module):
    """A batched x0-predictor ``fn(x (B, d), t (B,), cond)`` built on an exact conditional mixture (the
    estimators only see its outputs); ``cond = {"tokens": (n,), "mask": (n,)}`` selects the condition."""

    mixture: ConditionalMixture
    count: bool = eqx.field(static=True, default=False)

    def __call__(self, x, t, cond):
        if self.count:
            jax.debug.callback(lambda b: CALLS.append(int(b)), x.shape[0])
        lam = PROCESS.log_snr(t)
        eps = jax.vmap(self.mixture.eps)(lam, x, cond["tokens"], cond["mask"])
        a, s = PROCESS.alpha(t)[:, None], PROCESS.sigma(t)[:, None]
        return (x - s * eps) / a


def _conds(tokens):
    out = []
    for sub in SUBSETS:
        mask = np.zeros(len(tokens), bool)
        mask[sub] = True
        out.append({"tokens": jnp.asarray(tokens, jnp.int32), "mask": jnp.asarray(mask)})
    return out


def _scores(mixture, tokens, count=False):
    fn = OpaqueDenoiser(mixture, count)
    return [
        CallableScore(fn, PROCESS, (mixture.dim,), parametrisation="x0", cond=c, check=False)
        for c in _conds(tokens)
    ]


def grouped_variants(mixture, y, *, batch="auto", count=False):
    """One ConditionVariants per token pair present in ``y`` and each point's group."""
    y = np.asarray(y)
    combos = sorted({tuple(r) for r in y.tolist()})
    variants = [ConditionVariants.from_scores(_scores(mixture, c, count), batch=batch) for c in combos]
    return variants, np.asarray([combos.index(tuple(r)) for r in y.tolist()])


def gate_model(g):
    return ConditionalMixture.from_token_mixture(pid_gate(g, separation=6.0, std=0.5)).padded(4)


@pytest.fixture(scope="module")
def and_gate():
    m = gate_model("AND")
    x, y, w = m.sample_stratified(jr.key(0), PER_COMPONENT)
    return m, np.asarray(x), np.asarray(y), np.asarray(w)


@pytest.mark.parametrize("gate", GATES)
def test_gate_pid_reproduces_study_values(gate):
    """PID from opaque condition variants = the exact PID of the gate (the study's check) within the
    Monte-Carlo tolerance of the study (4 SE of the per-sample noise + the bias bound of a min), and equals
    the token-network estimator draw for draw (same log-SNRs and noise)."""
    m = gate_model(gate)
    i = GATES.index(gate)
    part_key = jr.fold_in(jr.key(0), 1)  # the study's keys (seed 0, part 1): the same samples and draws
    x, y, w = m.sample_stratified(jr.fold_in(part_key, 2 * i), PER_COMPONENT)
    key = jr.fold_in(part_key, 2 * i + 1)
    variants, groups = grouped_variants(m, y)
    assert all(v.batched for v in variants)
    info = variant_pid_information(
        variants, x, key, scheme=SCHEME, n_noise=N_NOISE, sample_weights=w, groups=groups
    )
    ref = pid_information(m, x, y, key, scheme=SCHEME, n_noise=N_NOISE, sample_weights=w, specific=False)
    chex.assert_trees_all_close(info.pointwise, ref.pointwise, atol=1e-9)
    chex.assert_trees_all_close(info.orthogonal_coords, ref.orthogonal_coords, atol=1e-9)
    exact = exact_pid_information(m, x, y, sample_weights=w)
    patched = eqx.tree_at(lambda v: v.specific, info, exact.specific, is_leaf=lambda v: v is None)
    tol = pid_tolerances(patched, exact, w, n_se=4.0, floor_bits=0.005)
    joint = well_separated_joint(m)
    for measure in ("pointwise_min", "mmi"):
        est = decompose(info, measure).terms.as_array() / LN2
        truth = discrete_pid(joint, measure, unit="bits").as_array()
        print(gate, measure, np.round(est, 4), truth, "tol", round(tol[measure], 4))
        assert np.max(np.abs(est - truth)) <= tol[measure], (gate, measure, est, truth, tol[measure])
        # the exact continuous PID of these samples is the discrete one (well separated)
        chex.assert_trees_all_close(decompose(exact, measure).terms.as_array() / LN2, truth, atol=1e-4)


def test_batched_path_calls_model_once_per_noise_draw_and_equals_per_score_path(and_gate):
    m, x, y, w = and_gate
    sel = np.flatnonzero((y[:, 0] == 1) & (y[:, 1] == 1))[:4]  # one prompt: y = (1, 1)
    xs = x[sel]
    scheme = LogSNRScheme.logistic(16, -2.0, 2.0, 5.0)
    out = {}
    for batch in ("always", "never"):
        v = ConditionVariants.from_scores(_scores(m, (1, 1), count=True), batch=batch)
        assert v.batched == (batch == "always")
        CALLS.clear()
        out[batch] = variant_curves(v, xs, jr.key(3), scheme=scheme, n_noise=3, pairs=((0, 3),))
        out[batch + "_calls"] = list(CALLS)
    # batched: ONE call per noise draw serving 4 points x 16 log-SNRs x 4 variants; per score: 4 x 3 calls
    assert out["always_calls"] == [4 * 16 * 4] * 3
    assert out["never_calls"] == [4 * 16] * (4 * 3)
    for f in ("mmse", "mmse_coords", "orth", "orth_coords", "log_snr", "weight"):
        chex.assert_trees_all_close(getattr(out["always"], f), getattr(out["never"], f), atol=1e-12)


def test_general_scores_fall_back_to_per_score_calls(and_gate):
    """Scores that are not CallableScores (here exact GaussianMixtures of each condition) still work and
    give the exact conditional informations' estimator."""
    m, x, y, w = and_gate
    comp = np.asarray(m.component_tokens)
    scores = []
    for sub in SUBSETS:  # p(x | y_S) for y = (1, 1)
        keep = np.all((comp == 1) | ~np.isin(np.arange(2), sub)[None, :], axis=1) & (
            np.asarray(m.weights) > 0
        )
        wk = np.asarray(m.weights)[keep]
        scores.append(
            GaussianMixture(
                wk / wk.sum(), np.asarray(m.means)[keep], np.asarray(m.eigvals)[keep], process=PROCESS
            )
        )
    v = ConditionVariants.from_scores(scores)
    assert not v.batched
    sel = np.flatnonzero((y[:, 0] == 1) & (y[:, 1] == 1))[:4]
    key, scheme = jr.key(4), LogSNRScheme.logistic(16, -2.0, 2.0, 5.0)
    a = variant_information(v, x[sel], key, scheme=scheme, about=3)
    b = variant_information(
        ConditionVariants.from_scores(_scores(m, (1, 1))), x[sel], key, scheme=scheme, about=3
    )
    chex.assert_trees_all_close(a.standard, b.standard, atol=1e-8)
    chex.assert_trees_all_close(a.orthogonal_coords, b.orthogonal_coords, atol=1e-8)


def _se(v, w):
    """Standard error of a weighted mean of independent per-sample values."""
    return math.sqrt(float(np.sum((w * (v - np.sum(w * v))) ** 2)))


def test_mi_matches_exact_pointwise_information(and_gate):
    """i(x; y1) per sample (standard) and on average (both estimators) vs the exact log-density ratio."""
    m, x, y, w = and_gate
    variants, groups = grouped_variants(m, y)
    info = variant_information(
        variants, x, jr.key(5), scheme=SCHEME, n_noise=N_NOISE, about=1, given=0, groups=groups
    )
    exact = np.asarray(exact_pointwise_information(m, x, y, about=[0]))
    err = info.standard - exact
    se = _se(err, w)
    print(
        "MI (nats): exact",
        np.sum(w * exact),
        "standard",
        np.sum(w * info.standard),
        "orth",
        np.sum(w * info.orthogonal),
        "SE",
        se,
    )
    assert abs(np.sum(w * err)) <= 4 * se + 1e-3
    assert np.sqrt(np.mean(err**2)) < 0.1  # per sample: the standard estimator is pointwise unbiased
    # orthogonal: unbiased only on average over p(x | y); its per-sample noise sets the tolerance
    assert abs(np.sum(w * (info.orthogonal - exact))) <= 4 * _se(info.orthogonal - exact, w) + 1e-3
    chex.assert_trees_all_close(info.orthogonal_coords.sum(-1), info.orthogonal, rtol=1e-10)
    assert np.all(info.orthogonal_coords >= 0)


@pytest.mark.parametrize(
    "scheme",
    [
        LogSNRScheme.uniform(N_LOGSNR, -12.0, 8.0, stratified=True),
        LogSNRScheme.gauss_legendre(N_LOGSNR, -12.0, 8.0),
        LogSNRScheme.logistic(N_LOGSNR, 1.0, 2.0, 4.0),  # Info-Decomp's code default (clip 4): [-7, 9]
    ],
    ids=["uniform", "gauss_legendre", "info_decomp_logistic"],
)
def test_importance_sampling_agrees_with_uniform(and_gate, scheme):
    """Each log-SNR rule gives the same mutual informations (per sample and averaged) as the clipped
    logistic of the study within their combined Monte-Carlo error, and the same MMI PID."""
    m, x, y, w = and_gate
    variants, groups = grouped_variants(m, y)
    kw = dict(n_noise=N_NOISE, sample_weights=w, groups=groups)
    ref = variant_pid_information(variants, x, jr.key(6), scheme=SCHEME, **kw)
    other = variant_pid_information(variants, x, jr.key(7), scheme=scheme, **kw)
    exact = exact_pid_information(m, x, y, sample_weights=w).pointwise
    for k in range(3):
        d_ref, d_oth = ref.pointwise[:, k] - exact[:, k], other.pointwise[:, k] - exact[:, k]
        tol = 4 * math.hypot(_se(d_ref, w), _se(d_oth, w)) + 2e-3
        diff = np.sum(w * (other.pointwise[:, k] - ref.pointwise[:, k]))
        assert abs(diff) <= tol, (k, diff, tol)
    a = decompose(ref, "mmi").terms.as_array()
    b = decompose(other, "mmi").terms.as_array()
    assert np.max(np.abs(a - b)) < 0.05


def test_cpid_with_context_and_pixel_maps():
    """CPID: with a third token as context the informations are those given the context; pixel maps
    from (C, H, W) coordinates sum the channels and add up to the image-level orthogonal informations."""
    m = gate_model("XOR")
    x, y, w = m.sample_stratified(jr.key(8), 4)
    variants, groups = grouped_variants(m, y)
    res = variant_pid(
        variants,
        x,
        jr.key(9),
        measure=("pointwise_min", "mmi"),
        scheme=SCHEME,
        sample_weights=w,
        groups=groups,
        n_noise=4,
    )
    assert set(res) == {"pointwise_min", "mmi"}
    assert res["mmi"].maps is not None and res["mmi"].maps.redundancy.shape == (2,)
    info = variant_pid_information(variants, x, jr.key(9), scheme=SCHEME, groups=groups, n_noise=4)
    pix = pixel_pid(info, (2, 1, 1))  # two "channels" of one pixel: the pixel sums them
    chex.assert_trees_all_close(pix.information[:, :, 0, 0], info.orthogonal, rtol=1e-10)
    red = np.minimum(pix.information[:, 0], pix.information[:, 1])
    chex.assert_trees_all_close(pix.sample_maps.redundancy, red)
    pix2 = pixel_pid(info, (1, 2))  # two pixels
    assert pix2.maps.synergy.shape == (1, 2)


def test_bad_inputs(and_gate):
    m, x, y, w = and_gate
    scores = _scores(m, (1, 1))
    with pytest.raises(ValueError, match="at least two"):
        ConditionVariants.from_scores(scores[:1])
    with pytest.raises(TypeError, match="scores"):
        ConditionVariants.from_scores(scores[0])
    other = CallableScore(OpaqueDenoiser(m), VP.ou(), (2,), parametrisation="x0", cond=_conds((1, 1))[0])
    with pytest.raises(ValueError, match="process"):
        ConditionVariants.from_scores([scores[0], other])
    wide = CallableScore(
        OpaqueDenoiser(m),
        PROCESS,
        (2,),
        parametrisation="x0",
        cond={"tokens": jnp.zeros(3, jnp.int32), "mask": jnp.zeros(3, bool)},
        check=False,
    )
    with pytest.raises(ValueError, match="token lengths"):
        ConditionVariants.from_scores([scores[0], wide], batch="always")
    assert not ConditionVariants.from_scores([scores[0], wide]).batched  # auto: falls back
    with pytest.raises(ValueError, match="names"):
        ConditionVariants.from_scores(scores, names=["a"])
    v = ConditionVariants.from_scores(scores)
    with pytest.raises(ValueError, match="exactly 4"):
        variant_pid_information(ConditionVariants.from_scores(scores[:3]), x, jr.key(0), scheme=SCHEME)
    with pytest.raises(ValueError, match="`x`"):
        variant_pid_information(v, x[:, :1], jr.key(0), scheme=SCHEME)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` contains non-finite"):
        variant_pid_information(v, bad, jr.key(0), scheme=SCHEME)
    with pytest.raises(ValueError, match="`groups`"):
        variant_pid_information([v, v], x, jr.key(0), scheme=SCHEME)
    with pytest.raises(ValueError, match="`groups`"):
        variant_pid_information([v, v], x, jr.key(0), scheme=SCHEME, groups=np.full(len(x), 2))
    with pytest.raises(TypeError, match="scheme"):
        variant_pid_information(v, x, jr.key(0), scheme="logistic")
    with pytest.raises(ValueError, match="`measure`"):
        variant_pid(v, x, jr.key(0), measure="wb_imin", scheme=SCHEME)
    with pytest.raises(ValueError, match="`about`"):
        variant_information(v, x, jr.key(0), scheme=SCHEME, about=4)
    with pytest.raises(ValueError, match="`given` and `about`"):
        variant_information(v, x, jr.key(0), scheme=SCHEME, about=0)

    class Broken(eqx.Module):
        def __call__(self, x, t, cond):
            return x * jnp.nan

    nan_scores = [
        CallableScore(Broken(), PROCESS, (2,), parametrisation="x0", cond=c, check=False)
        for c in _conds((1, 1))
    ]
    with pytest.raises(ValueError, match="non-finite noise predictions"):
        variant_curves(ConditionVariants.from_scores(nan_scores), x[:2], jr.key(0), scheme=SCHEME)
