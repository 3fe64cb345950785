"""Adapters for external models: CallableScore (batched JAX), TorchScore (PyTorch bridge), diffusers
pipelines (parity with diffusers' own sampling loops), classifiers, and the errors raised before sampling.

Offline: the diffusers/transformers models are tiny, randomly initialised from configs and saved to
``tmp_path``. The torch-dependent tests skip when torch / diffusers / transformers are missing.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim
from diffsim.processes import VP
from diffsim.scores import ClassifierGuidance, GaussianMixture
from diffsim.scores.adapters import CallableClassifier, CallableScore


MEANS = np.array([[1.0, -0.5, 0.3, 0.0], [-1.2, 0.4, 0.0, 0.8], [0.2, 1.0, -1.0, 0.5]])
WEIGHTS = np.array([0.3, 0.5, 0.2])
VARS = np.array([0.2, 0.1, 0.3])
BETA_MIN, BETA_MAX = 0.1, 20.0


def _mixture(dtype=jnp.float64):
    return GaussianMixture(
        WEIGHTS, jnp.asarray(MEANS, dtype), jnp.asarray(VARS, dtype), process=VP.linear(BETA_MIN, BETA_MAX)
    )


def _jax_mixture_eps(x, t):
    """The exact eps prediction of the mixture, batched: x (B, d), t (B,)."""
    b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2
    a, s2 = jnp.exp(-b / 2)[:, None, None], (-jnp.expm1(-b))[:, None, None]
    c = a**2 * VARS[None, :, None] + s2  # (B, K, 1)
    diff = x[:, None, :] - a * MEANS[None]
    ell = jnp.log(WEIGHTS)[None] - 0.5 * jnp.sum(diff**2 / c, -1) - 0.5 * x.shape[1] * jnp.log(c[..., 0])
    r = jax.nn.softmax(ell, -1)
    score = -jnp.sum(r[..., None] * diff / c, 1)
    return (-jnp.sqrt(s2[:, :, 0]) * score).astype(x.dtype)


# =====================================================================================================
# (b) CallableScore: batched JAX callables
# =====================================================================================================
def test_callable_matches_mixture_and_one_call_per_step():
    mix = _mixture()
    calls = []

    def f(x, t):
        calls.append(x.shape)  # trace-time Python side effect: the batch the model is traced with
        jax.debug.callback(lambda: runtime.append(1))
        return _jax_mixture_eps(x, t)

    runtime = []
    sc = CallableScore(f, mix.process, (4,), parametrisation="eps", time_input="t")
    calls.clear(), runtime.clear()
    x0 = jr.normal(jr.key(1), (32, 4))
    a = diffsim.simulate(sc, "ddim", 20, x=x0, key=jr.key(2)).x
    b = diffsim.simulate(mix, "ddim", 20, x=x0, key=jr.key(2)).x
    np.testing.assert_allclose(a, b, atol=1e-10)
    # traced with the whole batch of 32 (plus a batch-1 shape trace), never per point; run once per step
    assert (32, 4) in calls and all(c in {(1, 4), (32, 4)} for c in calls)
    assert len(runtime) == 20
    # score, denoise, eps agree with the mixture at one point, also under jit and nested vmap
    x, t = x0[0], 0.37
    np.testing.assert_allclose(sc.score(t, x), mix.score(t, x), rtol=1e-10)
    np.testing.assert_allclose(sc.denoise(t, x), mix.denoise(t, x), rtol=1e-9, atol=1e-12)
    xs = x0.reshape(4, 8, 4)
    nested = jax.jit(jax.vmap(jax.vmap(sc.score, in_axes=(None, 0)), in_axes=(None, 0)))(t, xs)
    ref = jax.vmap(jax.vmap(mix.score, in_axes=(None, 0)), in_axes=(None, 0))(t, xs)
    np.testing.assert_allclose(nested, ref, rtol=1e-10)
    # derivatives are the model's own JAX derivatives (custom_jvp over custom_vmap)
    np.testing.assert_allclose(sc.hessian(t, x), mix.hessian(t, x), rtol=1e-8, atol=1e-10)
    g = jax.grad(lambda y: jnp.sum(jnp.sin(sc.score(t, y))))(x)
    g_ref = jax.grad(lambda y: jnp.sum(jnp.sin(mix.score(t, y))))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-8)


@pytest.mark.parametrize("kind", ["x0", "score", "v"])
def test_callable_parametrisations_and_time_inputs(kind):
    mix = _mixture()
    p = mix.process

    def f(x, t_in):
        t = p.t_from_log_snr(t_in)  # the model receives the log-SNR
        eps = _jax_mixture_eps(x, t)
        a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
        x0 = (x - s * eps) / a
        return {"x0": x0, "score": -eps / s, "v": a * eps - s * x0}[kind]

    sc = CallableScore(f, p, 4, parametrisation=kind, time_input="log_snr")
    x = jr.normal(jr.key(3), (4,))
    np.testing.assert_allclose(sc.score(0.4, x), mix.score(0.4, x), rtol=1e-8)


def test_event_shape_equinox_and_per_point():
    mix = GaussianMixture(
        np.array([0.5, 0.5]), np.stack([np.linspace(-1, 1, 16), np.linspace(1, -1, 16)]), 0.3, process=VP.ou()
    )

    class ImageModel(eqx.Module):  # an eqx.Module taking (B, 1, 4, 4) images
        scale: jax.Array

        def __call__(self, x, t):
            assert x.shape[1:] == (1, 4, 4)
            flat = x.reshape(x.shape[0], 16)
            eps = jax.vmap(mix.eps)(t, flat)
            return self.scale * eps.reshape(x.shape)

    model = ImageModel(jnp.ones(()))
    sc = CallableScore(model, mix.process, (1, 4, 4))
    assert sc.dim == 16
    run = diffsim.simulate(sc, "ddim", 10, n=16, key=jr.key(0))
    ref = diffsim.simulate(mix, "ddim", 10, n=16, key=jr.key(0))
    np.testing.assert_allclose(run.x, ref.x, atol=1e-10)
    # the array leaf of the Equinox module is differentiable through the batching rule
    g = jax.grad(
        lambda m: jnp.sum(CallableScore(m, mix.process, (1, 4, 4), check=False).score(0.5, run.x[0]))
    )(model)
    assert np.isfinite(g.scale)
    # a per-point model (batched=False) gives the same
    per_point = CallableScore(
        lambda x, t: mix.eps(t, x.reshape(16)).reshape(1, 4, 4), mix.process, (1, 4, 4), batched=False
    )
    np.testing.assert_allclose(per_point.score(0.5, run.x[0]), mix.score(0.5, run.x[0]), rtol=1e-10)


def test_flax_linen_matches_flaxscore():
    nn = pytest.importorskip("flax.linen")
    from diffsim.scores.nn import FlaxScore

    class Net(nn.Module):
        @nn.compact
        def __call__(self, t, x):  # FlaxScore's convention: one point, (t, x)
            h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t)[..., None], x.shape[:-1] + (1,))], -1)
            return nn.Dense(4)(jnp.tanh(nn.Dense(16)(h)))

    net = Net()
    params = net.init(jr.key(0), jnp.zeros((), jnp.float32), jnp.zeros(4, jnp.float32))
    p = VP.linear()
    ref = FlaxScore.from_linen(net, params, 4, process=p, time_input="log_snr")
    sc = CallableScore.from_flax_linen(_Swap(net), params, p, 4, time_input="log_snr")
    x = jr.normal(jr.key(1), (6, 4))
    np.testing.assert_allclose(
        jax.vmap(sc.score, in_axes=(None, 0))(0.3, x),
        jax.vmap(ref.score, in_axes=(None, 0))(0.3, x),
        rtol=1e-6,
    )


class _Swap:
    """A linen module called as apply(variables, x, t) for a net written as net(t, x)."""

    def __init__(self, net):
        self.net = net

    def apply(self, variables, x, t):
        return self.net.apply(variables, t, x)


def test_jax_classifier_guidance():
    mix = _mixture()
    from diffsim.scores import MixtureClassifier

    exact = MixtureClassifier(mix)
    clf = CallableClassifier(lambda x, t: jax.vmap(exact.log_probs)(t, x), mix.process, 4, 3)
    x = jr.normal(jr.key(4), (4,))
    np.testing.assert_allclose(clf.grad_log_prob(0.3, x, 1), exact.grad_log_prob(0.3, x, 1), rtol=1e-8)
    guided = ClassifierGuidance(mix, clf, 1, 2.0)
    np.testing.assert_allclose(
        guided.score(0.3, x), ClassifierGuidance(mix, exact, 1, 2.0).score(0.3, x), rtol=1e-8
    )


# =====================================================================================================
# (e) errors before sampling (JAX side)
# =====================================================================================================
def test_callable_errors():
    p = VP.linear()
    with pytest.raises(ValueError, match="Model output shape"):
        CallableScore(lambda x, t: x[:, :2], p, 4)
    with pytest.raises(TypeError, match="Model output dtype"):
        CallableScore(lambda x, t: x.astype(jnp.float16), p, 4)
    with pytest.raises(ValueError, match="non-finite"):
        CallableScore(lambda x, t: x * jnp.nan, p, 4)
    with pytest.raises(ValueError, match="parametrisation"):
        CallableScore(lambda x, t: x, p, 4, parametrisation="epsilon")
    with pytest.raises(ValueError, match="time_input"):
        CallableScore(lambda x, t: x, p, 4, time_input="step")
    with pytest.raises(ValueError, match="discrete schedule"):
        CallableScore(lambda x, t: x, p, 4, time_input="timestep")
    with pytest.raises(ValueError, match="event_shape"):
        CallableScore(lambda x, t: x, p, (0, 4))


# =====================================================================================================
# (a) the PyTorch bridge on a torch copy of the exact mixture
# =====================================================================================================
def _torch_mixture(torch, dtype):
    class TorchMixture(torch.nn.Module):
        """The mixture's exact eps prediction in torch: x (B, d), t (B,) diffsim time."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mu", torch.tensor(MEANS, dtype=dtype))
            self.register_buffer("logw", torch.log(torch.tensor(WEIGHTS, dtype=dtype)))
            self.register_buffer("var", torch.tensor(VARS, dtype=dtype))
            self.scale = torch.nn.Parameter(torch.ones((), dtype=dtype))

        def forward(self, x, t):
            b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2
            a, s2 = torch.exp(-b / 2)[:, None, None], (-torch.expm1(-b))[:, None, None]
            c = a**2 * self.var[None, :, None] + s2
            diff = x[:, None, :] - a * self.mu[None]
            ell = self.logw[None] - 0.5 * (diff**2 / c).sum(-1) - 0.5 * x.shape[1] * torch.log(c[..., 0])
            r = torch.softmax(ell, -1)
            score = -(r[..., None] * diff / c).sum(1)
            return -self.scale * torch.sqrt(s2[:, :, 0]) * score

    return TorchMixture()


