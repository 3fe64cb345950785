r"""Orders of the k-diffusion / diffusers samplers on a single Gaussian, where everything is exact.

For data ``N(mu, diag(lam))`` the denoiser is affine, ``D(y, sigma) = mu + lam / (lam + sigma^2) (y - mu)``
in EDM's scaled variable ``y = x / alpha``, and

- the PF-ODE map from ``t_max`` to ``t_min`` is ``y(sigma) = mu + sqrt((lam + sigma^2) / (lam +
  sigma_0^2)) (y_0 - mu)`` (closed form, no reference solve): **deterministic** samplers are measured
  pathwise against it;
- every sampler is an affine recursion in its state and the step normals, so its output started from the
  exact marginal ``N(alpha mu, alpha^2 lam + sigma^2)`` at ``t_max`` is Gaussian with mean ``F(m_0, 0)``
  and variance ``J_x v_0 J_x^T + sum_j J_{z_j} J_{z_j}^T`` (``F`` the sampler's own ``init``/``step``
  scanned over the grid with the normals as inputs, ``J`` its Jacobians, which are constant). The law
  of a **stochastic** sampler's output is thus computed exactly, without Monte Carlo, and compared with
  the exact law ``p_{t_min}`` (the reverse SDE preserves the marginals): the weak error in law is the
  error of the mean plus that of the variance, and its slope in ``log(steps)`` is the weak order. A test
  checks that this driver is the sampler ``simulate`` runs (same normals, same output) and one checks the
  moments against Monte Carlo.

Everything runs in float64 (``jax_enable_x64`` from the conftest) on log-SNR-uniform grids, for a VP
(linear schedule) and a VE process. The step ranges are chosen where the local slopes have settled
(each test's docstring says what the slopes are outside it).
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis.convergence import gaussian_law_error, gaussian_pathwise_error, scan_sampler
from diffsim.sampling import SAMPLER_REGISTRY, get_sampler
from diffsim.sampling._peer_samplers import LMSState


LAM = jnp.array([0.25, 4.0])
MU = jnp.array([1.0, -2.0])
PROCS = {"vp": ds.VP.linear(), "ve": ds.VE(0.01, 20.0)}
LAM1, MU1 = 0.3, 0.5  # the 1-D Gaussian of the weak-order tests


def _sig(p, t):
    return jnp.exp(-0.5 * p.log_snr(t))


def _exact_pf_map(p, x, s, t):
    cs = p.alpha(s) ** 2 * LAM + p.sigma2(s)
    ct = p.alpha(t) ** 2 * LAM + p.sigma2(t)
    return p.alpha(t) * MU[None, :] + jnp.sqrt(ct / cs)[None, :] * (x - p.alpha(s) * MU[None, :])


def _slope(ns, errs):
    return float(-np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(errs)), 1)[0])


def _gauss(p):
    return ds.GaussianMixture(jnp.ones(1), MU[None], LAM[None], process=p)


def _pathwise_errors(method, p, ns):
    gm = _gauss(p)
    x = p.prior_std * jr.normal(jr.key(0), (8, 2))
    ref = _exact_pf_map(p, x, p.t_max, p.t_min)
    errs = []
    for n in ns:
        out = ds.simulate(gm, method, ds.grids.logsnr_uniform(p, n), x=x, key=jr.key(1)).x
        errs.append(float(jnp.max(jnp.abs(out - ref))))
    return errs


def _run(sampler, score, grid, state, zs):
    """The analysis layer's driver (the kernel scanned with explicit normals), one normal per step."""
    return scan_sampler(sampler, score, grid, state, zs[:, None])


@pytest.mark.parametrize("proc", sorted(PROCS))
def test_unipc_pathwise_order(proc):
    """UniPC(bh2) is order 3 (its class ``order``): UniC-2 raises the order-2 predictor by one (Zhao et al.
    2023, Thm. 3.1). Local slopes (VP) 1.96, 2.78, 2.95 between 8, 16, 32, 64 steps (the first-order first
    predictor step dominates coarse grids), then 2.99, 3.00, 3.00 up to 1024; the range 64-256 is in the
    asymptotic regime with errors 1e-3 to 1e-5, far above float64 round-off."""
    ns = (64, 128, 256)
    slope = _slope(ns, _pathwise_errors("unipc", PROCS[proc], ns))
    assert SAMPLER_REGISTRY["unipc"].order == 3.0
    assert abs(slope - 3.0) < 0.1, (proc, slope)


def test_lms_self_started_is_second_order():
    """LMS as k-diffusion runs it starts itself with Adams-Bashforth of orders 1, 2, 3: the first (Euler)
    step's local error ``O(h^2)`` stays in the global error, so the pathwise order is 2, the class's
    ``order``. The fourth-order steps dominate until the start-up term takes over: local slopes (VE) 2.27,
    2.94, 3.26, 3.16, 2.73, 2.32, 2.11 between 8, 16, ..., 1024 steps (VP: up to 3.8 and falling below 3.6
    at 1024, because the first step at sigma_max = 157 sees little curvature), so the test uses VE at
    1024-4096 steps (errors 1e-6 to 1e-7)."""
    ns = (1024, 2048, 4096)
    slope = _slope(ns, _pathwise_errors("lms", PROCS["ve"], ns))
    assert SAMPLER_REGISTRY["lms"].order == 2.0
    assert abs(slope - 2.0) < 0.15, slope


