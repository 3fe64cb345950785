"""The Stable Diffusion protocol's structure on a discrete DDPM schedule (``analysis.windows._renoise``).

Independent routes: diffusers' own ``DDPMScheduler`` (``alphas_cumprod``, ``add_noise``) when torch and
diffusers are installed; the process's closed-form marginal ``alpha(t) x0 + sigma(t) eps`` at ``t = (tau + 1)
/ T``; and :func:`feature_retention` (the process's own forward law, the schedule as reverse grid) on an exact
mixture wrapped as an opaque denoiser, which must give the same retention within Monte-Carlo error (4
standard errors).
"""

import chex
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim as ds
from diffsim.analysis import windows as cw
from diffsim.sampling import grids
from diffsim.scores.adapters import CallableScore


AB = cw.ddpm_alphas_cumprod("linear", 1000, 1e-4, 0.02)
PROC = ds.VP.from_alpha_bar(AB)
TIMESTEPS = grids.diffusers_timesteps(10, 1000, "leading")


def _opaque(mix):
    def fn(x, t):
        return jax.vmap(mix.denoise)(t, x)

    return CallableScore(fn, mix.process, (2,), parametrisation="x0")


MIX = ds.GaussianMixture([0.5, 0.5], np.array([[1.5, 0.0], [-1.5, 0.0]]), 0.6, process=PROC)
OPAQUE = _opaque(MIX)


def _sign_classifier(x):
    return jnp.stack([x[:, 0], -x[:, 0]], axis=1)


def test_add_noise_is_the_process_marginal():
    x0 = jr.normal(jr.key(0), (5, 3, 2, 2))
    eps = jr.normal(jr.key(1), x0.shape)
    steps = np.array([0, 10, 250, 500, 999])
    got = cw.add_noise(AB, x0, eps, steps)
    t = grids.from_timesteps(PROC, steps)
    flat0, flate = x0.reshape(5, -1), eps.reshape(5, -1)
    want = PROC.alpha(t)[:, None] * flat0 + PROC.sigma(t)[:, None] * flate
    chex.assert_trees_all_close(got.reshape(5, -1), want, rtol=1e-9, atol=1e-12)
    # a scalar timestep serves every row
    one = cw.add_noise(AB, x0, eps, 250)
    chex.assert_trees_all_close(one[2], got[2], rtol=1e-12)


def test_add_noise_bad_input():
    x0 = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="timesteps"):
        cw.add_noise(AB, x0, x0, np.array([0, 1, 1000]))
    with pytest.raises(TypeError, match="timesteps"):
        cw.add_noise(AB, x0, x0, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="noise"):
        cw.add_noise(AB, x0, jnp.zeros((3, 5)), 1)
    with pytest.raises(ValueError, match="timesteps"):
        cw.add_noise(AB, x0, x0, np.array([0, 1]))
    with pytest.raises(ValueError, match="beta_schedule"):
        cw.ddpm_alphas_cumprod("cosine")


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_against_diffusers_ddpm_scheduler(schedule):
    torch = pytest.importorskip("torch", reason="torch is not installed (the 'torch' extra)")
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (the 'torch' extra)")
    sched = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule=schedule
    )
    ab = cw.ddpm_alphas_cumprod(schedule, 1000, 0.00085, 0.012)
    np.testing.assert_allclose(ab, sched.alphas_cumprod.numpy(), rtol=2e-5)
    x0 = np.asarray(jr.normal(jr.key(2), (4, 1, 8, 8)), np.float32)
    eps = np.asarray(jr.normal(jr.key(3), (4, 1, 8, 8)), np.float32)
    steps = np.array([0, 37, 500, 999])
    want = sched.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), torch.from_numpy(steps)).numpy()
    got = cw.add_noise(sched.alphas_cumprod.numpy(), jnp.asarray(x0), jnp.asarray(eps), steps)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    # diffusers' img2img: noise to the first of the last k timesteps, then those k steps
    sched.set_timesteps(10)
    np.testing.assert_array_equal(sched.timesteps.numpy(), TIMESTEPS)


