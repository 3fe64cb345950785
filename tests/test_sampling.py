"""Samplers: convergence orders against the closed-form PF-ODE map of a Gaussian, recovery of a
mixture's law, PF-ODE likelihood against the exact density, the noising-denoising reweighting identity,
determinism under batching and chunking, saving/statistics, cloning, grids, and bad input."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis.metrics import mode_weight_error


LAM = jnp.array([0.25, 4.0])
MU = jnp.array([1.0, -2.0])
GAUSS_PROCESSES = {"linear": ds.VP.linear(), "ve": ds.VE(0.01, 20.0)}


def _exact_pf_map(p, x, s, t):
    """PF-ODE map of N(mu, diag(LAM)): x_t - a_t mu = sqrt(c_t / c_s) (x_s - a_s mu), c = a^2 lam + s^2."""
    cs = p.alpha(s) ** 2 * LAM + p.sigma2(s)
    ct = p.alpha(t) ** 2 * LAM + p.sigma2(t)
    return p.alpha(t) * MU[None, :] + jnp.sqrt(ct / cs)[None, :] * (x - p.alpha(s) * MU[None, :])


@pytest.mark.parametrize("proc", sorted(GAUSS_PROCESSES))
@pytest.mark.parametrize("method", ["euler", "ddim", "heun", "dpm_solver_2m"])
def test_ode_solvers_converge_at_their_order(proc, method):
    """Pathwise order against the exact PF-ODE map: the sampler class's declared ``order``."""
    order = ds.sampling.SAMPLER_REGISTRY[method].order
    assert not ds.sampling.SAMPLER_REGISTRY[method].stochastic
    p = GAUSS_PROCESSES[proc]
    gm = ds.GaussianMixture(jnp.ones(1), MU[None], LAM[None], process=p)
    x = p.prior_std * jax.random.normal(jax.random.key(0), (16, 2))
    ref = _exact_pf_map(p, x, p.t_max, p.t_min)
    ns = np.array([32, 64, 128])
    errs = []
    for n in ns:
        traj = ds.simulate(gm, method, ds.grids.logsnr_uniform(p, int(n)), x=x, key=jax.random.key(1))
        errs.append(float(jnp.max(jnp.abs(traj.x - ref))))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15, (errs, slope)
    assert errs[-1] < 0.1 * p.prior_std  # the error is relative to the prior scale (20 for VE)


@pytest.mark.parametrize("proc", sorted(GAUSS_PROCESSES))
def test_adaptive_ode_matches_closed_form(proc):
    p = GAUSS_PROCESSES[proc]
    gm = ds.GaussianMixture(jnp.ones(1), MU[None], LAM[None], process=p)
    x = p.prior_std * jax.random.normal(jax.random.key(0), (16, 2))
    grid = ds.grids.uniform(p, 4)
    traj = ds.simulate(gm, "tsit5", grid, x=x, key=jax.random.key(1), save="all", rtol=1e-9, atol=1e-9)
    for i, t in enumerate(np.asarray(grid)):
        chex.assert_trees_all_close(traj.xs[i], _exact_pf_map(p, x, p.t_max, t), atol=1e-6)
    # ODE flow map helper in both directions
    fwd = ds.flow(gm, traj.x, p.t_min, p.t_max)
    chex.assert_trees_all_close(fwd, x, atol=1e-4 * p.prior_std)


# --- recovering a mixture's law ------------------------------------------------------------------------
GMM = ds.GaussianMixture(
    jnp.array([0.25, 0.75]),
    jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
    jnp.array([0.5, 1.0]),
    process=ds.VP.linear(),
)
N_LAW = 20000