def _lms_exact_start(p, gm, grid, x):
    """LMS from ``x`` at ``grid[0]`` with the exact derivatives at the three noise levels before it on the
    continued geometric grid (as if it had run exactly up to ``sigma_max``): every step is order 4."""
    lms, n = get_sampler("lms"), grid.shape[0] - 1
    s0, s1, a0 = _sig(p, grid[0]), _sig(p, grid[1]), p.alpha(grid[0])
    prev = s0 * (s0 / s1) ** jnp.arange(1.0, 4.0)  # sigma_{-1}, sigma_{-2}, sigma_{-3}

    def one(xi):
        lam, mu, sig = LAM[None, :], MU[None, :], prev[:, None]
        y = mu + jnp.sqrt((lam + sig**2) / (lam + s0**2)) * (xi / a0 - MU)[None, :]
        d = sig / (lam + sig**2) * (y - mu)  # (y - D) / sigma on the exact path, shape (3, 2)
        return _run(lms, gm, grid, LMSState(xi, d, prev, jnp.asarray(3, jnp.int32)), jnp.zeros((n, 2)))

    return jax.vmap(one)(x)


@pytest.mark.parametrize("proc", sorted(PROCS))
def test_lms_with_exact_starting_values_is_fourth_order(proc):
    """With exact starting values every step is Adams-Bashforth of order 4 and the pathwise order is 4:
    the order 2 above is the start-up's, not the Adams step's. Local slopes (VE) 3.75, 3.87, 3.94, 3.97,
    3.98 between 64, 128, ..., 2048 steps (VP 3.67 ... 3.98): 512-2048 is asymptotic (errors 5e-7 to 2e-9,
    still 1e5 above float64 round-off). At 1024 steps the self-started error is 50 times larger (1.5e-6 vs
    2.9e-8 on VE): the start-up term dominates it."""
    p = PROCS[proc]
    gm = _gauss(p)
    x = p.prior_std * jr.normal(jr.key(0), (8, 2))
    ref = _exact_pf_map(p, x, p.t_max, p.t_min)
    ns = (512, 1024, 2048)
    errs = [
        float(jnp.max(jnp.abs(_lms_exact_start(p, gm, ds.grids.logsnr_uniform(p, n), x) - ref))) for n in ns
    ]
    slope = _slope(ns, errs)
    assert abs(slope - 4.0) < 0.1, (proc, errs, slope)


# ---------------------------------------------------------------------------------------------------------
# stochastic samplers: weak order from the exact law of the output
# ---------------------------------------------------------------------------------------------------------
def _gauss1(p):
    return ds.GaussianMixture(jnp.ones(1), jnp.array([[MU1]]), jnp.array([[LAM1]]), process=p)


def _marginal(p, t):
    return p.alpha(t) * MU1, p.alpha(t) ** 2 * LAM1 + p.sigma2(t)


def _exact_output_law(method, p, n):
    """Mean and variance of the sampler's output on ``n`` steps started from the exact marginal at
    ``t_max`` (affine recursion: value at the mean, Jacobians for the variance)."""
    gm, sampler = _gauss1(p), get_sampler(method).configure(n)
    grid = ds.grids.logsnr_uniform(p, n)
    m0, v0 = _marginal(p, grid[0])

    def out(x0, zs):
        return _run(sampler, gm, grid, sampler.init(grid[0], x0), zs)[0]

    x0, zs = jnp.full((1,), m0), jnp.zeros((n, 1))
    jx, jz = jax.jacrev(out, argnums=(0, 1))(x0, zs)
    return float(out(x0, zs)), float(jx[0] ** 2 * v0 + jnp.sum(jz**2))


def _law_errors(method, p, ns):
    return [gaussian_law_error(_gauss1(p), method, ds.grids.logsnr_uniform(p, n)) for n in ns]


@pytest.mark.parametrize("method", ["dpmpp_2m_sde", "ddim"])
def test_gaussian_law_error_is_the_error_of_the_exact_moments(method):
    """``gaussian_law_error`` (analysis layer) = |mean - m| + |var - v| from this file's own moments, and
    ``gaussian_pathwise_error`` = the max error against this file's closed-form map."""
    p, n = PROCS["vp"], 8
    mean, var = _exact_output_law(method, p, n)
    m, v = _marginal(p, p.t_min)
    want = abs(mean - float(m)) + abs(var - float(v))
    got = gaussian_law_error(_gauss1(p), method, ds.grids.logsnr_uniform(p, n))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    grid, x = ds.grids.logsnr_uniform(p, 16), p.prior_std * jr.normal(jr.key(2), (4, 2))
    out = ds.simulate(_gauss(p), "heun", grid, x=x, key=jr.key(1)).x
    want = float(jnp.max(jnp.abs(out - _exact_pf_map(p, x, p.t_max, p.t_min))))
    np.testing.assert_allclose(gaussian_pathwise_error(_gauss(p), "heun", grid, x), want, rtol=1e-12)
    with pytest.raises(ValueError, match="one-component"):
        two = ds.GaussianMixture(jnp.ones(2) / 2, jnp.zeros((2, 1)), jnp.ones((2, 1)))
        gaussian_law_error(two, method, jnp.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="1-D"):
        gaussian_law_error(_gauss(p), method, ds.grids.logsnr_uniform(p, 4))