def test_renoise_retention_matches_feature_retention():
    """Same law by two routes: diffusers' add_noise + the schedule's last k steps vs feature_retention at
    T_hat = t(tau_{n-k}) with the schedule as grid (the process's own forward law)."""
    x0, labels = MIX.sample(jr.key(4), 150)
    x0, labels = np.asarray(x0), np.asarray(labels)  # component k is class k of the sign classifier
    ks = [2, 5, 8]
    got = cw.renoise_retention(
        OPAQUE,
        x0,
        ks,
        classifier=_sign_classifier,
        alphas_cumprod=AB,
        timesteps=TIMESTEPS,
        key=jr.key(5),
        n_repeats=4,
        labels=labels,
    )
    np.testing.assert_array_equal(got.start_timesteps, TIMESTEPS[10 - np.array(ks)])
    np.testing.assert_allclose(got.start_log_snr, np.asarray(PROC.log_snr(got.start_times)), rtol=1e-6)
    t_hats = np.asarray(grids.from_timesteps(PROC, got.start_timesteps))
    ref = cw.feature_retention(
        OPAQUE,
        x0,
        t_hats,
        classifier=_sign_classifier,
        key=jr.key(6),
        n_repeats=4,
        method="ddpm",
        grid=np.asarray(grids.from_timesteps(PROC, TIMESTEPS)),
        final_denoise=True,
        labels=labels,
        n_bootstrap=10,
    )
    tol = 4 * np.hypot(got.retention_stderr, ref.retention_stderr)
    assert np.all(np.abs(got.retention - ref.retention) <= tol), (got.retention, ref.retention, tol)
    # the window opens: almost every class is kept 2 steps before the end, about half at 8
    assert got.retention[0] > 0.9 and got.retention[-1] < got.retention[0] - 0.2


def test_renoise_denoise_one_step_is_the_denoiser():
    """k = 1: diffusers' single remaining step (to alpha_bar = 1) returns the x0 prediction of add_noise's
    output; the forward normals of row i are those of fold_in(k_noise, i)."""
    x0 = jnp.asarray(np.array([[1.0, 0.5], [-2.0, 0.3]]))
    key = jr.key(7)
    got = cw.renoise_denoise(OPAQUE, x0, 1, alphas_cumprod=AB, timesteps=TIMESTEPS, key=key, n_repeats=2)
    rows = jnp.repeat(x0, 2, axis=0)
    k_noise = jr.split(key)[0]
    eps = jnp.stack([jr.normal(jr.fold_in(k_noise, i), (2,), rows.dtype) for i in range(4)])
    tau = TIMESTEPS[-1]
    x_t = np.sqrt(AB[tau]) * rows + np.sqrt(1 - AB[tau]) * eps
    t = grids.from_timesteps(PROC, np.array([tau]))[0]
    want = jax.vmap(lambda xi: MIX.denoise(t, xi))(x_t)
    chex.assert_trees_all_close(got, want, rtol=1e-7, atol=1e-9)


def test_renoise_denoise_bad_input():
    x0 = jnp.zeros((3, 2))
    kw = dict(alphas_cumprod=AB, timesteps=TIMESTEPS, key=jr.key(0))
    with pytest.raises(ValueError, match="`k`"):
        cw.renoise_denoise(OPAQUE, x0, 11, **kw)
    with pytest.raises(ValueError, match="`k`"):
        cw.renoise_denoise(OPAQUE, x0, 0, **kw)
    with pytest.raises(ValueError, match="from_alpha_bar"):
        cw.renoise_denoise(
            _opaque(ds.GaussianMixture([1.0], np.zeros((1, 2)), 1.0, process=ds.VP.linear())), x0, 2, **kw
        )
    with pytest.raises(ValueError, match="strictly decreasing"):
        cw.renoise_denoise(OPAQUE, x0, 2, alphas_cumprod=AB, timesteps=TIMESTEPS[::-1], key=jr.key(0))
    with pytest.raises(ValueError, match="x0"):
        cw.renoise_denoise(OPAQUE, jnp.zeros((3, 5)), 2, **kw)
    with pytest.raises(ValueError, match="ks"):
        cw.renoise_retention(OPAQUE, x0, [2, 2], classifier=_sign_classifier, **kw)