# float32: torch and XLA round the same formulas in different orders; after 20 DDIM steps they differ by
# up to ~1.2e-6 absolute on samples of size ~2 (6.2e-7 relative), the float32 error of the torch formula
# against the float64 mixture (1.2e-6; XLA's float32 mixture: 5e-7).
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-6)])
def test_torch_bridge_equals_mixture(dtype, tol):
    torch = pytest.importorskip("torch")
    from diffsim.scores.adapters import TorchScore

    mix = _mixture(jnp.dtype(dtype))
    sc = TorchScore(_torch_mixture(torch, getattr(torch, dtype)), mix.process, (4,), dtype=dtype)
    x0 = jr.normal(jr.key(1), (64, 4), dtype=dtype)
    a = diffsim.simulate(sc, "ddim", 20, x=x0, key=jr.key(2)).x
    b = diffsim.simulate(mix, "ddim", 20, x=x0, key=jr.key(2)).x
    assert a.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(a, b, atol=tol, rtol=0)
    # relative to the size of the samples: 1e-6 in float32 (measured 6.2e-7: 1.21e-6 on samples of size 1.96)
    assert float(jnp.max(jnp.abs(a - b))) <= (1e-6 if dtype == "float32" else 1e-12) * float(
        jnp.max(jnp.abs(b))
    )
    # custom VJP (torch.autograd) == jax.grad of the JAX mixture; Hessian by reverse mode
    xs = x0[:5]
    f = lambda s: jax.vmap(jax.grad(lambda y: jnp.sum(jnp.sin(s.score(0.3, y)))))(xs)  # noqa: E731
    np.testing.assert_allclose(f(sc), f(mix), atol=10 * tol, rtol=10 * tol)
    np.testing.assert_allclose(sc.hessian(0.3, xs[0]), mix.hessian(0.3, xs[0]), atol=10 * tol, rtol=10 * tol)


