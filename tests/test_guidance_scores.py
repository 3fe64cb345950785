"""Guided scores: strength conventions, the exact mixture classifier, and guided sampling oracles."""

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.scores import guidance


@pytest.fixture(scope="module")
def mix2d():
    """Three full-covariance components in 2-D; class 0 has two components (labels 0, 1, 0)."""
    covs = jnp.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, -0.1], [-0.1, 0.9]], [[2.0, 0.0], [0.0, 0.3]]])
    return ds.GaussianMixture(
        jnp.array([0.3, 0.5, 0.2]),
        jnp.array([[1.0, 0.0], [-2.0, 1.0], [0.0, 3.0]]),
        covs,
        labels=jnp.array([0, 1, 0]),
    )


POINTS = jnp.array([[0.3, -0.7], [2.0, 1.0], [-1.5, 2.5]])
TIMES = jnp.array([0.05, 0.4, 2.0])


def on_grid(fn):
    """``fn(t, x)`` evaluated (jitted) at every pair of TIMES x POINTS."""
    return jax.jit(jax.vmap(lambda t: jax.vmap(lambda x: fn(t, x))(POINTS)))(TIMES)


# --------------------------------------------------------------------------------------------------
# conventions
# --------------------------------------------------------------------------------------------------
def test_convention_values_and_round_trips():
    w = jnp.array([0.0, 0.5, 1.0, 3.0, 11.0])
    chex.assert_trees_all_close(guidance.eta_from_scale(w), w - 1.0)
    chex.assert_trees_all_close(guidance.cfg_from_scale(w), w - 1.0)
    chex.assert_trees_all_close(guidance.classifier_scale_from_scale(w), w)
    chex.assert_trees_all_close(guidance.scale_from_eta(guidance.eta_from_scale(w)), w)
    chex.assert_trees_all_close(guidance.scale_from_cfg(guidance.cfg_from_scale(w)), w)
    chex.assert_trees_all_close(guidance.scale_from_classifier_scale(w), w)
    for src in guidance.CONVENTIONS:
        for dst in guidance.CONVENTIONS:
            v = guidance.convert_strength(w + guidance.CONVENTIONS[src], source=src, target=dst)
            chex.assert_trees_all_close(v, w + guidance.CONVENTIONS[dst])
    # Stable Diffusion's default guidance_scale 7.5 is Wu et al.'s eta = 6.5 (reference note, section 1.7)
    chex.assert_trees_all_close(guidance.convert_strength(7.5, source="guidance_scale", target="eta"), 6.5)
    chex.assert_trees_all_close(guidance.convert_strength(6.5, source="cfg", target="guidance_scale"), 7.5)


def test_ho_salimans_noise_form_matches_scale(mix2d, key):
    """(1 + w_cfg) eps_c - w_cfg eps_u (Ho & Salimans) is the guided score at w = 1 + w_cfg."""
    cond = mix2d.condition(0)
    clf = guidance.MixtureClassifier(mix2d)

    @jax.jit
    @jax.vmap
    def gap(w_cfg):
        guided = guidance.ClassifierGuidance(mix2d, clf, 0, guidance.scale_from_cfg(w_cfg))
        return jax.vmap(
            lambda t: jax.vmap(
                lambda x: guided.eps(t, x) - ((1 + w_cfg) * cond.eps(t, x) - w_cfg * mix2d.eps(t, x))
            )(POINTS)
        )(TIMES)

    g = gap(jnp.array([0.0, 0.7, 4.0]))
    chex.assert_trees_all_close(g, jnp.zeros_like(g), atol=1e-10)


