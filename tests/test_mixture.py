"""GaussianMixture: closed forms against independent routes (autodiff, scipy densities, Gaussian
conditioning for Tweedie), sampling moments, sub-mixtures, and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy import stats

import diffsim as ds
from diffsim.scores import (
    eps_from_score,
    score_from_eps,
    score_from_v,
    score_from_x0,
    v_from_score,
    x0_from_score,
)


def _random_spd(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return np.einsum("kij,klj->kil", a, a) / d + 0.3 * np.eye(d)


RNG = np.random.default_rng(0)
K, D = 3, 3
W = np.array([0.2, 0.5, 0.3])
MU = RNG.normal(scale=2.0, size=(K, D))
COVS = {
    "scalar": 0.7,
    "per_component": np.array([0.3, 1.0, 2.0]),
    "diag": RNG.uniform(0.2, 2.0, size=(K, D)),
    "full": _random_spd(RNG, K, D),
}
PROCESSES = {"ou": ds.VP.ou(), "linear": ds.VP.linear(), "ve": ds.VE(0.02, 20.0)}
X = jnp.asarray(RNG.normal(size=(4, D)))


def _full_covs(kind):
    c = COVS[kind]
    if np.ndim(c) == 0:
        return np.stack([c * np.eye(D)] * K)
    if np.ndim(c) == 1:
        return np.stack([ci * np.eye(D) for ci in c])
    if np.ndim(c) == 2:
        return np.stack([np.diag(ci) for ci in c])
    return c


@pytest.fixture(
    scope="module", params=[(c, p) for c in COVS for p in PROCESSES], ids=lambda v: f"{v[0]}-{v[1]}"
)
def mixture(request):
    kind, proc = request.param
    return kind, ds.GaussianMixture(W, MU, COVS[kind], process=PROCESSES[proc])


def _times(gm):
    return [0.0, 0.05 * gm.process.t_max, 0.4 * gm.process.t_max]


@jax.jit
def _autodiff(gm, t, x):
    lp = lambda y: gm.log_prob(t, y)  # noqa: E731
    return jax.grad(lp)(x), jax.hessian(lp)(x)


@jax.jit
def _closed(gm, t, x):
    return gm.score(t, x), gm.hessian(t, x), gm.laplacian(t, x), gm.log_prob(t, x), gm.posterior(t, x)


def test_score_and_hessian_equal_autodiff(mixture):
    _, gm = mixture
    for t in _times(gm):
        for x in X:
            g, h = _autodiff(gm, t, x)
            s, hc, lap, _, _ = _closed(gm, t, x)
            chex.assert_trees_all_close(s, g, rtol=1e-10, atol=1e-10)
            chex.assert_trees_all_close(hc, h, rtol=1e-9, atol=1e-10)
            chex.assert_trees_all_close(lap, jnp.trace(h), rtol=1e-9, atol=1e-10)


def test_log_prob_and_posterior_equal_scipy(mixture):
    kind, gm = mixture
    full = _full_covs(kind)
    for t in _times(gm):
        a, s2 = float(gm.process.alpha(t)), float(gm.process.sigma2(t))
        for x in X:
            comp = np.array(
                [
                    stats.multivariate_normal(a * MU[k], a**2 * full[k] + s2 * np.eye(D)).pdf(x)
                    for k in range(K)
                ]
            )
            _, _, _, lp, post = _closed(gm, t, x)
            np.testing.assert_allclose(lp, np.log(W @ comp), rtol=1e-10)
            np.testing.assert_allclose(post, W * comp / (W @ comp), rtol=1e-9, atol=1e-14)


def test_tweedie_equals_gaussian_conditioning(mixture):
    """E[x0 | x_t] = sum_k r_k (mu_k + a Sigma_k C_k^{-1} (x - a mu_k)) (Gaussian conditioning)."""
    kind, gm = mixture
    full = _full_covs(kind)
    t = 0.3 * gm.process.t_max
    a, s2 = float(gm.process.alpha(t)), float(gm.process.sigma2(t))
    for x in X:
        r = np.asarray(gm.posterior(t, x))
        cond = [
            MU[k] + a * full[k] @ np.linalg.solve(a**2 * full[k] + s2 * np.eye(D), np.asarray(x) - a * MU[k])
            for k in range(K)
        ]
        np.testing.assert_allclose(gm.denoise(t, x), r @ np.array(cond), rtol=1e-9, atol=1e-12)


def test_parametrisation_round_trips():
    gm = ds.GaussianMixture(W, MU, COVS["full"], process=ds.VP.linear())
    p = gm.process
    for t in [0.01, 0.3, 0.9]:
        x = X[0]
        s = gm.score(t, x)
        chex.assert_trees_all_close(score_from_x0(p, t, x, x0_from_score(p, t, x, s)), s, rtol=1e-10)
        chex.assert_trees_all_close(score_from_eps(p, t, x, eps_from_score(p, t, x, s)), s, rtol=1e-12)
        chex.assert_trees_all_close(score_from_v(p, t, x, v_from_score(p, t, x, s)), s, rtol=1e-10)
        chex.assert_trees_all_close(gm.eps(t, x), -p.sigma(t) * s, rtol=1e-12)
        chex.assert_trees_all_close(gm.velocity(t, x), p.drift(t, x) - 0.5 * p.beta(t) * s, rtol=1e-12)
        chex.assert_trees_all_close(gm.reverse_drift(t, x), p.drift(t, x) - p.beta(t) * s, rtol=1e-12)
    ve = ds.GaussianMixture(W, MU, 0.5, process=ds.VE(0.01, 10.0))
    s = ve.score(0.5, X[1])
    chex.assert_trees_all_close(
        score_from_v(ve.process, 0.5, X[1], v_from_score(ve.process, 0.5, X[1], s)), s, rtol=1e-10
    )


def test_default_hessian_autodiff_path():
    """AbstractScore's default (autodiff) Hessian/Laplacian agree with the closed forms."""
    gm = ds.GaussianMixture(W, MU, COVS["diag"])
    base_h = ds.AbstractScore.hessian(gm, 0.2, X[0])
    chex.assert_trees_all_close(base_h, gm.hessian(0.2, X[0]), rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(ds.AbstractScore.laplacian(gm, 0.2, X[0]), gm.laplacian(0.2, X[0]), rtol=1e-9)


def test_sample_moments(key):
    gm = ds.GaussianMixture(W, MU, COVS["full"])
    n = 60000
    x, comp = gm.sample(key, n)
    chex.assert_shape((x, comp), ((n, D), (n,)))
    freq = np.bincount(np.asarray(comp), minlength=K) / n
    assert np.all(np.abs(freq - W) <= 4 * np.sqrt(W * (1 - W) / n)), freq
    for k in range(K):
        xk = np.asarray(x[comp == k])
        assert np.all(np.abs(xk.mean(0) - MU[k]) <= 5 * np.sqrt(np.diag(COVS["full"][k]) / len(xk)))
        np.testing.assert_allclose(np.cov(xk.T), COVS["full"][k], atol=0.06)
    # sampling p_t: moments of the diffused mixture
    t = 0.7
    xt, comp_t = gm.sample(key, n, t=t)
    a, s2 = float(gm.process.alpha(t)), float(gm.process.sigma2(t))
    xk = np.asarray(xt[comp_t == 1])
    np.testing.assert_allclose(np.cov(xk.T), a**2 * COVS["full"][1] + s2 * np.eye(D), atol=0.06)


def test_restrict_condition_group_posterior():
    gm = ds.GaussianMixture(W, MU, COVS["diag"], labels=np.array([7, 3, 7]))
    sub = gm.restrict([0, 2])
    chex.assert_trees_all_close(sub.weights, jnp.array([0.4, 0.6]), rtol=1e-12)
    chex.assert_trees_all_close(sub.means, MU[[0, 2]])
    assert sub.cov_type == "diag"
    chex.assert_trees_all_close(gm.condition(7).weights, sub.weights)
    assert gm.label_weights() == pytest.approx({3: 0.5, 7: 0.5})
    t, x = 0.5, X[2]
    mask = gm.group_mask([0, 2])
    r = gm.posterior(t, x)
    chex.assert_trees_all_close(gm.group_posterior(t, x, mask), r[0] + r[2], rtol=1e-12)
    # Bayes: P(S | x) = W_S p^S_t(x) / p_t(x)
    chex.assert_trees_all_close(
        gm.group_posterior(t, x, mask), 0.5 * jnp.exp(sub.log_prob(t, x) - gm.log_prob(t, x)), rtol=1e-10
    )
    full_sub = ds.GaussianMixture(W, MU, COVS["full"]).restrict(np.array([False, True, True]))
    assert full_sub.n_components == 2 and full_sub.cov_type == "full"
    sph = ds.GaussianMixture(W, MU, COVS["per_component"]).restrict([1])
    assert sph.cov_type == "spherical" and float(sph.eigvals[0, 0]) == pytest.approx(1.0)


def test_stable_far_from_modes():
    """Log-sum-exp keeps everything finite where every component density underflows."""
    gm = ds.GaussianMixture(W, MU, 0.01)
    x = jnp.array([80.0, -60.0, 50.0])
    out = _closed(gm, 0.0, x)
    chex.assert_tree_all_finite(out)
    chex.assert_trees_all_close(jnp.sum(out[4]), 1.0, rtol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 3.0))