def test_torch_classifier_guidance():
    torch = pytest.importorskip("torch")
    from diffsim.scores.adapters import TorchClassifier

    mix = _mixture()
    w = np.array([[1.0, -2.0, 0.5, 0.3], [0.1, 0.4, -1.0, 2.0], [-0.7, 0.2, 0.9, -0.4]])
    lin = torch.nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w)), lin.bias.zero_()
    clean = TorchClassifier(lin, mix.process, 4, 3, noisy=False, dtype="float64")
    jax_clean = CallableClassifier(lambda x: x @ w.T, mix.process, 4, 3, noisy=False)
    x = jr.normal(jr.key(5), (4,))
    np.testing.assert_allclose(clean.grad_log_prob(0.3, x, 2), jax_clean.grad_log_prob(0.3, x, 2), rtol=1e-10)
    # a clean classifier on Tweedie's x0_hat of a torch denoiser: the gradient crosses both torch models
    den = diffsim.scores.TorchScore(_torch_mixture(torch, torch.float64), mix.process, 4, dtype="float64")
    on_x0 = TorchClassifier(lin, mix.process, 4, 3, noisy=False, denoiser=den, dtype="float64")
    ref = CallableClassifier(lambda x: x @ w.T, mix.process, 4, 3, noisy=False, denoiser=mix)
    np.testing.assert_allclose(on_x0.grad_log_prob(0.3, x, 0), ref.grad_log_prob(0.3, x, 0), rtol=1e-8)
    guided = ClassifierGuidance(mix, on_x0, 0, 3.0)
    run = diffsim.simulate(guided, "ddim", 5, n=8, key=jr.key(0))
    assert np.all(np.isfinite(run.x))