def test_negative_strength_rejected(mix2d):
    with pytest.raises(ValueError, match="must be >= 0"):
        guidance.guided_mixture(mix2d, 0, -0.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        guidance.ClassifierFreeGuidance(mix2d, mix2d.condition(1), -2.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        guidance.scale_from_eta(-1.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        guidance.scale_from_cfg(-3.0)
    with pytest.raises(ValueError, match="finite"):
        guidance.guided_mixture(mix2d, 0, float("nan"))
    with pytest.raises(ValueError, match="Unknown"):
        guidance.convert_strength(1.0, source="scale", target="lambda")


def test_labels_out_of_range(mix2d):
    with pytest.raises(ValueError, match="out of range"):
        guidance.guided_mixture(mix2d, 2, 1.0)  # labels are {0, 1}
    with pytest.raises(ValueError, match="out of range"):
        guidance.ClassifierGuidance(mix2d, guidance.MixtureClassifier(mix2d), -1, 2.0)
    with pytest.raises(TypeError):
        guidance.guided_mixture(mix2d, True, 1.0)
    with pytest.raises(TypeError):
        guidance.guided_mixture(mix2d, 0.5, 1.0)
    with pytest.raises(TypeError):
        guidance.ClassifierGuidance(mix2d, mix2d, 0, 1.0)  # a score is not a classifier


# --------------------------------------------------------------------------------------------------
# exact classifier: closed forms vs autodiff
# --------------------------------------------------------------------------------------------------
def test_classifier_closed_forms_match_autodiff(mix2d):
    clf = guidance.MixtureClassifier(mix2d)
    assert clf.classes == (0, 1)
    lps = on_grid(clf.log_probs)
    chex.assert_trees_all_close(jnp.sum(jnp.exp(lps), -1), jnp.ones(lps.shape[:2]), atol=1e-12)
    for y in (0, 1):
        cond, pi_y = mix2d.condition(y), mix2d.label_weights()[y]

        def quantities(t, x, y=y, cond=cond, pi_y=pi_y):
            return {
                "lp": clf.log_prob(t, x, y),
                "grad": clf.grad_log_prob(t, x, y),
                "grad_ad": jax.grad(lambda z: clf.log_prob(t, z, y))(x),
                "lap": clf.laplacian_log_prob(t, x, y),
                "lap_ad": jnp.trace(jax.hessian(lambda z: clf.log_prob(t, z, y))(x)),
                "bayes": cond.log_prob(t, x) + jnp.log(pi_y) - mix2d.log_prob(t, x),  # Bayes' rule
            }

        q = on_grid(quantities)
        chex.assert_trees_all_close(q["lp"], lps[..., y], atol=1e-12)
        chex.assert_trees_all_close(q["grad"], q["grad_ad"], atol=1e-10)
        chex.assert_trees_all_close(q["lap"], q["lap_ad"], atol=1e-9)
        chex.assert_trees_all_close(q["lp"], q["bayes"], atol=1e-10)


def test_isotropic_gradient_closed_form():
    """Identity covariances under OU: grad log p_t(y|x) = a_t (mu_y - sum_k r_k mu_k) (Wu et al. 2024)."""
    means = jnp.array([[0.0, 0.0], [-3.0, 1.0], [3.0, 1.0]])
    mix = ds.GaussianMixture(jnp.array([0.2, 0.3, 0.5]), means, 1.0)
    clf = guidance.MixtureClassifier(mix)

    def quantities(t, x):
        a = mix.process.alpha(t)
        r = mix.posterior(t, x)
        cov = (means * r[:, None]).T @ means - jnp.outer(r @ means, r @ means)
        return {
            "grad": clf.grad_log_prob(t, x, 0),
            "grad_cf": a * (means[0] - r @ means),
            "hess": jax.jacfwd(lambda z: clf.grad_log_prob(t, z, 0))(x),
            "hess_cf": -(a**2) * cov,
        }

    q = on_grid(quantities)
    chex.assert_trees_all_close(q["grad"], q["grad_cf"], atol=1e-12)
    # concavity: the Hessian is -a^2 Cov_r[mu] <= 0
    chex.assert_trees_all_close(q["hess"], q["hess_cf"], atol=1e-10)


# --------------------------------------------------------------------------------------------------
# guided scores
# --------------------------------------------------------------------------------------------------
def test_classifier_guidance_equals_cfg_and_limits(mix2d):
    cond = mix2d.condition(1)
    clf = guidance.MixtureClassifier(mix2d)
    ws = jnp.array([0.0, 1.0, 2.5, 10.0])

    @jax.jit
    def evaluate(w):  # w traced: one compilation for every strength
        cg = guidance.ClassifierGuidance(mix2d, clf, 1, w)
        cfg = guidance.ClassifierFreeGuidance(mix2d, cond, w)

        def grid(g):
            def one(t, x):
                return g.score(t, x), g.laplacian(t, x), g.hessian(t, x)

            return jax.vmap(lambda t: jax.vmap(lambda x: one(t, x))(POINTS))(TIMES)

        return grid(cg), grid(cfg)

    a, b = jax.vmap(evaluate)(ws)
    chex.assert_trees_all_close(a, b, atol=1e-9)
    chex.assert_trees_all_close(a[0][0], on_grid(mix2d.score), atol=1e-12)  # w = 0: unconditional
    chex.assert_trees_all_close(a[0][1], on_grid(cond.score), atol=1e-10)  # w = 1: conditional


def test_guided_derivatives_match_autodiff(mix2d):
    g = guidance.guided_mixture(mix2d, 0, 3.0)

    def quantities(t, x):
        jac = jax.jacfwd(lambda z: g.score(t, z))(x)
        full = jax.grad(lambda z: mix2d.log_prob(t, z) + 3.0 * g.log_classifier(t, z))(x)
        return {
            "h": g.hessian(t, x),
            "jac": jac,
            "lap": g.laplacian(t, x),
            "tr": jnp.trace(jac),
            "s": g.score(t, x),
            "full": full,
        }

    q = on_grid(quantities)
    chex.assert_trees_all_close(q["h"], q["jac"], atol=1e-9)
    chex.assert_trees_all_close(q["lap"], q["tr"], atol=1e-9)
    chex.assert_trees_all_close(q["s"], q["full"], atol=1e-10)
    # the fused one-pass path (base is the classifier's mixture) equals the generic two-term path
    assert g.fused
    generic = guidance.ClassifierGuidance(jax.tree.map(lambda a: a, mix2d), g.classifier, 0, 3.0)
    assert not generic.fused
    both = on_grid(
        lambda t, x: (g.score(t, x) - generic.score(t, x), g.laplacian(t, x) - generic.laplacian(t, x))
    )
    chex.assert_trees_all_close(both, jax.tree.map(jnp.zeros_like, both), atol=1e-10)


def test_cfg_rejects_mismatched_scores(mix2d):
    other = ds.GaussianMixture(jnp.array([1.0]), jnp.zeros((1, 3)), 1.0)
    with pytest.raises(ValueError, match="same dimension"):
        guidance.ClassifierFreeGuidance(mix2d, other, 2.0)
    vp = ds.GaussianMixture(jnp.array([1.0]), jnp.zeros((1, 2)), 1.0, process=ds.VP.linear())
    with pytest.raises(ValueError, match="share one process"):
        guidance.ClassifierFreeGuidance(mix2d, vp, 2.0)


_KINDS = {"score": "score", "x0": "denoise", "eps": "eps", "v": "v_prediction"}


def _old_token_guidance(net, tok, unc, w, t, x, kind):
    """The formula of the former GuidedTokenScore: one batched call, combined in ``kind``."""
    out = jax.vmap(lambda k: net.predict(t, x, k, kind))(jnp.stack([unc, tok.astype(unc.dtype)]))
    return out[0] + jnp.asarray(w) * (out[1] - out[0])


def _old_token_conditioned(model, process, tok, mask, umask, w, t, x, kind):
    """The formula of the former ``TokenConditionedScore(..., guidance=w)``: combined in noise space."""
    from diffsim.scores import v_from_score
    from diffsim.scores.conditional import channel_coefficients

    lam = process.log_snr(t)
    a, _ = channel_coefficients(lam)
    xl = x * (a / process.alpha(t)).astype(x.dtype)
    lam = lam.astype(x.dtype)
    e = model.eps(lam, xl, tok, mask)
    eu = model.eps(lam, xl, tok, umask)
    e = eu + jnp.asarray(float(w)).astype(x.dtype) * (e - eu)
    sigma = process.sigma(t).astype(x.dtype)
    if kind == "eps":
        return e
    if kind == "x0":
        return (x - sigma * e) / process.alpha(t).astype(x.dtype)
    return -e / sigma if kind == "score" else v_from_score(process, t, x, -e / sigma)


def test_cfg_joint_paths_bit_identical_to_former_formulas():
    """Token networks and token-conditioned scores guide through ClassifierFreeGuidance's joint paths,
    bit-for-bit the former GuidedTokenScore / TokenConditionedScore(guidance=) numbers (float64)."""
    from diffsim.data.concepts import concept_mixture
    from diffsim.scores.conditional import ConditionalMixture
    from diffsim.scores.nn import MLPScore
    from diffsim.scores.token_conditioned import TokenConditionedScore

    process = ds.VP.linear()
    net = MLPScore(2, key=jr.key(5), alphabet_sizes=(3, 2), width=16, depth=1, process=process)
    tok, ref = jnp.array([1, 0]), jnp.array([1, 2])
    tm = concept_mixture((6.0, 1.5), image_shape=(4, 4), block_shape=(2, 2), std=0.5, process=process)
    cm = ConditionalMixture.from_token_mixture(tm)
    ctok, cmask, cumask = jnp.array([1, 0]), jnp.array([True, True]), jnp.array([False, True])
    tcs = TokenConditionedScore(cm, process, ctok, cmask)
    x2, x16 = jnp.array([0.3, -1.0]), jr.normal(jr.key(1), (16,))
    for w in (0.0, 1.0, 2.5):
        cases = [
            (
                net.guided(tok, w),
                lambda kd, t, w=w: _old_token_guidance(net, tok, net.null_tokens, w, t, x2, kd),
                x2,
            ),
            (
                net.guided(tok, w, ref),
                lambda kd, t, w=w: _old_token_guidance(net, tok, ref, w, t, x2, kd),
                x2,
            ),
            (
                tcs.guided(w, cumask),
                lambda kd, t, w=w: _old_token_conditioned(cm, process, ctok, cmask, cumask, w, t, x16, kd),
                x16,
            ),
        ]
        for g, old, x in cases:
            assert isinstance(g, guidance.ClassifierFreeGuidance) and g.joint
            for kind, method in _KINDS.items():
                for t in (0.05, 0.4, 0.9):
                    new = getattr(g, method)(t, x)
                    assert new.dtype == jnp.float64
                    np.testing.assert_array_equal(np.asarray(new), np.asarray(old(kind, t)))
    # the unguided branch alone and the default unconditional mask
    np.testing.assert_array_equal(
        np.asarray(tcs.guided(1.0).score(0.3, x16)),
        np.asarray(
            _old_token_conditioned(cm, process, ctok, cmask, jnp.zeros(2, bool), 1.0, 0.3, x16, "score")
        ),
    )
    # branches that are not one network / not token-conditioned: the generic combination
    other = MLPScore(2, key=jr.key(6), alphabet_sizes=(3, 2), width=16, depth=1, process=process)
    mixed = guidance.ClassifierFreeGuidance(other.bind(net.null_tokens), net.bind(tok), 2.0)
    assert not mixed.joint
    u, c = other.predict(0.4, x2, None, "x0"), net.predict(0.4, x2, tok, "x0")
    np.testing.assert_array_equal(np.asarray(mixed.denoise(0.4, x2)), np.asarray(u + 2.0 * (c - u)))
    with pytest.raises(ValueError, match="scale"):
        tcs.guided(-1.0)
    with pytest.raises(ValueError, match="scale"):
        net.guided(tok, -0.5)


def test_scale_is_a_leaf_no_recompile(mix2d, key):
    """Changing w only changes an array leaf: one compiled sampler serves every strength."""
    run = jax.jit(lambda s: ds.simulate(s, "ddim", 5, n=4, key=key).x)
    xs = [run(guidance.guided_mixture(mix2d, 0, w)) for w in (1.0, 2.0, 3.0)]
    assert run._cache_size() == 1
    chex.assert_tree_all_finite(xs)
    assert not np.allclose(xs[0], xs[2])


# --------------------------------------------------------------------------------------------------
# unguided DDIM from the exact conditional prior reproduces the class-conditional Gaussian exactly
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sym3d():
    mu = jnp.array([[1.5, -0.5, 1.0], [-1.5, 0.5, -1.0]])
    return ds.GaussianMixture(jnp.array([0.4, 0.6]), mu, 1.0)


def test_unguided_pf_ode_maps_conditional_prior_exactly(sym3d):
    """With identity covariances the w=1 PF-ODE is a pure translation: x_0 = x_T + (a_end - a_T) mu_y, so
    N(a_T mu_y, I) at T is carried exactly onto N(a_end mu_y, I) (Wu et al. 2024; reference note 2.3)."""
    p = sym3d.process
    cond = sym3d.condition(0)
    x_t, _ = cond.sample(jr.key(3), 64, t=p.t_max)
    guided = guidance.guided_mixture(sym3d, 0, 1.0)
    out = ds.flow(guided, x_t, p.t_max, p.t_min, rtol=1e-9, atol=1e-9)
    expect = x_t + (p.alpha(p.t_min) - p.alpha(p.t_max)) * sym3d.means[0][None, :]
    chex.assert_trees_all_close(out, expect, atol=1e-7)
    # zero divergence along the path: the output density equals the Gaussian prior density shifted
    div = jax.vmap(lambda x: guided.velocity_divergence(0.3, x))(x_t)
    chex.assert_trees_all_close(div, jnp.zeros_like(div), atol=1e-10)


def test_unguided_discrete_ddim_is_the_exact_affine_map(sym3d):
    """A DDIM step on N(mu, I) data maps x - a mu to (a_n a + s_n s)(x - a mu) (derived from the update
    x0 = a x + s^2 mu, eps = s (x - a mu)); the whole sampler is that product, and tends to 1."""
    p = sym3d.process
    mu = sym3d.means[0]
    x_t, _ = sym3d.condition(0).sample(jr.key(4), 32, t=p.t_max)
    guided = guidance.guided_mixture(sym3d, 0, 1.0)
    gaps = []
    for n_steps in (10, 200):
        grid = ds.grids.logsnr_uniform(p, n_steps)
        out = ds.simulate(guided, "ddim", grid, x=x_t, key=jr.key(0)).x
        a, s = p.alpha(grid), p.sigma(grid)
        factor = jnp.prod(a[1:] * a[:-1] + s[1:] * s[:-1])
        expect = a[-1] * mu[None, :] + factor * (x_t - a[0] * mu[None, :])
        chex.assert_trees_all_close(out, expect, atol=1e-10)
        gaps.append(1.0 - float(factor))
    # the contraction 1 - prod cos(dtheta) ~ sum dtheta^2 / 2 is first order in the step: 20x more steps
    assert 0 < gaps[1] < gaps[0] / 10


def test_float32_guided_laplacian_far_from_tight_modes():
    """The fused guided Laplacian uses the centred sub-mixture form: in float32 it matches float64 far from
    tight modes, where the uncentred ``sum rho |s_k|^2 - |s|^2`` loses every digit."""
    w = np.array([0.3, 0.3, 0.4])
    mu = np.array([[0.0, 0.0], [1.0, -1.0], [-1.0, 0.5]])
    labels = np.array([0, 0, 1])
    process = ds.VP.linear()
    g64 = ds.GaussianMixture(w, mu, 1e-6, process=process, labels=labels)
    g32 = ds.GaussianMixture(w.astype(np.float32), mu.astype(np.float32), np.float32(1e-6), process=process,
                             labels=labels)  # fmt: skip
    for x, t in [((10.0, -3.0), 1e-6), ((300.0, 0.0), 1e-2), ((-40.0, 25.0), 1e-3)]:
        for scale in (0.0, 1.0, 3.0):
            ref = float(guidance.guided_mixture(g64, 0, scale).laplacian(t, jnp.asarray(x)))
            got = float(
                guidance.guided_mixture(g32, 0, scale).laplacian(jnp.float32(t), jnp.asarray(x, jnp.float32))
            )
            assert abs(got - ref) <= 1e-4 * abs(ref), (x, t, scale, got, ref)
