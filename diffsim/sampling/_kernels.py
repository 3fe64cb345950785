r"""Fixed-grid samplers as pure ``init`` / ``step`` kernels (BlackJAX style).

A sampler is an Equinox module (an :class:`~diffsim.sampling.AbstractFixedSampler`) with

- ``init(t0, x) -> state`` for one particle ``x`` of shape ``(d,)`` at time ``t0``;
- ``step(key, state, t, t_next, score) -> state``, one step of the grid (``t_next < t`` for reverse
  samplers, ``t_next > t`` for forward noising);
- ``position(state) -> x``;

and class-level metadata (``name``, ``order``, ``stochastic``, ``noise_draws``; see
:mod:`diffsim.sampling._registry`, where defining the class registers it).

:func:`diffsim.simulate` runs ``step`` inside one ``lax.scan``, ``vmap``-ed over particles, with a
per-particle, per-step key, so results do not depend on batching, chunking or sharding.

Notation: ``a = alpha(t)``, ``s = sigma(t)``, ``a_n, s_n`` the same at ``t_next``; ``x0_hat`` the Tweedie
denoiser; ``sigma_tilde = s / a`` (EDM's noise level); ``lambda = log(a / s)`` (DPM-Solver's half log-SNR).

+-------------------+---------------------------------------------+-------+-------------------------------+
| name              | method                                      | order | reference                     |
+===================+=============================================+=======+===============================+
| ``euler_maruyama``| Euler-Maruyama on the reverse SDE           | 1 (w) | Song et al. 2021              |
| ``ddpm``          | ancestral sampling (posterior q(x_n|x_t,x0))| 1 (w) | Ho et al. 2020                |
| ``ddim``          | DDIM with ``eta`` (0: PF-ODE exp. integrator)| 1    | Song, Meng & Ermon 2021       |
| ``euler``         | Euler on the PF-ODE in ``t``                | 1     | Song et al. 2021              |
| ``heun``          | EDM Heun in ``(x/a, sigma_tilde)``, churn   | 2     | Karras et al. 2022, Alg. 2    |
| ``dpm_solver_2m`` | DPM-Solver++(2M), data prediction           | 2     | Lu et al. 2022b, Alg. 2       |
| ``pc``            | EM predictor + Langevin corrector (SNR rule)| 1 (w) | Song et al. 2021, Alg. 2-3    |
| ``forward``       | exact forward transition kernel             | exact | closed form                   |
| ``forward_em``    | Euler-Maruyama on the forward SDE           | 1 (w) | --                            |
+-------------------+---------------------------------------------+-------+-------------------------------+

Orders are pathwise (PF-ODE) orders for deterministic samplers and weak orders (w) for stochastic ones.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validation import is_concrete
from ..processes import DiscreteSchedule
from ._noise import normal_like, split_noise
from ._registry import AbstractFixedSampler, State, check_option, resolve_noisy


__all__ = [
    "DDIM",
    "DDPM",
    "DPMSolver2M",
    "Euler",
    "EulerMaruyama",
    "ForwardEulerMaruyama",
    "ForwardExact",
    "Heun",
    "PredictorCorrector",
]


# --- reverse SDE -----------------------------------------------------------------------------------
class EulerMaruyama(AbstractFixedSampler):
    r"""Euler-Maruyama on the reverse SDE ``dx = [f x - g^2 s] dt + g dW_bar`` with ``dt = t_next - t < 0``:

    x_next = x + (f(t) x - g(t)^2 s(t, x)) dt + g(t) sqrt(-dt) z.
    """

    name: ClassVar[str] = "euler_maruyama"
    order: ClassVar[float] = 1.0  # weak
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 1

    def step(self, key, state, t, t_next, score):
        x = state.x
        dt = t_next - t
        g = score.process.diffusion(t)
        return State(x + score.reverse_drift(t, x) * dt + g * jnp.sqrt(-dt) * normal_like(key, x))


class DDIM(AbstractFixedSampler):
    r"""DDIM (Song, Meng & Ermon 2021) for any process, with stochasticity ``eta in [0, 1]``.

        x0 = x0_hat(t, x),  eps = (x - a x0) / s,
        c = eta (s_n / s) b,  b^2 = Var(x_t | x_{t_next}) (the transition variance),
        x_next = a_n x0 + sqrt(s_n^2 - c^2) eps + c z.

    ``eta = 0`` is the first-order exponential integrator of the PF-ODE (= Euler in ``(x/a, s/a)``);
    ``eta = 1`` is DDPM's ancestral step (the exact Gaussian posterior ``q(x_{t_next} | x_t, x0_hat)``).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        eta: stochasticity in ``[0, 1]`` (default 0, deterministic); a Python number or a JAX scalar (traced,
            so a sweep over it compiles once).
        noisy: whether the kernel draws noise (static); ``None`` (default) derives it from ``eta > 0``; set
            ``True`` to keep the stochastic kernel for a traced ``eta`` that may be 0 (then it adds zero
            noise). A value contradicting a concrete ``eta`` raises ``ValueError``.
    """

    eta: float | Array = 0.0
    noisy: bool | None = eqx.field(default=None, static=True, repr=False)  # eta > 0; set from eta
    name: ClassVar[str] = "ddim"
    order: ClassVar[float] = 1.0  # pathwise with eta = 0, weak otherwise
    stochastic: ClassVar[bool] = False  # with the default eta = 0; see is_stochastic()
    noise_draws: ClassVar[int] = 0

    def __post_init__(self):
        self.noisy = resolve_noisy(self.noisy, self.eta, "eta")

    def __check_init__(self):
        check_option(self.eta, lambda v: 0.0 <= v <= 1.0, f"DDIM `eta` must lie in [0, 1], got {self.eta}.")

    def is_stochastic(self) -> bool:
        return self.noisy

    def draws_per_step(self) -> int:
        return int(self.is_stochastic())

    def step(self, key, state, t, t_next, score):
        x = state.x
        p = score.process
        a, s = p.alpha(t), p.sigma(t)
        a_n, s_n = p.alpha(t_next), p.sigma(t_next)
        x0 = score.denoise(t, x)
        eps = (x - a * x0) / s
        c = self.eta * (s_n / s) * jnp.sqrt(p.transition_var(t_next, t))
        det = jnp.sqrt(jnp.maximum(s_n**2 - c**2, 0.0))
        x_next = a_n * x0 + det * eps
        if self.noisy:
            x_next = x_next + c * normal_like(key, x)
        return State(x_next)


class DDPM(DDIM):
    """Ancestral sampling (Ho et al. 2020): :class:`DDIM` with ``eta = 1``.

    Constructor arguments, kept as the instance's fields:

    Attributes:
        eta: stochasticity in ``[0, 1]``, default 1 (the ancestral step); other values give :class:`DDIM`'s
            step.
        noisy: whether the kernel draws noise (static); ``None`` (default) derives it from ``eta > 0``; set
            ``True`` to keep the stochastic kernel for a traced ``eta`` that may be 0 (then it adds zero
            noise). A value contradicting a concrete ``eta`` raises ``ValueError``.
    """

    eta: float | Array = 1.0
    name: ClassVar[str] = "ddpm"
    order: ClassVar[float] = 1.0  # weak
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 1


# --- probability-flow ODE -------------------------------------------------------------------------------
class Euler(AbstractFixedSampler):
    r"""Euler on the PF-ODE in ``t``: ``x_next = x + (f x - 1/2 g^2 s)(t_next - t)``. First order; the
    naive baseline for convergence studies (DDIM is the better first-order ODE method).

    This steps in diffusion time ``t``, not in the noise level: it is **not** k-diffusion's
    ``sample_euler`` (Euler in ``(x / alpha, sigma / alpha)``), which is :class:`DDIM` with ``eta = 0``
    (and :class:`Heun` steps in those variables too). On coarse Karras grids the two differ a lot."""

    name: ClassVar[str] = "euler"
    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = False
    noise_draws: ClassVar[int] = 0

    def step(self, key, state, t, t_next, score):
        del key
        return State(state.x + score.velocity(t, state.x) * (t_next - t))


def _sigma_tilde(p, t):
    return jnp.exp(-0.5 * p.log_snr(t))


class Heun(AbstractFixedSampler):
    r"""EDM's Heun sampler (Karras et al. 2022, Alg. 2) in the scaled variables ``y = x / a`` and
    ``sigma_tilde = s / a``, where the PF-ODE reads ``dy / d sigma_tilde = (y - D(y)) / sigma_tilde`` for
    any process (``D`` the Tweedie denoiser).

    Churn: with ``gamma = min(churn / n_steps, sqrt(2) - 1)`` when ``s_tmin <= sigma_tilde <= s_tmax``,
    the particle is first noised to ``sigma_hat = (1 + gamma) sigma_tilde`` (``y += sqrt(sigma_hat^2 -
    sigma_tilde^2) s_noise z``), i.e. moved forward in time exactly, then Heun-stepped to ``t_next``.
    Two score evaluations per step.

    ``convention`` picks how churn is counted:

    - ``"diffsim"`` (default, the numbers diffsim has always produced): ``gamma = min(churn / n_steps,
      sqrt(2) - 1)`` over the grid's own steps; a churned time past ``t_max`` is clamped to ``t_max`` (less
      noise is added), and :func:`~diffsim.simulate` warns when the grid makes that happen.
    - ``"k_diffusion"`` (``sample_heun``'s): ``gamma = min(churn / (n_steps + 1), sqrt(2) - 1)``, the
      denominator ``len(sigmas) - 1`` counting the step to ``sigma = 0``; no clamp (the churned noise level
      may exceed the process's at ``t_max``; its time is computed by the closed-form inverse, valid beyond
      ``t_max`` for VE and the continuous VP schedules; a discrete-schedule VP refuses such a grid); and
      with ``simulate(final_denoise=True)`` the last step to ``sigma = 0`` is churned too when ``s_tmin <=
      sigma_last <= s_tmax`` (k-diffusion churns it whenever ``s_tmin <= sigma_min``), then the denoiser
      at ``sigma_hat``. Use it with ``final_denoise=True`` to reproduce k-diffusion.

    Constructor arguments, kept as the instance's fields:

    Attributes:
        churn: total churn ``S_churn >= 0`` (default 0: deterministic Heun); spread over the steps as
            ``gamma`` above.
        s_tmin: lowest ``sigma_tilde`` at which a step is churned (default 0).
        s_tmax: highest ``sigma_tilde`` at which a step is churned (default ``inf``).
        s_noise: scale of the churn noise ``S_noise`` (default 1).
        gamma: the per-step churn factor; leave at 0, :meth:`configure` sets it from ``churn`` and the grid.
        convention: ``"diffsim"`` (default) or ``"k_diffusion"``, how churn is counted (above).
        noisy: whether the kernel draws noise (static); ``None`` (default) derives it from ``churn > 0``; set
            ``True`` to keep the stochastic kernel for a traced ``churn`` that may be 0 (then it adds zero
            noise). A value contradicting a concrete ``churn`` raises ``ValueError``.
    """

    churn: float | Array = 0.0
    s_tmin: float | Array = 0.0
    s_tmax: float | Array = math.inf
    s_noise: float | Array = 1.0
    gamma: float | Array = 0.0  # set by configure()
    convention: str = eqx.field(default="diffsim", static=True)
    noisy: bool | None = eqx.field(default=None, static=True, repr=False)  # churn > 0; set from churn
    name: ClassVar[str] = "heun"
    order: ClassVar[float] = 2.0  # pathwise, without churn
    stochastic: ClassVar[bool] = False  # with the default churn = 0; see is_stochastic()
    noise_draws: ClassVar[int] = 0

    def __post_init__(self):
        self.noisy = resolve_noisy(self.noisy, self.churn, "churn")

    def __check_init__(self):
        check_option(self.churn, lambda v: v >= 0, f"Heun `churn` must be >= 0, got {self.churn}.")
        if self.convention not in ("diffsim", "k_diffusion"):
            raise ValueError(
                f"Heun `convention` must be 'diffsim' or 'k_diffusion', got {self.convention!r}."
            )

    def is_stochastic(self) -> bool:
        return self.noisy

    def draws_per_step(self) -> int:
        return int(self.is_stochastic())

    def configure(self, n_steps: int) -> Heun:
        steps = n_steps + 1 if self.convention == "k_diffusion" else n_steps
        if isinstance(self.churn, (int, float)):  # a Python number: gamma is a compile-time constant
            gamma = min(float(self.churn) / steps, math.sqrt(2.0) - 1.0)
        else:  # an array (traced in simulate): gamma too, so a sweep over churn compiles once
            gamma = jnp.minimum(jnp.asarray(self.churn) / steps, math.sqrt(2.0) - 1.0)
        return eqx.tree_at(lambda h: h.gamma, self, gamma)

    def check_grid(self, score, ts) -> None:
        """Called by ``simulate`` with the concrete grid: say when churn moves a particle past ``t_max``."""
        if not self.is_stochastic() or not is_concrete((self.gamma, self.s_tmin, self.s_tmax)):
            return
        if float(self.gamma) <= 0:
            return
        p = score.process
        sig = np.exp(-0.5 * np.asarray(p.log_snr(ts[:-1]), dtype=np.float64))
        on = (sig >= self.s_tmin) & (sig <= self.s_tmax)
        t_hat = np.asarray(p.t_from_log_snr(-2.0 * np.log(sig * (1.0 + self.gamma))), dtype=np.float64)
        past = on & (t_hat > p.t_max * (1 + 1e-9))
        if not np.any(past):
            return
        where = f"{int(past.sum())} of {past.size} steps (first at t = {float(ts[:-1][past][0]):g})"
        if self.convention == "diffsim":
            warnings.warn(
                f"Heun churn moves {where} past t_max = {p.t_max:g}; the churned time is clamped to t_max "
                "(less noise is added than churn asks). Lower `churn`, set `s_tmax`, or use "
                'convention="k_diffusion" (no clamp).',
                stacklevel=4,
            )
        elif isinstance(getattr(p, "schedule", None), DiscreteSchedule):
            raise ValueError(
                f"Heun churn moves {where} past t_max = {p.t_max:g}, where a discrete-schedule VP is not "
                "defined; lower `churn` or set `s_tmax` below the first noise level."
            )

    def nfe(self, n_steps: int) -> int:
        return 2 * n_steps

    def step(self, key, state, t, t_next, score):
        p = score.process
        x = state.x
        sig = _sigma_tilde(p, t)
        y = x / p.alpha(t)
        if self.is_stochastic():
            y, sig, t = self._churn(key, y, sig, t, p)
        sig_n = _sigma_tilde(p, t_next)
        a_t, a_n = p.alpha(t), p.alpha(t_next)
        d1 = (y - score.denoise(t, a_t * y)) / sig
        y_e = y + (sig_n - sig) * d1
        d2 = (y_e - score.denoise(t_next, a_n * y_e)) / sig_n
        y_next = y + (sig_n - sig) * 0.5 * (d1 + d2)
        return State(a_n * y_next)

    def _churn(self, key, y, sig, t, p):
        gamma = jnp.where((sig >= self.s_tmin) & (sig <= self.s_tmax), self.gamma, 0.0)
        sig_hat = sig * (1.0 + gamma)
        t_hat = jnp.where(gamma > 0, p.t_from_log_snr(-2.0 * jnp.log(sig_hat)), t)
        if self.convention == "diffsim":
            t_hat = jnp.minimum(t_hat, p.t_max)
            sig_hat = _sigma_tilde(p, t_hat)
        # an unchurned step adds exactly nothing: under jit, XLA may contract sig_hat**2 - sig**2 into a
        # fused multiply-add whose rounding residue (~1e-13 at sigma = 80) has a square root of ~1e-6
        std = jnp.where(gamma > 0, jnp.sqrt(jnp.maximum(sig_hat**2 - sig**2, 0.0)), 0.0)
        y = y + std * self.s_noise * normal_like(key, y)
        return y, sig_hat, t_hat

    def final_step(self, key, state, t, score):
        """The step to ``sigma = 0`` (``final_denoise=True``): with ``convention="k_diffusion"`` and churn,
        the last noise level is churned first (as ``sample_heun``); then the denoiser (Euler to 0)."""
        p = score.process
        if self.convention != "k_diffusion" or not self.is_stochastic():
            return score.denoise(t, state.x)
        y, _, t_hat = self._churn(key, state.x / p.alpha(t), _sigma_tilde(p, t), t, p)
        return score.denoise(t_hat, p.alpha(t_hat) * y)


class DPM2MState(NamedTuple):
    x: Array
    x0_prev: Array
    h_prev: Array
    step_index: Array


class DPMSolver2M(AbstractFixedSampler):
    r"""DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), multistep second order in ``lambda = log(a/s)``:

        h = lambda_n - lambda,  r = h_prev / h,
        D = (1 + 1/(2r)) x0_hat(t, x) - 1/(2r) x0_prev   (first step: D = x0_hat),
        x_next = (s_n / s) x - a_n expm1(-h) D.

    ``lower_order_final`` uses the first-order update on the last grid step. This is not what diffusers'
    ``lower_order_final`` does by default: diffusers' first-order last step is its step to ``sigma = 0``
    (``final_sigmas_type="zero"``), which is ``simulate(..., final_denoise=True)`` here; with that,
    diffusers' ``DPMSolverMultistepScheduler`` (2M) is this sampler with ``lower_order_final=False``
    (diffusers lowers the order of its second-to-last step only for solver order 3).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        lower_order_final: use the first-order update (``D = x0_hat``) on the last grid step (default
            ``False``).
        n_steps: the grid's number of steps; leave at 0, :meth:`configure` sets it (used only with
            ``lower_order_final``).
    """

    lower_order_final: bool = eqx.field(default=False, static=True)
    n_steps: int = eqx.field(default=0, static=True)  # set by configure()
    name: ClassVar[str] = "dpm_solver_2m"
    order: ClassVar[float] = 2.0
    stochastic: ClassVar[bool] = False
    noise_draws: ClassVar[int] = 0

    def configure(self, n_steps: int) -> DPMSolver2M:
        return DPMSolver2M(lower_order_final=self.lower_order_final, n_steps=n_steps)

    def init(self, t0, x):
        return DPM2MState(x, jnp.zeros_like(x), jnp.ones((), x.dtype), jnp.zeros((), jnp.int32))

    def step(self, key, state, t, t_next, score):
        del key
        p = score.process
        x = state.x
        lam, lam_n = 0.5 * p.log_snr(t), 0.5 * p.log_snr(t_next)
        h = lam_n - lam
        x0 = score.denoise(t, x)
        r = state.h_prev / h
        d2 = (1.0 + 0.5 / r) * x0 - (0.5 / r) * state.x0_prev
        use2 = state.step_index > 0
        if self.lower_order_final:
            use2 = use2 & (state.step_index != self.n_steps - 1)
        d = jnp.where(use2, d2, x0)
        x_next = (p.sigma(t_next) / p.sigma(t)) * x - p.alpha(t_next) * jnp.expm1(-h) * d
        return DPM2MState(x_next, x0, h, state.step_index + 1)


class PredictorCorrector(AbstractFixedSampler):
    r"""Predictor-corrector sampler (Song et al. 2021, Alg. 2-3): ``n_corrector`` Langevin corrector
    steps at ``t``, then an Euler-Maruyama reverse-SDE predictor step to ``t_next``.

    Langevin step ``x <- x + eps s + sqrt(2 eps) z`` with the signal-to-noise rule ``eps = 2 r (snr |z| /
    |s|)^2``, ``r = (a / a_n)^2`` (score_sde's discrete ``alpha_i = 1 - beta_i``; 1 for VE). score_sde
    averages the norms over the batch; a per-particle ``|s|`` blows the step up wherever the score vanishes
    (near modes), and a batch average makes particles depend on each other. We therefore replace ``|s|^2``
    by its bound ``d / sigma_t^2`` (the Fisher information of any law smoothed by ``N(0, sigma_t^2 I)``)
    and ``|z|^2`` by ``d``: ``eps = 2 r (snr sigma_t)^2``, per particle, bounded and batch independent.

    Constructor arguments, kept as the instance's fields:

    Attributes:
        snr: the corrector's signal-to-noise ratio ``> 0`` (default 0.16); a Python number or a JAX scalar.
        n_corrector: Langevin corrector steps per grid step, ``>= 0`` (default 1; 0 is Euler-Maruyama).
            Each costs one score evaluation and one normal draw.
    """

    snr: float | Array = 0.16
    n_corrector: int = eqx.field(default=1, static=True)
    name: ClassVar[str] = "pc"
    order: ClassVar[float] = 1.0  # weak
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 2  # with the default n_corrector = 1; see draws_per_step()

    def __check_init__(self):
        check_option(self.snr, lambda v: v > 0, f"PC `snr` must be positive, got {self.snr}.")
        if self.n_corrector < 0:
            raise ValueError(f"PC `n_corrector` must be >= 0, got {self.n_corrector}.")

    def nfe(self, n_steps: int) -> int:
        return (1 + self.n_corrector) * n_steps

    def draws_per_step(self) -> int:
        return self.n_corrector + 1

    def step(self, key, state, t, t_next, score):
        p = score.process
        x = state.x
        keys = split_noise(key, self.n_corrector + 1)
        ratio = jnp.exp(2.0 * (p.log_alpha(t) - p.log_alpha(t_next)))
        eps = 2.0 * ratio * self.snr**2 * p.sigma2(t)
        for i in range(self.n_corrector):
            x = x + eps * score.score(t, x) + jnp.sqrt(2.0 * eps) * normal_like(keys[i], x)
        dt = t_next - t
        x = x + score.reverse_drift(t, x) * dt + p.diffusion(t) * jnp.sqrt(-dt) * normal_like(keys[-1], x)
        return State(x)


# --- forward noising ----------------------------------------------------------------------------------
class ForwardExact(AbstractFixedSampler):
    """Exact forward transition ``x_next = a x + b z`` with ``(a, b) = process.transition(t, t_next)``."""

    name: ClassVar[str] = "forward"
    order: ClassVar[float | None] = None  # exact in law
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 1
    direction: ClassVar[str] = "forward"

    def nfe(self, n_steps: int) -> int:
        return 0

    def step(self, key, state, t, t_next, score):
        a, b = score.process.transition(t, t_next)
        return State(a * state.x + b * normal_like(key, state.x))


class ForwardEulerMaruyama(AbstractFixedSampler):
    """Euler-Maruyama on the forward SDE ``dx = f x dt + g dW``."""

    name: ClassVar[str] = "forward_em"
    order: ClassVar[float] = 1.0  # weak
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 1
    direction: ClassVar[str] = "forward"

    def nfe(self, n_steps: int) -> int:
        return 0

    def step(self, key, state, t, t_next, score):
        p = score.process
        dt = t_next - t
        x = state.x
        return State(x + p.drift(t, x) * dt + p.diffusion(t) * jnp.sqrt(dt) * normal_like(key, x))