def test_torch_errors():
    torch = pytest.importorskip("torch")
    from diffsim.scores.adapters import TorchScore

    p = VP.linear()

    class Bad(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, t):
            return self.fn(x)

    with pytest.raises(Exception, match="Torch model output shape"):
        TorchScore(Bad(lambda x: x[:, :2]), p, 4)
    with pytest.raises(Exception, match="Torch model output dtype"):
        TorchScore(Bad(lambda x: x.double()), p, 4)
    with pytest.raises(ValueError, match="non-finite"):
        TorchScore(Bad(lambda x: x * float("nan")), p, 4)
    with pytest.raises(TypeError, match="Torch module dtype"):
        TorchScore(Bad(lambda x: x).double(), p, 4, dtype="float32")
    sc = TorchScore(Bad(lambda x: x), p, 4, dtype="float32")
    with pytest.raises(TypeError, match="State dtype"):
        sc.score(0.5, jnp.zeros(4, jnp.float64))


# =====================================================================================================
# (c, d) diffusers: tiny models saved to disk, loaded back, parity with diffusers' own loops
# =====================================================================================================
N_STEPS = 10  # "trailing" spacing: timesteps 999, 899, ..., 99 (1000 divisible by 10)


def _scheduler(kind="ddim", prediction_type="epsilon"):
    diffusers = pytest.importorskip("diffusers")
    kw = dict(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        timestep_spacing="trailing",
    )
    if kind == "ddim":
        return diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **kw)
    return diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **kw)


PROMPT_IDS = np.array([0, 5, 17, 33, 1, 1, 1, 1])  # token ids instead of a downloaded tokenizer
EMPTY_IDS = np.array([0, 1, 1, 1, 1, 1, 1, 1])


