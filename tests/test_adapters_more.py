"""The PyTorch bridge beyond one reverse-mode derivative: forward mode (``jax.jvp``, ``jacfwd``, matrix-free
Hessian-vector products), derivatives in time, one doubled-batch torch call for classifier-free guidance,
and a noisy torch classifier guiding ``simulate``. Every check is against diffsim's exact JAX mixture.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsim
from diffsim.analysis import hessian_vector_product
from diffsim.processes import VP
from diffsim.scores import ClassifierFreeGuidance, ClassifierGuidance, MixtureClassifier, guided_mixture


torch = pytest.importorskip("torch", reason="the PyTorch bridge needs the optional extra torch")

from diffsim.scores.adapters import TorchClassifier, TorchScore  # noqa: E402


MEANS = np.array([[1.0, -0.5, 0.3, 0.0], [-1.2, 0.4, 0.0, 0.8], [0.2, 1.0, -1.0, 0.5]])
WEIGHTS = np.array([0.3, 0.5, 0.2])
VARS = np.array([0.2, 0.1, 0.3])
BETA_MIN, BETA_MAX = 0.1, 20.0
T = 0.3


def _mixture(dtype=jnp.float64, weights=WEIGHTS):
    return diffsim.scores.GaussianMixture(
        jnp.asarray(weights, dtype),
        jnp.asarray(MEANS, dtype),
        jnp.asarray(VARS, dtype),
        process=VP.linear(BETA_MIN, BETA_MAX),
    )


class TorchMixture(torch.nn.Module):
    """The mixture in torch at diffsim time ``t``: eps prediction ``forward(x, t[, weights])`` (the
    optional condition is the component weights: a label's one-hot weights give the class-conditional
    score) or, with ``logits=True``, the noisy classifier's logits ``log pi_k + log N_k(x)``."""

    def __init__(self, dtype, logits=False):
        super().__init__()
        self.register_buffer("mu", torch.tensor(MEANS, dtype=dtype))
        self.register_buffer("w", torch.tensor(WEIGHTS, dtype=dtype))
        self.register_buffer("var", torch.tensor(VARS, dtype=dtype))
        self.logits = logits
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x, t, weights=None):
        self.calls.append(tuple(x.shape))
        w = self.w[None] if weights is None else weights
        b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2
        a, s2 = torch.exp(-b / 2)[:, None, None], (-torch.expm1(-b))[:, None, None]
        c = a**2 * self.var[None, :, None] + s2  # (B, K, 1)
        diff = x[:, None, :] - a * self.mu[None]
        ell = torch.log(w) - 0.5 * (diff**2 / c).sum(-1) - 0.5 * x.shape[1] * torch.log(c[..., 0])
        if self.logits:
            return ell
        r = torch.softmax(ell, -1)
        score = -(r[..., None] * diff / c).sum(1)
        return -torch.sqrt(s2[:, :, 0]) * score


def _err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)))


@pytest.fixture(scope="module")
def pair():
    mix = _mixture()
    return mix, TorchScore(TorchMixture(torch.float64), mix.process, (4,), dtype="float64")