def test_random_full_mixtures_score_is_gradient(seed, t):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(K))
    gm = ds.GaussianMixture(w, rng.normal(scale=3, size=(K, D)), _random_spd(rng, K, D))
    x = jnp.asarray(rng.normal(scale=2, size=D))
    g, h = _autodiff(gm, t, x)
    s, hc, _, _, _ = _closed(gm, t, x)
    chex.assert_trees_all_close(s, g, rtol=1e-8, atol=1e-9)
    chex.assert_trees_all_close(hc, h, rtol=1e-7, atol=1e-8)


def test_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        ds.GaussianMixture([1.2, -0.2], MU[:2])
    with pytest.raises(ValueError, match="sum to one"):
        ds.GaussianMixture([0.5, 0.4], MU[:2])
    with pytest.raises(ValueError, match="weights"):
        ds.GaussianMixture([0.5, 0.5], MU)
    with pytest.raises(ValueError, match="means"):
        ds.GaussianMixture([1.0], np.zeros(3))
    with pytest.raises(ValueError, match="positive definite"):
        ds.GaussianMixture([0.5, 0.5], MU[:2], np.array([1.0, -0.1]))
    with pytest.raises(ValueError, match="positive definite"):
        ds.GaussianMixture([1.0], MU[:1], np.array([[[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]]]))
    with pytest.raises(ValueError, match="symmetric"):
        ds.GaussianMixture([1.0], MU[:1], np.array([[[1.0, 0.5, 0], [0.0, 1.0, 0], [0, 0, 1.0]]]))
    with pytest.raises(ValueError, match="covs"):
        ds.GaussianMixture([1.0], MU[:1], np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        ds.GaussianMixture([1.0], np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        ds.GaussianMixture([1.0], MU[:1], np.inf)
    with pytest.raises(ValueError, match="labels"):
        ds.GaussianMixture(W, MU, labels=[0, 1])
    with pytest.raises(TypeError, match="process"):
        ds.GaussianMixture(W, MU, process="ou")
    gm = ds.GaussianMixture(W, MU)
    with pytest.raises(ValueError, match="at least one"):
        gm.restrict([])
    with pytest.raises(ValueError, match="indices"):
        gm.restrict([0, 5])
    with pytest.raises(ValueError, match="repeated"):
        gm.restrict([1, 1])
    with pytest.raises(ValueError, match="label"):
        gm.condition(9)
    with pytest.raises(TypeError, match="key"):
        gm.sample(0, 10)
    with pytest.raises(ValueError, match="n"):
        gm.sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="t_max"):
        gm.sample(jax.random.key(0), 3, t=20.0)


def test_float32_far_mixture_refines_top_logits_only_where_cancellation_matters():
    """Clusters 600 apart in float32: the expanded square loses ~3e-3 of a responsibility to cancellation,
    so the top logits are recomputed directly (posterior within 2e-4 of float64); float64 and ordinary
    float32 mixtures skip the refinement (it costs 2-4x a sampling step)."""
    rng = np.random.default_rng(0)
    k, d = 8, 16
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    means = np.concatenate([300 * u + rng.normal(size=(4, d)), -300 * u + rng.normal(size=(4, d))])
    w, covs = np.ones(k) / k, rng.uniform(0.5, 2.0, size=(k, d))
    g32 = ds.GaussianMixture(w.astype(np.float32), means.astype(np.float32), covs.astype(np.float32))
    g64 = ds.GaussianMixture(w, means, covs)
    assert g32.refine_logits and not g64.refine_logits
    assert not g32.restrict([0, 1, 2, 3]).refine_logits  # one cluster, recentred: no cancellation
    assert not ds.GaussianMixture(
        w.astype(np.float32), rng.normal(size=(k, d)).astype(np.float32), 0.05
    ).refine_logits
    xs = means[rng.integers(0, k, 300)] + rng.normal(size=(300, d))
    p32 = jax.vmap(lambda x: g32.posterior(jnp.float32(0.05), x))(jnp.asarray(xs, jnp.float32))
    p64 = jax.vmap(lambda x: g64.posterior(0.05, x))(jnp.asarray(xs))
    chex.assert_trees_all_close(np.asarray(p32, np.float64), np.asarray(p64), atol=2e-4)


# float32 curvature far from a tight mode: the uncentred closed form sum_k r_k s_k s_k^T - s s^T cancels
# catastrophically (H00 = 0 against -9.1e5 at (10, -3), t = 1e-6); the centred form does not.
FAR_POINTS = [((10.0, -3.0), 1e-6), ((300.0, 0.0), 1e-6), ((300.0, 0.0), 1e-2), ((-40.0, 25.0), 1e-3)]
F32_RTOL = 1e-4  # relative to the Frobenius norm of the float64 Hessian (|trace| for the Laplacian)


def _tight_pair(dtype, process, full=False):
    w = np.array([0.3, 0.7])
    mu = np.array([[0.0, 0.0], [1.0, -1.0]])
    cov = np.stack([1e-6 * np.eye(2), [[2e-6, 5e-7], [5e-7, 1e-6]]]) if full else 1e-6
    return ds.GaussianMixture(w.astype(dtype), mu.astype(dtype), np.asarray(cov, dtype), process=process)


@pytest.mark.parametrize("full", [False, True], ids=["spherical", "full"])
@pytest.mark.parametrize("process", [ds.VP.linear(), ds.VP.ou()], ids=["linear", "ou"])
def test_float32_curvature_far_from_tight_modes_matches_float64(process, full):
    g32 = _tight_pair(np.float32, process, full)
    g64 = _tight_pair(np.float64, process, full)
    for x, t in FAR_POINTS:
        x64 = jnp.asarray(x)
        x32, t32 = x64.astype(jnp.float32), jnp.float32(t)
        h64 = np.asarray(g64.hessian(t, x64))
        scale = np.linalg.norm(h64)
        # float64 closed form is the reference: check it against autodiff of the score first
        np.testing.assert_allclose(jax.jacfwd(g64.score, argnums=1)(t, x64), h64, atol=1e-9 * scale)
        h32 = np.asarray(g32.hessian(t32, x32), np.float64)
        np.testing.assert_allclose(h32, h64, atol=F32_RTOL * scale, err_msg=f"{x}, t={t}")
        ad32 = np.asarray(jax.jacfwd(g32.score, argnums=1)(t32, x32), np.float64)
        np.testing.assert_allclose(h32, ad32, atol=1e-3 * scale, err_msg=f"{x}, t={t}")
        lap64 = float(g64.laplacian(t, x64))
        lap32 = float(g32.laplacian(t32, x32))
        assert abs(lap32 - lap64) <= F32_RTOL * abs(lap64), (x, t, lap32, lap64)
        div64 = float(g64.velocity_divergence(t, x64))
        div32 = float(g32.velocity_divergence(t32, x32))
        assert abs(div32 - div64) <= F32_RTOL * abs(div64), (x, t, div32, div64)


def test_float32_pf_ode_log_likelihood_with_exact_divergence():
    """The PF-ODE likelihood integrates the closed-form divergence; in float32 it stays on the float64 value
    (and on the exact log-density)."""
    gm64 = ds.GaussianMixture(W, MU, COVS["diag"])
    gm32 = ds.GaussianMixture(W.astype(np.float32), MU.astype(np.float32), COVS["diag"].astype(np.float32))
    x = jnp.asarray(X[:2])
    p = gm64.process
    exact = jax.vmap(lambda xi: gm64.log_prob(p.t_min, xi))(x)
    prior64 = lambda z: gm64.log_prob(p.t_max, z)  # noqa: E731
    prior32 = lambda z: gm32.log_prob(jnp.float32(p.t_max), z)  # noqa: E731
    ll64, _ = ds.log_likelihood(gm64, x, prior_log_prob=prior64, rtol=1e-6, atol=1e-6)
    ll32, _ = ds.log_likelihood(gm32, x.astype(jnp.float32), prior_log_prob=prior32, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(ll64, exact, atol=1e-4)
    chex.assert_trees_all_close(np.asarray(ll32, np.float64), np.asarray(ll64), atol=2e-3)