def _diffsim_noise(key, n, step, shape, dtype):
    """The standard normals simulate draws by default (``noise="counter"``, one draw per step) for particles
    0..n-1 at a step: the rows of ``normal(fold_in(k_path, step), (n, *shape))``."""
    k_path = jr.split(key)[1]
    return np.asarray(jr.normal(jr.fold_in(k_path, step), (n, *shape), dtype))


def _diffusers_loop(torch, unet, sched, x, eta, noises, embeds=None, scale=None):
    """diffusers' own sampling loop (as in its pipelines), with given initial and per-step noise."""
    sched.set_timesteps(N_STEPS)
    x = torch.from_numpy(x)
    for i, t in enumerate(sched.timesteps):
        with torch.no_grad():
            if embeds is None:
                eps = unet(x, t).sample
            else:
                u, c = embeds
                n = x.shape[0]
                hs = torch.cat([u.expand(n, -1, -1), c.expand(n, -1, -1)])
                eps_u, eps_c = unet(torch.cat([x, x]), t, encoder_hidden_states=hs).sample.chunk(2)
                eps = eps_u + scale * (eps_c - eps_u)
        if eta is None:  # DPM-Solver++(2M)
            x = sched.step(eps, t, x).prev_sample
        else:
            vn = None if noises is None or i >= len(noises) else torch.from_numpy(noises[i])
            x = sched.step(eps, t, x, eta=eta, variance_noise=vn).prev_sample
    return x.numpy()


def _assert_parity(out, ref):
    """1e-5 in float32 relative to the size of the sample: the random tiny UNets' final x0 predictions reach
    |x| ~ 70, where one float32 ulp is 8e-6; diffsim and diffusers agree to a few ulps (rel. < 1e-6)."""
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(out - ref)))
    assert err <= 1e-5 * scale, (err, scale)


def _diffsim_run(score, sched, x0_flat, method, key, **opts):
    """diffsim on the scheduler's timesteps (t = (n+1)/N), then the final step to sigma = 0 by hand:
    diffusers' last DDIM / DPM-Solver++ step (to alpha_bar = 1) is exactly Tweedie's x0_hat."""
    sched.set_timesteps(N_STEPS)
    ts = (np.asarray(sched.timesteps, dtype=np.float64) + 1.0) / sched.config.num_train_timesteps
    x = diffsim.simulate(score, method, jnp.asarray(ts), x=x0_flat, key=key, **opts).x
    return np.asarray(jax.vmap(score.denoise, in_axes=(None, 0))(ts[-1], x))


@pytest.mark.parametrize("method, eta", [("ddim", 0.0), ("ddim", 1.0), ("dpm_solver_2m", None)])
def test_unet2d_parity_with_diffusers(tmp_path, method, eta):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from diffsim.scores.adapters import from_diffusers

    torch.manual_seed(1)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    unet.save_pretrained(tmp_path / "unet")
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "unet", local_files_only=True)
    sched = _scheduler("ddim" if method == "ddim" else "dpm")
    score = from_diffusers(unet, sched)
    assert score.event_shape == (1, 8, 8) and score.parametrisation == "eps"
    n, key = 4, jr.key(3)
    x_init = np.asarray(jr.normal(jr.key(7), (n, 64), jnp.float32))
    noises = [_diffsim_noise(key, n, j, (64,), jnp.float32).reshape(n, 1, 8, 8) for j in range(N_STEPS)]
    ref = _diffusers_loop(torch, unet, sched, x_init.reshape(n, 1, 8, 8), eta, noises if eta else None)
    opts = {} if eta is None else {"eta": eta}
    out = _diffsim_run(score, sched, jnp.asarray(x_init), method, key, **opts)
    _assert_parity(out, ref.reshape(n, 64))