@pytest.fixture(scope="module")
def gmm_reference():
    x, _ = GMM.sample(jax.random.key(123), 400000)
    return np.asarray(x.mean(0)), np.asarray(jnp.cov(x.T))


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,steps,opts",
    [
        ("euler_maruyama", 200, {}),
        ("ddpm", 200, {}),
        ("ddim", 100, {}),
        ("heun", 50, {}),
        ("dpm_solver_2m", 50, {}),
        ("pc", 200, {}),
        ("tsit5", 1, {}),
        ("sde", 200, {"brownian": "unsafe"}),
        ("heun", 50, {"churn": 10.0}),
    ],
)
def test_samplers_recover_mixture_law(method, steps, opts, gmm_reference):
    grid = ds.grids.logsnr_uniform(GMM.process, steps)
    traj = ds.simulate(GMM, method, grid, n=N_LAW, key=jax.random.key(7), **opts)
    chex.assert_tree_all_finite(traj.x)
    _, err = mode_weight_error(GMM, traj.x)
    # soft frequencies: SE <= 0.5 / sqrt(N) = 0.0035; allow discretisation bias of coarse SDE grids
    assert float(err) < 0.02, float(err)
    mean, cov = gmm_reference
    se_mean = np.sqrt(np.diag(cov) / N_LAW)
    assert np.all(np.abs(np.asarray(traj.x.mean(0)) - mean) < 5 * se_mean + 0.03)
    np.testing.assert_allclose(np.cov(np.asarray(traj.x).T), cov, rtol=0.05, atol=0.05)


@pytest.mark.slow
def test_pf_ode_log_likelihood_equals_exact_log_prob():
    x, _ = GMM.sample(jax.random.key(3), 32)
    p = GMM.process
    exact = jax.vmap(lambda xi: GMM.log_prob(p.t_min, xi))(x)
    prior = lambda z: GMM.log_prob(p.t_max, z)  # noqa: E731
    ll, _ = ds.log_likelihood(GMM, x, prior_log_prob=prior, rtol=1e-8, atol=1e-8)
    chex.assert_trees_all_close(ll, exact, atol=1e-5)
    # with the N(0, I) prior the result differs exactly by the prior mismatch at the end point x_T
    ll_std, x_end = ds.log_likelihood(GMM, x, rtol=1e-8, atol=1e-8)
    mismatch = p.prior_log_prob(x_end) - jax.vmap(prior)(x_end)
    chex.assert_trees_all_close(ll_std - exact, mismatch, atol=1e-6)
    # Hutchinson: unbiased, so the mean over points and probes agrees within its standard error
    ll_h, _ = ds.log_likelihood(
        GMM,
        x,
        prior_log_prob=prior,
        divergence="hutchinson",
        n_probes=8,
        key=jax.random.key(4),
        rtol=1e-6,
        atol=1e-6,
    )
    diff = np.asarray(ll_h - exact)
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size) + 1e-3


@pytest.mark.slow
def test_noise_denoise_reweighting_identity():
    """Li & Chen's identity for the exact reverse SDE: E_out f(X) = E[f(X_0) P(S | X_T)] / W_S."""
    gm = ds.GaussianMixture(
        jnp.array([0.3, 0.3, 0.4]), jnp.array([[-4.0], [-1.0], [3.0]]), jnp.array([0.25, 0.25, 0.5])
    )
    s_init = [0]
    t_hat = 1.0
    n = 20000
    x0_init, _ = gm.restrict(s_init).sample(jax.random.key(0), n)
    out = ds.noise_denoise(gm, x0_init, t_hat, key=jax.random.key(1), n_steps=200, grid="logsnr")
    # right-hand side by Monte Carlo with the exact posterior, independent of any sampler
    x0, _ = gm.sample(jax.random.key(2), 200000)
    xt = gm.process.sample_marginal(jax.random.key(3), x0, t_hat)
    mask = gm.group_mask(s_init)
    w_t = jax.vmap(lambda z: gm.group_posterior(t_hat, z, mask))(xt) / 0.3
    for f in (lambda z: z[:, 0], lambda z: (z[:, 0] > -2.5).astype(z.dtype), lambda z: z[:, 0] ** 2):
        lhs = np.asarray(f(out.x))
        rhs_terms = np.asarray(f(x0) * w_t)
        se = np.sqrt(lhs.var() / n + rhs_terms.var() / rhs_terms.size)
        assert abs(lhs.mean() - rhs_terms.mean()) < 4 * se + 0.01, (lhs.mean(), rhs_terms.mean(), se)


