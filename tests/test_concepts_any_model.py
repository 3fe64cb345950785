"""Concept tools on any model (x0 streams, emergence, masking and gradient saliency, insertion/deletion),
checked against the exact routes of the concepts setting with the exact denoisers wrapped as OPAQUE
batched callables (no closed form reaches the functions under test)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from diffsim.analysis import (
    EmergenceCurves,
    X0Stream,
    bayes_accuracy,
    concept_curve,
    emergence_curves,
    emergence_time,
    gradient_saliency,
    latent_grid,
    model_insertion_deletion,
    model_masking_saliency,
    prediction_fn,
    record_x0,
    stream_x0,
    train_probe,
)
from diffsim.data.concepts import concept_mixture
from diffsim.processes import VP
from diffsim.sampling import grids
from diffsim.scores import ClassifierFreeGuidance
from diffsim.scores.adapters import CallableScore
from diffsim.scores.conditional import ConditionalMixture
from diffsim.scores.token_conditioned import TokenConditionedScore


SEPARATIONS = (6.0, 3.0, 1.5)  # the concepts study's toy mixture
STD = 0.5
N_PARTICLES, N_GRID = 512, 50  # the study's quick preset
TOLERANCE = 0.5  # the study's quick-preset emergence tolerance (log-SNR)


def _opaque(mix, process):
    """The exact denoiser of ``mix`` as a batched callable on (B, 1, 4, 4) images: only its outputs leak."""

    def fn(x, t):
        flat = x.reshape(x.shape[0], -1)
        return jax.vmap(mix.denoise)(t, flat).reshape(x.shape)

    return CallableScore(fn, process, (1, 4, 4), parametrisation="x0", time_input="t")


@pytest.fixture(scope="module")
def toy():
    process = VP.linear()
    tm = concept_mixture(SEPARATIONS, image_shape=(4, 4), block_shape=(2, 2), std=STD, process=process)
    cm = ConditionalMixture.from_token_mixture(tm)
    names = tm.token_names[: len(SEPARATIONS)]
    xd, yd = cm.sample(jr.key(1), 2000)
    probes = [
        train_probe(xd, np.asarray(yd[:, j]), key=jr.fold_in(jr.key(2), j), steps=200, name=name)
        for j, name in enumerate(names)
    ]
    return dict(
        process=process,
        tm=tm,
        cm=cm,
        names=names,
        probes=probes,
        opaque=_opaque(tm.mixture, process),
        grid=grids.logsnr_uniform(process, N_GRID),
    )


def _conditional(toy, k):
    """The exact mixture conditioned on token ``k`` = 1 (its components), and the region it moves."""
    tm = toy["tm"]
    cond = tm.mixture.restrict(np.flatnonzero(np.asarray(tm.tokens)[:, k] == 1))
    region = np.asarray(tm.support[toy["names"][k]]).reshape(4, 4)
    return cond, region


# ------------------------------------------------------------------------------------------------------
# emergence: the study's exact route vs the model-agnostic stream on the opaque denoiser
# ------------------------------------------------------------------------------------------------------
def test_emergence_matches_the_concepts_study_route(toy):
    process, cm, names, probes, grid = toy["process"], toy["cm"], toy["names"], toy["probes"], toy["grid"]
    features = dict(zip(names, probes, strict=True))
    # the study's route (part "emergence"): record_x0 on the token-conditioned exact score, labels from the
    # exact posterior of the final state, chance 0.5
    rec = record_x0(
        TokenConditionedScore(cm, process),
        "ddpm",
        grid,
        key=jr.key(3),
        n=N_PARTICLES,
        probes=probes,
        exact=cm,
        exact_slots=range(len(names)),
    )
    study, analytic = {}, {}
    for j, name in enumerate(names):
        labels = np.argmax(rec.exact[j][-1], -1)
        study[name] = emergence_time(concept_curve(rec.probs[name], labels, rec.log_snr), chance=0.5)
        exact_curve = bayes_accuracy(rec.log_snr, SEPARATIONS[j], 4, STD)
        analytic[name] = emergence_time(exact_curve, rec.log_snr, chance=0.5)

    # same key: the opaque model streams the same probabilities (to rounding) and the same emergence times
    same = stream_x0(toy["opaque"], "ddpm", grid, key=jr.key(3), n=N_PARTICLES, features=features)
    assert isinstance(same, X0Stream) and same.x0 is None
    for name in names:
        np.testing.assert_allclose(same.features[name], rec.probs[name], atol=1e-9)
    np.testing.assert_allclose(same.log_snr, rec.log_snr, atol=1e-12)
    ec = emergence_curves(same, outputs="probs", chance=0.5)
    assert isinstance(ec, EmergenceCurves)
    for name in names:
        assert ec.emergence[name] == pytest.approx(study[name], abs=1e-9)

    # independent trajectories: within Monte-Carlo error of the closed form and of the study's value
    # (measured over 8 keys: -4.51 +- 0.28, -3.14 +- 0.11, -1.65 +- 0.15 against -4.38, -2.98, -1.56)
    other = stream_x0(toy["opaque"], "ddpm", grid, key=jr.key(13), n=N_PARTICLES, features=features)
    em = emergence_curves(other, outputs="probs", chance=0.5).emergence
    got = np.array([em[n] for n in names])
    np.testing.assert_allclose(got, [analytic[n] for n in names], atol=TOLERANCE)
    np.testing.assert_allclose(got, [study[n] for n in names], atol=TOLERANCE + 0.1)
    assert np.all(np.diff(got) > 0)  # coarse concepts emerge first
    # default chance = the labels' majority rate (a user classifier on an unbalanced concept)
    majority = emergence_curves(other, outputs="probs")
    for name in names:
        assert 0.5 <= majority.chance[name] < 0.6
        assert majority.emergence[name] >= em[name] - 1e-12


def test_feature_stream_equals_kept_x0(toy):
    """Real features: the explained fraction computed from the streamed features equals the one computed
    from the kept x0 predictions, which equal record_x0's (the study's recorder)."""
    process, grid = toy["process"], toy["grid"]
    region = np.asarray(toy["tm"].support[toy["names"][2]])

    def mean_in_region(x0):
        return jnp.stack([jnp.mean(x0[region]), jnp.mean(x0[~region])])

    st = stream_x0(
        toy["opaque"], "ddim", grid, key=jr.key(4), n=64, features={"means": mean_in_region}, keep_x0=True
    )
    rec = record_x0(TokenConditionedScore(toy["cm"], process), "ddim", grid, key=jr.key(4), n=64)
    np.testing.assert_allclose(st.x0, rec.x0, atol=1e-9)
    f = np.stack([st.x0[..., region].mean(-1), st.x0[..., ~region].mean(-1)], -1)
    np.testing.assert_allclose(st.features["means"], f, atol=1e-12)
    ref = 1 - np.mean(np.sum((f - f[-1]) ** 2, -1), 1) / np.mean(np.sum((f[0] - f[-1]) ** 2, -1))
    ec = emergence_curves(st, outputs="features")
    np.testing.assert_allclose(ec.curves["means"], ref, atol=1e-12)
    assert ec.curves["means"][0] == pytest.approx(0.0) and ec.curves["means"][-1] == pytest.approx(1.0)
    assert np.isfinite(ec.emergence["means"]) and ec.chance["means"] == 0.0


# ------------------------------------------------------------------------------------------------------
# gradient saliency: one VJP through the opaque model = the closed-form Jacobian of Tweedie's denoiser
# ------------------------------------------------------------------------------------------------------
def test_gradient_saliency_equals_closed_form(toy):
    process = toy["process"]
    mix = toy["tm"].mixture
    cond_mix, region = _conditional(toy, 2)
    unc, cond = toy["opaque"], _opaque(cond_mix, process)
    t = float(process.t_from_log_snr(0.0))
    a, s = process.alpha(t), process.sigma(t)
    x = cond_mix.sample(jr.key(5), 1, t)[0][0]
    # d x0_hat / dx = (I + sigma^2 H_t) / alpha with the closed-form Hessian of log p_t
    jac_c = (jnp.eye(16) + s**2 * cond_mix.hessian(t, x)) / a
    jac_u = (jnp.eye(16) + s**2 * mix.hessian(t, x)) / a
    w = jr.normal(jr.key(6), (16,))
    g = gradient_saliency(cond, t, x, objective=lambda f: jnp.dot(w, f))
    np.testing.assert_allclose(g.gradient, jac_c.T @ w, atol=1e-10)
    np.testing.assert_allclose(g.map, np.abs(np.asarray(jac_c.T @ w)).reshape(4, 4), atol=1e-10)
    # the conditioning's effect energy 1/2 |x0_c - x0_u|^2 (default objective), explicit or from a CFG pair
    eff = cond_mix.denoise(t, x) - mix.denoise(t, x)
    ref = (jac_c - jac_u).T @ eff
    ge = gradient_saliency(cond, t, x, target="effect", unconditional=unc)
    np.testing.assert_allclose(ge.gradient, ref, atol=1e-10)
    assert ge.objective == pytest.approx(0.5 * float(eff @ eff), rel=1e-10)
    gc = gradient_saliency(ClassifierFreeGuidance(unc, cond, 3.0), t, x, target="effect")
    np.testing.assert_allclose(gc.gradient, ref, atol=1e-10)
    # the token moves its region only: the effect's gradient lives there
    assert ge.map[~region].max() < 1e-10 < ge.map[region].min()


# ------------------------------------------------------------------------------------------------------
# masking saliency and insertion/deletion with a condition that acts on known pixels only
# ------------------------------------------------------------------------------------------------------
def test_masking_saliency_puts_the_mass_where_the_condition_acts(toy):
    process = toy["process"]
    cond_mix, region = _conditional(toy, 2)
    unc, cond = toy["opaque"], _opaque(cond_mix, process)
    t = float(process.t_from_log_snr(0.0))
    xs = cond_mix.sample(jr.key(4), 4, t)[0]
    effect, prediction = [], []
    for i in range(xs.shape[0]):
        for target, out in (("effect", effect), ("prediction", prediction)):
            s = np.asarray(
                model_masking_saliency(
                    cond,
                    t,
                    xs[i],
                    jr.key(10 + i),
                    target=target,
                    unconditional=unc,
                    kind="bernoulli",
                    n_masks=1024,
                    batch_size=256,
                )
            )
            assert s.shape == (4, 4)
            out.append(np.abs(s)[region].sum() / np.abs(s).sum())
    # measured: 0.81, 0.55, 0.83, 0.88 for the effect; 0.03-0.06 for the prediction (uniform: 0.25)
    assert np.mean(effect) > 0.7
    assert np.mean(prediction) < 0.2
    # smooth (RISE) masks on the grid run too and are reproducible under a fixed key
    a = model_masking_saliency(cond, t, xs[0], jr.key(1), target="effect", unconditional=unc, cells=(2, 2))
    b = model_masking_saliency(cond, t, xs[0], jr.key(1), target="effect", unconditional=unc, cells=(2, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_insertion_deletion_of_the_true_region(toy):
    """Revealing the 4 pixels the condition acts on restores its effect exactly (fidelity 1 at 4/16);
    revealing the 12 others first leaves it at the baseline's (fidelity 0 at 12/16)."""
    process = toy["process"]
    cond_mix, region = _conditional(toy, 1)
    unc, cond = toy["opaque"], _opaque(cond_mix, process)
    t = float(process.t_from_log_snr(0.0))
    xs = cond_mix.sample(jr.key(8), 3, t)[0]
    truth = np.broadcast_to(region.astype(float), (3, 4, 4))
    game = model_insertion_deletion(
        cond,
        t,
        xs,
        {"truth": truth, "complement": 1.0 - truth},
        jr.key(3),
        target="effect",
        unconditional=unc,
    )
    assert game.fractions[4] == 0.25 and game.fractions[12] == 0.75
    np.testing.assert_allclose(game.curves["truth"][:, 4:], 1.0, atol=1e-12)
    np.testing.assert_allclose(game.curves["complement"][:, :13], 0.0, atol=1e-12)
    assert np.all(game.auc["truth"] > game.auc["random"]) and np.all(
        game.auc["complement"] < game.auc["random"]
    )
    deletion = model_insertion_deletion(
        cond,
        t,
        xs,
        {"truth": truth, "complement": 1.0 - truth},
        jr.key(3),
        mode="deletion",
        target="effect",
        unconditional=unc,
    )
    np.testing.assert_allclose(deletion.curves["truth"][:, 4:], 0.0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------------------
def test_bad_inputs(toy):
    sc, grid = toy["opaque"], toy["grid"]
    t = 0.5
    x = jnp.zeros(16)
    with pytest.raises(TypeError, match="score"):
        stream_x0("model", "ddim", grid, key=jr.key(0), n=2, features=jnp.sum)
    with pytest.raises(TypeError, match="features"):
        stream_x0(sc, "ddim", grid, key=jr.key(0), n=2, features={"a": 3})
    with pytest.raises(ValueError, match="Nothing to stream"):
        stream_x0(sc, "ddim", grid, key=jr.key(0), n=2)
    st = stream_x0(sc, "ddim", 4, key=jr.key(0), n=3, features={"f": lambda v: v[:2], "s": jnp.sum})
    with pytest.raises(ValueError, match="outputs"):
        emergence_curves(st, outputs="labels")
    with pytest.raises(ValueError, match="class scores"):
        emergence_curves(st, outputs={"f": "logits", "s": "logits"})
    ok = {"f": "logits", "s": "features"}
    with pytest.raises(ValueError, match="level"):
        emergence_curves(st, outputs=ok, level=1.5)
    with pytest.raises(ValueError, match="chance"):
        emergence_curves(st, outputs=ok, chance=1.0)
    with pytest.raises(ValueError, match="labels"):
        emergence_curves(st, outputs=ok, labels={"g": np.zeros(3, int)})
    with pytest.raises(ValueError, match="labels"):
        emergence_curves(st, outputs=ok, labels={"f": np.zeros(2, int)})
    assert set(emergence_curves(st, outputs=ok).emergence) == {"f", "s"}
    with pytest.raises(ValueError, match="target"):
        prediction_fn(sc, t, target="image")
    with pytest.raises(ValueError, match="unconditional"):
        prediction_fn(sc, t, target="effect")
    with pytest.raises(ValueError, match="output"):
        prediction_fn(sc, t, output="v")
    with pytest.raises(ValueError, match="t"):
        prediction_fn(sc, 2.0)
    with pytest.raises(ValueError, match="masks"):
        model_masking_saliency(sc, t, x, masks=np.ones((4, 16)))
    with pytest.raises(ValueError, match="kind"):
        model_masking_saliency(sc, t, x, jr.key(0), kind="gaussian")
    with pytest.raises(ValueError, match="`x`"):
        model_masking_saliency(sc, t, jnp.zeros(15), jr.key(0))
    with pytest.raises(ValueError, match="objective"):
        gradient_saliency(sc, t, x, objective=lambda f: f)
    with pytest.raises(ValueError, match="event_shape"):
        latent_grid(sc, (3, 5))
    assert latent_grid(sc) == (1, 4, 4)
    with pytest.raises(ValueError, match=r"saliency\['m'\]"):
        model_insertion_deletion(sc, t, jnp.zeros((2, 16)), {"m": np.zeros((2, 3, 3))}, jr.key(0))
    with pytest.raises(ValueError, match="pixels_per_step"):
        model_insertion_deletion(
            sc, t, jnp.zeros((2, 16)), {"m": np.zeros((2, 4, 4))}, jr.key(0), pixels_per_step=0
        )