@pytest.mark.parametrize("method, eta", [("ddim", 0.0), ("ddim", 1.0), ("dpm_solver_2m", None)])
def test_text_conditional_cfg_parity(tiny_pipeline, method, eta):
    torch = pytest.importorskip("torch")
    from diffsim.scores import ClassifierFreeGuidance
    from diffsim.scores.adapters import DiffusersPipeline, from_diffusers

    pipe = DiffusersPipeline.load(tiny_pipeline)
    if method != "ddim":
        pipe = DiffusersPipeline(pipe.unet, _scheduler("dpm"), text_encoder=pipe.text_encoder, vae=pipe.vae)
    guided = from_diffusers(pipe, prompt=PROMPT_IDS, negative_prompt=EMPTY_IDS, guidance_scale=7.5)
    assert isinstance(guided, ClassifierFreeGuidance)
    emb_c, emb_u = pipe.encode_prompt(PROMPT_IDS), pipe.encode_prompt(EMPTY_IDS)
    assert emb_c.shape == (8, 16)
    n, key = 3, jr.key(11)
    x_init = np.asarray(jr.normal(jr.key(8), (n, 64), jnp.float32))
    noises = [_diffsim_noise(key, n, j, (64,), jnp.float32).reshape(n, 1, 8, 8) for j in range(N_STEPS)]
    embeds = (torch.from_numpy(np.asarray(emb_u))[None], torch.from_numpy(np.asarray(emb_c))[None])
    ref = _diffusers_loop(
        torch, pipe.unet, pipe.scheduler, x_init.reshape(n, 1, 8, 8), eta, noises, embeds, 7.5
    )
    opts = {} if eta is None else {"eta": eta}
    out = _diffsim_run(guided, pipe.scheduler, jnp.asarray(x_init), method, key, **opts)
    _assert_parity(out, ref.reshape(n, 64))
    # unconditional (prompt) branch alone
    cond = pipe.score(PROMPT_IDS)
    ref_c = _diffusers_loop(
        torch, pipe.unet, pipe.scheduler, x_init.reshape(n, 1, 8, 8), eta, noises, embeds, 1.0
    )
    out_c = _diffsim_run(cond, pipe.scheduler, jnp.asarray(x_init), method, key, **opts)
    _assert_parity(out_c, ref_c.reshape(n, 64))


def test_pipeline_worked_example(tiny_pipeline):
    """The code of docs/your-own-model.md's Stable Diffusion example, on the tiny pipeline."""
    pytest.importorskip("diffusers")
    from diffsim.scores.adapters import load_pipeline

    pipe = load_pipeline(tiny_pipeline, dtype="float32", device="cpu")
    guided = pipe.guided(PROMPT_IDS, 7.5, negative_prompt=EMPTY_IDS)  # with a tokenizer: "a prompt", ""
    pipe.scheduler.set_timesteps(10)
    grid = pipe.times(pipe.scheduler.timesteps.numpy())
    x_T = jr.normal(jr.key(1), (2, guided.dim), jnp.float32)  # the pipeline runs in float32
    run = diffsim.simulate(guided, "ddim", grid, x=x_T, key=jr.key(0), save="all")
    x0 = jax.vmap(guided.denoise, in_axes=(None, 0))(grid[-1], run.x)
    images = pipe.decode(x0)
    assert run.xs.shape == (10, 2, 64) and images.shape == (2, 8, 8, 3)
    assert np.all((images >= 0) & (images <= 1))


def test_diffusers_errors(tiny_pipeline, tmp_path):
    pytest.importorskip("diffusers")
    import shutil

    from diffsim.scores.adapters import DiffusersPipeline, from_diffusers, parametrisation_from_scheduler

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(FileNotFoundError, match="'unet'"):
        DiffusersPipeline.load(broken)
    with pytest.raises(FileNotFoundError, match="'tokenizer'"):
        DiffusersPipeline.load(tiny_pipeline, components=["tokenizer"])
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        parametrisation_from_scheduler("flow")
    pipe = DiffusersPipeline.load(tiny_pipeline)
    bad = _scheduler(prediction_type="epsilon")
    bad.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="Unknown diffusers prediction_type"):
        from_diffusers(pipe.unet, bad)
    with pytest.raises(ValueError, match="text-conditional"):
        pipe.score()
    with pytest.raises(ValueError, match="no tokenizer"):
        pipe.score("a prompt")