# method -> (steps in the asymptotic regime, order measured on the Gaussian)
WEAK = {
    # local slopes (VP) 0.58, 0.75, 0.87, 0.93, 0.96, 0.98, 0.99 from 8 to 1024 steps
    "euler_ancestral": ((256, 512, 1024), 1.0),
    # 1.38, 1.73, 1.89, 1.95, 1.98, 1.99, 2.00
    "dpmpp_2s_ancestral": ((128, 256, 512), 2.0),
    # the 8-step error is small by cancellation (slope -4.2 to 16), then 1.93, 1.99, 2.00, ...
    "dpmpp_2m_sde": ((64, 128, 256), 2.0),
    # 3.24, 2.54, 2.21, 2.07, 2.02, 2.01, 2.00 (the start-up's first-order step takes over)
    "dpmpp_3m_sde": ((128, 256, 512), 2.0),
}


@pytest.mark.parametrize("proc", sorted(PROCS))
@pytest.mark.parametrize("method", sorted(WEAK))
def test_weak_order_in_law(method, proc):
    """Weak order from the exact output law (error of mean + error of variance vs steps).

    Euler ancestral and DPM-Solver++(2S) ancestral converge at their class's ``order`` (1 and 2: an
    ancestral step is an ODE step to ``sigma_down`` followed by exact Gaussian noise, which maps
    ``p_{sigma_down}`` to ``p_{sigma_next}`` for any data, so the weak order is the ODE step's). The
    multistep SDE solvers (2M) and (3M) converge at order 2 on a Gaussian, above their declared general
    weak order 1 (the Gaussian's affine denoiser makes their linear extrapolation of ``D`` exact in mean;
    no proof of weak order 2 for general data is known to us), and (3M)'s first-order start-up step caps it
    at 2. The test asserts the Gaussian order, and that it is at least the declared one."""
    ns, gauss_order = WEAK[method]
    errs = _law_errors(method, PROCS[proc], ns)
    slope = _slope(ns, errs)
    declared = SAMPLER_REGISTRY[method].order
    assert abs(slope - gauss_order) < 0.1, (method, proc, errs, slope)
    assert slope > declared - 0.1, (method, proc, slope, declared)


@pytest.mark.parametrize("method", sorted(WEAK))
def test_exact_law_driver_is_simulate(method):
    """The scanned kernel with explicit normals is what ``simulate`` runs: with the normals ``simulate``
    draws by default (particle ``i``, step ``j``: row ``i`` of ``normal(fold_in(split(key)[1], j), (N, 1))``)
    it gives the same output."""
    p = PROCS["vp"]
    gm, n, key = _gauss1(p), 6, jr.key(3)
    grid = ds.grids.logsnr_uniform(p, n)
    x = jnp.array([[-1.0], [0.3], [2.0]])
    want = ds.simulate(gm, method, grid, x=x, key=key).x
    k_path = jr.split(key)[1]
    sampler = get_sampler(method).configure(n)
    z = jnp.stack([jr.normal(jr.fold_in(k_path, j), (x.shape[0], 1), jnp.float64) for j in range(n)])
    for i in range(x.shape[0]):
        zs = z[:, i]
        got = _run(sampler, gm, grid, sampler.init(grid[0], x[i]), zs)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want[i]), rtol=1e-12, atol=1e-12)


def test_exact_law_against_monte_carlo():
    """The exact output moments against 40,000 particles of ``simulate`` from the exact marginal at
    ``t_max`` (8 steps, DPM-Solver++(2M) SDE): within 4 standard errors."""
    p, n, n_part = PROCS["vp"], 8, 40_000
    mean, var = _exact_output_law("dpmpp_2m_sde", p, n)
    m0, v0 = _marginal(p, p.t_max)
    x = m0 + jnp.sqrt(v0) * jr.normal(jr.key(5), (n_part, 1))
    out = np.asarray(
        ds.simulate(_gauss1(p), "dpmpp_2m_sde", ds.grids.logsnr_uniform(p, n), x=x, key=jr.key(6)).x
    )
    assert abs(out.mean() - mean) < 4 * np.sqrt(var / n_part), (out.mean(), mean)
    assert abs(out.var() - var) < 4 * var * np.sqrt(2 / n_part), (out.var(), var)