# =====================================================================================================
# 1. forward mode through the bridge
# =====================================================================================================
def test_forward_mode_matches_mixture(pair):
    mix, sc = pair
    x, v = jr.normal(jr.key(1), (4,)), jr.normal(jr.key(2), (4,))
    jvp = lambda s: jax.jvp(lambda y: s.score(T, y), (x,), (v,))[1]  # noqa: E731
    np.testing.assert_allclose(jvp(sc), jvp(mix), atol=1e-10, rtol=0)
    # jacfwd, vmapped over points and jitted (one batched torch JVP), and jacrev agree with the Hessian
    xs = jr.normal(jr.key(3), (5, 4))
    fwd = jax.jit(jax.vmap(jax.jacfwd(lambda y: sc.score(T, y))))(xs)
    ref = jax.vmap(mix.hessian, in_axes=(None, 0))(T, xs)
    np.testing.assert_allclose(fwd, ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(jax.jacrev(lambda y: sc.score(T, y))(x), mix.hessian(T, x), atol=1e-10, rtol=0)
    # matrix-free Hessian-vector products of the ridge analysis, forward mode, a block of 3 directions
    block = jr.normal(jr.key(4), (4, 3))
    hvp = hessian_vector_product(sc, T, x, block, mode="forward")
    np.testing.assert_allclose(hvp, mix.hessian(T, x) @ block, atol=1e-10, rtol=0)
    np.testing.assert_allclose(hessian_vector_product(sc, T, x, block, mode="reverse"), hvp, atol=1e-10)
    # jvp of the bridge's own derivative (second order) is not available: a clear error, not a wrong number
    with pytest.raises(NotImplementedError, match="Second derivatives through the PyTorch bridge"):
        jax.hessian(lambda y: jnp.sum(sc.score(T, y) ** 2))(x)


# =====================================================================================================
# 2. derivatives in time
# =====================================================================================================
@pytest.mark.parametrize("time_input", ["t", "log_snr", "sigma"])
def test_time_derivative_matches_mixture(time_input):
    mix = _mixture()
    p = mix.process
    model = TorchMixture(torch.float64)

    def call(module, x, t_in, cond):  # the module takes diffsim time: invert the time input in torch
        if time_input == "log_snr":
            t_in = _torch_t_from_log_snr(t_in)
        elif time_input == "sigma":
            t_in = _torch_t_from_log_snr(-2.0 * torch.log(t_in))
        return module(x, t_in)

    sc = TorchScore(model, p, (4,), time_input=time_input, dtype="float64", call=call)
    x = jr.normal(jr.key(5), (4,))
    d_fwd = jax.jacfwd(lambda s: sc.score(s, x))(T)
    d_ref = jax.jacfwd(lambda s: mix.score(s, x))(T)
    np.testing.assert_allclose(d_fwd, d_ref, atol=1e-10 * max(1.0, float(jnp.max(jnp.abs(d_ref)))), rtol=0)
    d_rev = jax.jacrev(lambda s: sc.score(s, x))(T)
    np.testing.assert_allclose(d_rev, d_ref, atol=1e-10 * max(1.0, float(jnp.max(jnp.abs(d_ref)))), rtol=0)


def _torch_t_from_log_snr(lam):
    """Inverse of the linear VP's log-SNR in torch: ``b(t) = log(1 + e^{-lam})``, a quadratic in ``t``."""
    b = torch.nn.functional.softplus(-lam)
    return (-BETA_MIN + torch.sqrt(BETA_MIN**2 + 2.0 * (BETA_MAX - BETA_MIN) * b)) / (BETA_MAX - BETA_MIN)


def test_time_derivative_timestep_model_raises():
    betas = np.linspace(1e-4, 0.02, 1000)
    p = VP.from_alpha_bar(np.cumprod(1.0 - betas))

    class Eps(torch.nn.Module):
        def forward(self, x, t):
            return 0.1 * x * torch.cos(t / 1000.0)[:, None]

    sc = TorchScore(Eps(), p, (4,), time_input="timestep", dtype="float64")
    x = jr.normal(jr.key(6), (4,))
    assert np.all(np.isfinite(jax.jacfwd(lambda y: sc.score(0.5, y))(x)))  # d/dx is fine
    for transform in (jax.jacfwd, jax.jacrev):
        with pytest.raises(ValueError, match="integer timesteps"):
            transform(lambda s: sc.score(s, x))(0.5)


# =====================================================================================================
# 3. classifier-free guidance: one torch call of the doubled batch
# =====================================================================================================
def _cfg_pair(dtype, label=1, scale=3.0):
    model = TorchMixture(getattr(torch, dtype))
    mix = _mixture(jnp.dtype(dtype))
    onehot = np.eye(3)[label]
    kw = dict(dtype=dtype)
    uncond = TorchScore(model, mix.process, (4,), cond=jnp.asarray(WEIGHTS, dtype), **kw)
    cond = TorchScore(model, mix.process, (4,), cond=jnp.asarray(onehot, dtype), **kw)
    guided = ClassifierFreeGuidance(uncond, cond, scale)
    two_calls = copy.copy(guided)
    object.__setattr__(two_calls, "joint", False)
    return model, mix, guided, two_calls


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cfg_one_doubled_call(dtype):
    model, mix, guided, two_calls = _cfg_pair(dtype)
    assert guided.joint and not two_calls.joint
    n, steps = 16, 6
    x0 = jr.normal(jr.key(7), (n, 4), dtype=dtype)
    model.calls.clear()
    a = diffsim.simulate(guided, "ddim", steps, x=x0, key=jr.key(8)).x
    joint_calls = list(model.calls)
    model.calls.clear()
    b = diffsim.simulate(two_calls, "ddim", steps, x=x0, key=jr.key(8)).x
    assert joint_calls == [(2 * n, 4)] * steps  # ONE torch call per step, batch 2N
    assert model.calls == [(n, 4)] * (2 * steps)  # the two-branch path: two calls of batch N
    # every prediction kind of one point equals the two-call combination. float32: the doubled call returns
    # the state's dtype (w cast to float32) where the two-call path promotes to float64 with the float64
    # scale: one float32 ulp apart (measured 1.2e-7 on |s| ~ 2.3)
    x = x0[0]
    for method in ("score", "denoise", "eps", "v_prediction"):
        u, ref = getattr(guided, method)(0.4, x), getattr(two_calls, method)(0.4, x)
        assert u.dtype == x.dtype
        tol = 1e-12 if dtype == "float64" else 2 * float(jnp.finfo(jnp.float32).eps)
        assert _err(u, ref) <= tol * max(1.0, float(jnp.max(jnp.abs(ref)))), (method, _err(u, ref))
    if dtype == "float64":
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
        exact = guided_mixture(mix, 1, 3.0, kind="cfg")
        c = diffsim.simulate(exact, "ddim", steps, x=x0, key=jr.key(8)).x
        np.testing.assert_allclose(a, c, atol=1e-10, rtol=0)
    else:
        # float32, after 6 DDIM steps: measured below 1e-6 relative to the samples (a few ulps)
        assert _err(a, b) <= 1e-6 * float(jnp.max(jnp.abs(b))), _err(a, b)


def test_cfg_pairs_only_same_module():
    model, mix, guided, _ = _cfg_pair("float64")
    other = TorchScore(TorchMixture(torch.float64), mix.process, (4,), dtype="float64", cond=jnp.ones(3) / 3)
    assert not ClassifierFreeGuidance(other, guided.conditional, 2.0).joint
    no_cond = TorchScore(model, mix.process, (4,), dtype="float64")
    assert not ClassifierFreeGuidance(no_cond, guided.conditional, 2.0).joint


def test_cfg_doubled_call_tiny_pipeline(tiny_pipeline):
    """The text-conditional tiny UNet (float32): the doubled batch against two calls."""
    from diffsim.scores.adapters import DiffusersPipeline

    pipe = DiffusersPipeline.load(tiny_pipeline)
    guided = pipe.guided(np.array([0, 5, 17, 33, 1, 1, 1, 1]), 7.5, negative_prompt=np.array([0] + [1] * 7))
    assert guided.joint
    two_calls = copy.copy(guided)
    object.__setattr__(two_calls, "joint", False)
    x = jr.normal(jr.key(9), (3, guided.dim), jnp.float32)
    a = jax.vmap(guided.eps, in_axes=(None, 0))(0.5, x)
    b = jax.vmap(two_calls.eps, in_axes=(None, 0))(0.5, x)
    # measured 8.9e-8 on |eps| ~ 2.5 (batch 8): a float32 ulp or two (the conv kernels block a batch of 2N
    # and of N differently)
    assert _err(a, b) <= 1e-5 * max(1.0, float(jnp.max(jnp.abs(b)))), _err(a, b)
    # forward mode through the UNet (attention on the math SDPA kernel): the adjoint identity
    # <v, J u> = <J^T v, u> against reverse mode (torch.autograd); measured 1.400143 vs 1.400141 (float32)
    sc, xp = guided.conditional, x[0]
    u, v = jr.normal(jr.key(1), xp.shape, jnp.float32), jr.normal(jr.key(2), xp.shape, jnp.float32)
    ju = jax.jvp(lambda y: sc.eps(0.5, y), (xp,), (u,))[1]
    jtv = jax.vjp(lambda y: sc.eps(0.5, y), xp)[1](v)[0]
    lhs, rhs = float(jnp.vdot(v, ju)), float(jnp.vdot(jtv, u))
    assert abs(lhs - rhs) <= 1e-4 * (float(jnp.linalg.norm(v) * jnp.linalg.norm(ju)) + 1.0), (lhs, rhs)


# =====================================================================================================
# 4. a noisy torch classifier guiding simulate
# =====================================================================================================
def test_noisy_torch_classifier_guidance():
    mix = _mixture()
    exact = MixtureClassifier(mix)
    clf = TorchClassifier(
        TorchMixture(torch.float64, logits=True), mix.process, 4, 3, noisy=True, dtype="float64"
    )
    x = jr.normal(jr.key(10), (4,))
    np.testing.assert_allclose(clf.log_probs(T, x), exact.log_probs(T, x), atol=1e-12, rtol=0)
    for y in (0, 1, 2):
        np.testing.assert_allclose(
            clf.grad_log_prob(T, x, y), exact.grad_log_prob(T, x, y), atol=1e-10, rtol=0
        )
    # d/dt of log p_t(y | x) through the bridge (an output of 3 logits for an input of 4: padded tangents)
    dt = jax.grad(lambda s: clf.log_prob(s, x, 1))(T)
    np.testing.assert_allclose(dt, jax.grad(lambda s: exact.log_prob(s, x, 1))(T), atol=1e-10, rtol=0)
    # classifier guidance in simulate: DDIM and the stochastic DDPM sampler
    for method in ("ddim", "euler_maruyama"):
        a = diffsim.simulate(ClassifierGuidance(mix, clf, 1, 2.0), method, 10, n=16, key=jr.key(11)).x
        b = diffsim.simulate(ClassifierGuidance(mix, exact, 1, 2.0), method, 10, n=16, key=jr.key(11)).x
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
    # the Laplacian of log p_t(y|x) is a second derivative of the torch model: a clear error
    with pytest.raises(NotImplementedError, match="Second derivatives"):
        clf.laplacian_log_prob(T, x, 1)