# --- determinism, saving, cloning ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,opts",
    [
        ("euler_maruyama", {}),
        ("ddpm", {}),
        ("pc", {}),
        ("heun", {"churn": 5.0}),
        ("dpm_solver_2m", {}),
        ("sde", {"brownian": "unsafe"}),
    ],
)
def test_batching_and_chunking_do_not_change_particles(method, opts):
    key = jax.random.key(11)
    grid = ds.grids.logsnr_uniform(GMM.process, 12)
    small = ds.simulate(GMM, method, grid, n=6, key=key, **opts)
    large = ds.simulate(GMM, method, grid, n=15, key=key, **opts)
    chunked = ds.simulate(GMM, method, grid, n=15, key=key, chunk_size=4, **opts)
    chex.assert_trees_all_close(small.x, large.x[:6], rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(np.asarray(chunked.x), np.asarray(large.x), rtol=1e-12, atol=1e-12)
    assert isinstance(chunked.x, jax.Array) and isinstance(large.x, jax.Array)  # one array kind
    other = ds.simulate(GMM, method, grid, n=6, key=jax.random.key(12), **opts)
    assert not np.allclose(other.x, small.x)


def test_save_and_stats():
    grid = ds.grids.logsnr_uniform(GMM.process, 10)
    x0 = jax.random.normal(jax.random.key(0), (5, 2))
    stats = lambda t, x: {"r": GMM.posterior(t, x), "t": t}  # noqa: E731
    full = ds.simulate(GMM, "ddim", grid, x=x0, key=jax.random.key(0), save="all", stats=stats)
    chex.assert_shape(full.xs, (11, 5, 2))
    chex.assert_trees_all_close(full.ts, grid)
    chex.assert_trees_all_close(full.xs[0], x0)
    chex.assert_trees_all_close(full.xs[-1], full.x)
    post = jax.vmap(lambda t, xb: jax.vmap(lambda xi: GMM.posterior(t, xi))(xb))(full.ts, full.xs)
    chex.assert_trees_all_close(full.stats["r"], post, rtol=1e-12)
    chex.assert_trees_all_close(full.stats["t"][:, 0], grid)
    strided = ds.simulate(
        GMM, "ddim", grid, x=x0, key=jax.random.key(0), save=4, save_states=False, stats=stats
    )
    assert strided.xs is None
    chex.assert_trees_all_close(strided.ts, grid[jnp.array([0, 4, 8, 10])])
    chex.assert_trees_all_close(strided.stats["r"], full.stats["r"][jnp.array([0, 4, 8, 10])])
    picked = ds.simulate(GMM, "ddim", grid, x=x0, key=jax.random.key(0), save=[3, 7])
    chex.assert_trees_all_close(picked.xs, full.xs[jnp.array([3, 7])])
    assert full.nfe == 10 and ds.simulate(GMM, "heun", grid, x=x0, key=jax.random.key(0)).nfe == 20


def test_clone_shares_past_and_splits_future():
    x = jax.random.normal(jax.random.key(0), (8, 2))
    det = ds.clone(GMM, x, 0.4, key=jax.random.key(1), n_clones=3, method="ddim", n_steps=10)
    chex.assert_shape(det.x, (3, 8, 2))
    chex.assert_trees_all_close(det.x[0], det.x[1])  # deterministic: identical clones
    sto = ds.clone(GMM, x, 0.4, key=jax.random.key(1), n_clones=3, n_steps=10)
    assert not np.allclose(sto.x[0], sto.x[1])
    again = ds.clone(GMM, x, 0.4, key=jax.random.key(1), n_clones=3, n_steps=10)
    chex.assert_trees_all_close(sto.x, again.x)


def test_noise_denoise_traced_start_time():
    """t_hat may be traced: one compiled function serves a whole sweep of noising times."""
    x0 = jnp.zeros((4, 2))

    @jax.jit
    def final(t_hat):
        return ds.noise_denoise(GMM, x0, t_hat, key=jax.random.key(0), method="ddim", n_steps=8).x

    a = final(0.3)
    b = ds.noise_denoise(GMM, x0, 0.3, key=jax.random.key(0), method="ddim", n_steps=8).x
    chex.assert_trees_all_close(a, b, rtol=1e-12)


def test_grids():
    p = ds.VP.linear()
    for g in [
        ds.grids.uniform(p, 10),
        ds.grids.geometric(p, 10),
        ds.grids.logsnr_uniform(p, 10),
        ds.grids.karras(p, 10),
        ds.grids.exponential(p, 10, dense="early"),
        ds.grids.exponential(p, 10, dense="late"),
    ]:
        chex.assert_shape(g, (11,))
        assert np.all(np.diff(np.asarray(g)) < 0)
        chex.assert_trees_all_close((g[0], g[-1]), (p.t_max, p.t_min), rtol=1e-9)
    lam = p.log_snr(ds.grids.logsnr_uniform(p, 10))
    chex.assert_trees_all_close(jnp.diff(lam), jnp.full(10, lam[1] - lam[0]), rtol=1e-6)
    # Karras: sigma_tilde = sigma / alpha follows the rho-interpolation
    k = ds.grids.karras(p, 10, rho=7.0)
    sig = jnp.exp(-0.5 * p.log_snr(k))
    r = sig ** (1 / 7)
    chex.assert_trees_all_close(jnp.diff(r), jnp.full(10, r[1] - r[0]), rtol=1e-6)
    early = np.abs(np.diff(np.asarray(ds.grids.exponential(p, 30, lam=10, dense="early"))))
    late = np.abs(np.diff(np.asarray(ds.grids.exponential(p, 30, lam=10, dense="late"))))
    assert early[0] < early[-1] and late[0] > late[-1]


def test_bad_input():
    key = jax.random.key(0)
    grid = ds.grids.uniform(GMM.process, 5)
    with pytest.raises(ValueError, match="Unknown sampler 'nope'"):
        ds.simulate(GMM, "nope", grid, n=3, key=key)
    with pytest.raises(ValueError, match="number of steps"):
        ds.simulate(GMM, "ddim", 0, n=3, key=key)
    with pytest.raises(ValueError, match="decreasing"):
        ds.simulate(GMM, "ddim", grid[::-1], n=3, key=key)
    with pytest.raises(ValueError, match="grid"):
        ds.simulate(GMM, "ddim", jnp.array([2.0, 0.5]), n=3, key=key)
    with pytest.raises(ValueError, match="grid"):
        ds.simulate(GMM, "ddim", jnp.array([0.5, 0.0]), n=3, key=key)
    with pytest.raises(ValueError, match="at least 2"):
        ds.simulate(GMM, "ddim", jnp.array([0.5]), n=3, key=key)
    with pytest.raises(ValueError, match="shape"):
        ds.simulate(GMM, "ddim", grid, x=jnp.zeros((3, 5)), key=key)
    with pytest.raises(ValueError, match="exactly one"):
        ds.simulate(GMM, "ddim", grid, x=jnp.zeros((3, 2)), n=3, key=key)
    with pytest.raises(ValueError, match="exactly one"):
        ds.simulate(GMM, "ddim", grid, key=key)
    with pytest.raises(ValueError, match="non-finite"):
        ds.simulate(GMM, "ddim", grid, x=jnp.array([[jnp.nan, 0.0]]), key=key)
    with pytest.raises(TypeError, match="key"):
        ds.simulate(GMM, "ddim", grid, n=3, key=None)
    # key: jax.Array is annotated: the test-time type checker (tests/conftest.py) may raise first, naming it
    with pytest.raises(TypeError, match="PRNG key|parameter 'key'"):
        ds.simulate(GMM, "ddim", grid, n=3, key=3)
    with pytest.raises(ValueError, match="eta"):
        ds.simulate(GMM, "ddim", grid, n=3, key=key, eta=1.5)
    with pytest.raises(TypeError, match="Bad options"):
        ds.simulate(GMM, "ddim", grid, n=3, key=key, etaa=0.5)
    with pytest.raises(ValueError, match="save"):
        ds.simulate(GMM, "ddim", grid, n=3, key=key, save=[0, 9])
    with pytest.raises(ValueError, match="save"):
        ds.simulate(GMM, "ddim", grid, n=3, key=key, save="sometimes")
    with pytest.raises(ValueError, match="needs starting points"):
        ds.simulate(GMM, "forward", 5, n=3, key=key)
    with pytest.raises(TypeError, match="score"):
        ds.simulate("gmm", "ddim", grid, n=3, key=key)
    with pytest.raises(ValueError, match="n"):
        ds.simulate(GMM, "ddim", grid, n=0, key=key)
    with pytest.raises(ValueError, match="t_hat"):
        ds.noise_denoise(GMM, jnp.zeros((2, 2)), 3.0, key=key)
    with pytest.raises(ValueError, match="t_hat"):
        ds.noise_denoise(GMM, jnp.zeros((2, 2)), 0.0, key=key)
    with pytest.raises(ValueError, match="n_clones"):
        ds.clone(GMM, jnp.zeros((2, 2)), 0.5, key=key, n_clones=0)
    with pytest.raises(ValueError, match="divergence"):
        ds.log_likelihood(GMM, jnp.zeros((2, 2)), divergence="trace")
    with pytest.raises(TypeError, match="key"):
        ds.log_likelihood(GMM, jnp.zeros((2, 2)), divergence="hutchinson")
    with pytest.raises(ValueError, match="solver"):
        ds.simulate(GMM, "sde", grid, n=3, key=key, solver="rk4")


@pytest.mark.parametrize(
    "method,noise",
    [(m, "per_particle") for m in ("euler_maruyama", "ddpm", "ddim", "euler", "heun", "dpm_solver_2m", "pc")]
    + [("pc", "counter"), ("dpm_solver_2m", "counter")],
)
def test_float32_particles_with_a_float64_process(method, noise):
    """Under jax_enable_x64 a process from a NumPy alpha_bar holds float64 arrays; float32 particles keep
    their dtype through the scan (the carry is cast back); deterministic samplers match the float64 run."""
    alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 200))
    p = ds.VP.from_alpha_bar(alpha_bar)
    gm = ds.GaussianMixture(
        jnp.array([0.4, 0.6]), jnp.array([[-1.0, 0.5], [1.0, 0.0]]), jnp.array([0.3, 0.5]), process=p
    )
    x64 = p.prior_std * jax.random.normal(jax.random.key(0), (6, 2))
    kw = dict(key=jax.random.key(1), save="all", stats=_PosteriorStat(gm), noise=noise)
    t32 = ds.simulate(gm, method, 20, x=x64.astype(jnp.float32), **kw)
    assert t32.x.dtype == t32.xs.dtype == jnp.float32
    chex.assert_tree_all_finite((t32.x, t32.xs, t32.stats))
    if not ds.sampling.SAMPLER_REGISTRY[method].stochastic:
        # float32 and float64 normals differ, so only deterministic runs are comparable
        t64 = ds.simulate(gm, method, 20, x=x64, **kw)
        assert t64.x.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(t32.x), np.asarray(t64.x), rtol=1e-4, atol=1e-4)


class _PosteriorStat(eqx.Module):
    """A stats callable as an Equinox module (no recompilation per call)."""

    gm: ds.GaussianMixture

    def __call__(self, t, x):
        return {"r": self.gm.posterior(t, x)}
