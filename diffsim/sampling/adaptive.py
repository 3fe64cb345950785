r"""Adaptive and Diffrax-backed solves: PF-ODE with error control, reverse SDE with a choice of Brownian
path, and the PF-ODE log-likelihood.

Reverse-time problems are integrated on a forward-running clock (Diffrax's stochastic Runge-Kutta
solvers are wrong when run backwards in time, diffrax issue #598, and ``VirtualBrownianTree`` needs
``t0 < t1``):

    PF-ODE:       u = log(t_start / t),   t = t_start e^{-u},   dy/du = -t v(t, y),   v = f x - 1/2 g^2 s,
    reverse SDE:  u = t_start - t,        dy = -[f y - g^2 s](t_start - u) du + g(t_start - u) dW_u.

The logarithmic ODE clock keeps the *relative* precision of ``t`` at every scale: with the linear clock a
float32 ``u`` near ``t_start = 10`` resolves ``t`` only to ~1e-6, a 0.1% error at ``t_min = 1e-3`` where the
score is stiffest. (The SDE keeps the linear clock so that ``W_u`` is a standard Brownian motion; its steps
are the grid's, whose error is the float rounding of ``t_start - t``.)

Every particle is solved by its own ``diffeqsolve`` under ``vmap`` (per-particle step sizes and Brownian
paths), so results do not depend on how particles are batched.

The log-likelihood uses the instantaneous change of variables along the PF-ODE (Chen et al. 2018; Song
et al. 2021, eq. 39): ``d/dt log p_t(x_t) = -div v(t, x_t)``, hence

    log p_{t_0}(x) = log p_T(x_T) + \int_{t_0}^{T} div v(t, x_t) dt,

integrated forward from ``x`` at ``t_0`` to ``T``; ``div v`` is exact (``score.velocity_divergence``:
closed form for mixtures, a Jacobian trace otherwise) or Hutchinson's estimator with Rademacher probes
(one forward-mode JVP per probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
from jaxtyping import Array, ArrayLike, Float

from .._validation import as_float_array, check_key, check_positive_int
from ..scores._base import AbstractScore
from ._registry import AbstractAdaptiveSampler


__all__ = ["AdaptiveODE", "DiffraxSDE", "Dopri5", "Dopri8", "Tsit5", "flow", "log_likelihood"]

_ODE_SOLVERS = {
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
    "heun": dfx.Heun,
    "bosh3": dfx.Bosh3,
}
_ODE_STAGES = {"tsit5": 6, "dopri5": 6, "dopri8": 12, "heun": 2, "bosh3": 3}
_SDE_SOLVERS = {
    "euler": (dfx.Euler, False, 1),
    "heun": (dfx.Heun, False, 2),
    "sea": (dfx.SEA, True, 1),
    "shark": (dfx.ShARK, True, 2),
    "sra1": (dfx.SRA1, True, 2),
}


def _save_times_u(grid, save_idx):
    return (grid[0] - grid)[jnp.asarray(save_idx)]


def _log_clock(grid):
    """``u = log(t_start / t)`` at every grid time (relative precision of ``t`` kept at all scales)."""
    return jnp.log(grid[0]) - jnp.log(grid)


class AdaptiveODE(AbstractAdaptiveSampler):
    """PF-ODE solved by an adaptive Runge-Kutta method (``tsit5`` default, ``dopri5``, ``dopri8``, ...)
    with a PID step-size controller. ``rtol``/``atol`` are passed as arrays (no recompiles).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        solver: the Diffrax Runge-Kutta method: ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"heun"`` or
            ``"bosh3"`` (default ``"tsit5"``).
        rtol: relative tolerance of the PID step-size controller, ``> 0`` (default ``1e-5``).
        atol: absolute tolerance, ``> 0`` (default ``1e-5``).
        max_steps: most solver steps per particle (static, default 4096); a solve needing more raises.
    """

    solver: str = eqx.field(default="tsit5", static=True)
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = eqx.field(default=4096, static=True)
    name: ClassVar[str] = "adaptive_ode"
    order: ClassVar[float] = 5.0  # the default solver's (tsit5) order
    stochastic: ClassVar[bool] = False
    noise_draws: ClassVar[int] = 0

    def __check_init__(self):
        if self.solver not in _ODE_SOLVERS:
            raise ValueError(f"Unknown ODE solver {self.solver!r}; choose from {sorted(_ODE_SOLVERS)}.")
        if self.name in _ODE_SOLVERS and self.solver != self.name:
            raise ValueError(
                f"Sampler {self.name!r} runs its own solver; use 'adaptive_ode' for {self.solver!r}."
            )
        if not (float(self.rtol) > 0 and float(self.atol) > 0):
            raise ValueError("`rtol` and `atol` must be positive.")

    def nfe(self, n_steps: int) -> int:
        return -1  # data dependent; see Trajectory.stats when needed

    def solve(self, score, grid, x, keys, save_idx, stats, save_states):
        return _solve_ode(
            score,
            grid,
            x,
            jnp.asarray(save_idx),
            stats,
            bool(save_states),
            self.solver,
            jnp.asarray(self.rtol, x.dtype),
            jnp.asarray(self.atol, x.dtype),
            self.max_steps,
        )


class Tsit5(AdaptiveODE):
    """:class:`AdaptiveODE` with Tsitouras' 5(4) method (``"tsit5"``).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        solver: the Diffrax Runge-Kutta method: ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"heun"`` or
            ``"bosh3"``; must be ``"tsit5"`` (the default) under this name.
        rtol: relative tolerance of the PID step-size controller, ``> 0`` (default ``1e-5``).
        atol: absolute tolerance, ``> 0`` (default ``1e-5``).
        max_steps: most solver steps per particle (static, default 4096); a solve needing more raises.
    """

    name: ClassVar[str] = "tsit5"
    order: ClassVar[float] = 5.0


class Dopri5(AdaptiveODE):
    """:class:`AdaptiveODE` with Dormand-Prince 5(4) (``"dopri5"``).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        solver: the Diffrax Runge-Kutta method: ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"heun"`` or
            ``"bosh3"``; must be ``"dopri5"`` (the default) under this name.
        rtol: relative tolerance of the PID step-size controller, ``> 0`` (default ``1e-5``).
        atol: absolute tolerance, ``> 0`` (default ``1e-5``).
        max_steps: most solver steps per particle (static, default 4096); a solve needing more raises.
    """

    solver: str = eqx.field(default="dopri5", static=True)
    name: ClassVar[str] = "dopri5"
    order: ClassVar[float] = 5.0


class Dopri8(AdaptiveODE):
    """:class:`AdaptiveODE` with Dormand-Prince 8(7) (``"dopri8"``).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        solver: the Diffrax Runge-Kutta method: ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"heun"`` or
            ``"bosh3"``; must be ``"dopri8"`` (the default) under this name.
        rtol: relative tolerance of the PID step-size controller, ``> 0`` (default ``1e-5``).
        atol: absolute tolerance, ``> 0`` (default ``1e-5``).
        max_steps: most solver steps per particle (static, default 4096); a solve needing more raises.
    """

    solver: str = eqx.field(default="dopri8", static=True)
    name: ClassVar[str] = "dopri8"
    order: ClassVar[float] = 8.0


@eqx.filter_jit
def _solve_ode(score, grid, x, save_idx, stats, save_states, solver, rtol, atol, max_steps):
    grid = grid.astype(x.dtype)
    t_start = grid[0]
    us = _log_clock(grid)
    u_end = us[-1]
    u_save = us[save_idx]

    def vector_field(u, y, args):
        t = t_start * jnp.exp(-u)
        return -t * score.velocity(t, y)

    term = dfx.ODETerm(vector_field)

    def one(y0):
        sol = dfx.diffeqsolve(
            term,
            _ODE_SOLVERS[solver](),
            0.0,
            u_end,
            None,
            y0,
            saveat=dfx.SaveAt(ts=u_save),
            stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps,
        )
        return sol.ys, sol.stats["num_steps"]

    ys, steps = jax.vmap(one)(x)  # ys: (N, S, d)
    ys = jnp.swapaxes(ys, 0, 1)
    ts = grid[save_idx]
    st = None
    if stats is not None:
        st = jax.vmap(lambda t, xb: jax.vmap(stats, in_axes=(None, 0))(t, xb))(ts, ys)
    return (ys if save_states else None), st, ys[-1], steps * _ODE_STAGES[solver]


class DiffraxSDE(AbstractAdaptiveSampler):
    """Reverse SDE through Diffrax on the grid's steps (``StepTo``), with a choice of solver
    (``euler``, ``heun``, ``sea``, ``shark``, ``sra1``; the last three need space-time Levy area) and of
    Brownian path: ``"virtual"`` (``VirtualBrownianTree``, consistent under refinement: use it for
    strong-convergence studies) or ``"unsafe"`` (``UnsafeBrownianPath``: fast, fixed steps only).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        solver: ``"euler"`` (default, Euler-Maruyama), ``"heun"``, ``"sea"``, ``"shark"`` or ``"sra1"``.
        brownian: ``"virtual"`` (default) or ``"unsafe"``, the Brownian path (above).
    """

    solver: str = eqx.field(default="euler", static=True)
    brownian: str = eqx.field(default="virtual", static=True)
    name: ClassVar[str] = "sde"
    order: ClassVar[float] = 1.0  # weak order of the default solver (Euler-Maruyama)
    stochastic: ClassVar[bool] = True
    noise_draws: ClassVar[int] = 1  # one Brownian increment per step, from the particle's Brownian path

    def __check_init__(self):
        if self.solver not in _SDE_SOLVERS:
            raise ValueError(f"Unknown SDE solver {self.solver!r}; choose from {sorted(_SDE_SOLVERS)}.")
        if self.brownian not in ("virtual", "unsafe"):
            raise ValueError(f"`brownian` must be 'virtual' or 'unsafe', got {self.brownian!r}.")

    def nfe(self, n_steps: int) -> int:
        return _SDE_SOLVERS[self.solver][2] * n_steps

    def solve(self, score, grid, x, keys, save_idx, stats, save_states):
        return _solve_sde(
            score, grid, x, keys, jnp.asarray(save_idx), stats, bool(save_states), self.solver, self.brownian
        )


@eqx.filter_jit
def _solve_sde(score, grid, x, keys, save_idx, stats, save_states, solver, brownian):
    grid = grid.astype(x.dtype)
    t_start = grid[0]
    us = grid[0] - grid
    u_end = us[-1]
    u_save = _save_times_u(grid, save_idx)
    solver_cls, needs_levy, per_step = _SDE_SOLVERS[solver]
    levy = dfx.SpaceTimeLevyArea if needs_levy else dfx.BrownianIncrement
    d = x.shape[1]
    noise_shape = jax.ShapeDtypeStruct((d,), x.dtype)  # Brownian increments in the particles' dtype
    min_du = jnp.min(jnp.diff(us))

    def one(y0, k):
        if brownian == "virtual":
            bm = dfx.VirtualBrownianTree(0.0, u_end, tol=min_du / 4, shape=noise_shape, key=k, levy_area=levy)
            adjoint = dfx.RecursiveCheckpointAdjoint()
        else:
            bm = dfx.UnsafeBrownianPath(shape=noise_shape, key=k, levy_area=levy)
            adjoint = dfx.ForwardMode()
        drift = dfx.ODETerm(lambda u, y, args: -score.reverse_drift(t_start - u, y))
        diff = dfx.ControlTerm(lambda u, y, args: _diag(score.process.diffusion(t_start - u), d), bm)
        sol = dfx.diffeqsolve(
            dfx.MultiTerm(drift, diff),
            solver_cls(),
            0.0,
            u_end,
            None,
            y0,
            saveat=dfx.SaveAt(ts=u_save),
            stepsize_controller=dfx.StepTo(ts=us),
            adjoint=adjoint,
            max_steps=us.shape[0] + 1,
        )
        return sol.ys

    ys = jnp.swapaxes(jax.vmap(one)(x, keys), 0, 1)
    ts = t_start - u_save
    st = None
    if stats is not None:
        st = jax.vmap(lambda t, xb: jax.vmap(stats, in_axes=(None, 0))(t, xb))(ts, ys)
    return (ys if save_states else None), st, ys[-1], jnp.full((x.shape[0],), per_step * (us.shape[0] - 1))


def _diag(g, d):
    """Diagonal diffusion ``g I`` as a lineax operator (ControlTerms no longer broadcast)."""
    return lx.DiagonalLinearOperator(jnp.full((d,), g))


# =====================================================================================================
# PF-ODE flow map between two times
# =====================================================================================================
def flow(
    score: AbstractScore,
    x: Float[Array, "N d"],
    t0: ArrayLike,
    t1: ArrayLike,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 8192,
) -> Float[Array, "N d"]:
    r"""The probability-flow map ``Phi_{t0 -> t1}`` applied to each row of ``x`` (either direction).

    Solves ``dx/dt = f x - 1/2 g^2 s(t, x)`` from ``t0`` to ``t1`` on the clock ``u = |t - t0|`` (Diffrax
    always integrates forwards). With the exact score this pushes ``p_{t0}`` onto ``p_{t1}``; ``flow(score,
    x0, 0, T)`` is the inverse of the DDIM-limit sampler from ``T`` to 0.

    Args:
        score: the score whose PF-ODE is solved.
        x: starting points at ``t0``, shape ``(N, d)``.
        t0: start time in the process's time range (scalar).
        t1: end time, earlier or later than ``t0``; with both ends ``> 0`` the clock is logarithmic
            (``u = |log t - log t0|``), with an end at 0 linear.
        solver: the Diffrax Runge-Kutta method (``"tsit5"`` default, ``"dopri5"``, ``"dopri8"``,
            ``"heun"``, ``"bosh3"``).
        rtol: relative tolerance of the PID controller (default ``1e-6``).
        atol: absolute tolerance (default ``1e-6``).
        max_steps: most solver steps per particle (default 8192); a solve needing more raises.

    Returns:
        ``Phi_{t0 -> t1}(x)``, shape ``(N, d)``.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != score.dim:
        raise ValueError(f"`x` must have shape (N, {score.dim}), got {x.shape}.")
    score.process.check_time(t0, "t0")
    score.process.check_time(t1, "t1")
    if solver not in _ODE_SOLVERS:
        raise ValueError(f"Unknown ODE solver {solver!r}; choose from {sorted(_ODE_SOLVERS)}.")
    return _flow(
        score,
        x,
        jnp.asarray(t0, x.dtype),
        jnp.asarray(t1, x.dtype),
        solver,
        jnp.asarray(rtol, x.dtype),
        jnp.asarray(atol, x.dtype),
        max_steps,
    )


@eqx.filter_jit
def _flow(score, x, t0, t1, solver, rtol, atol, max_steps):
    # Clock u = |log t - log t0| when both ends are positive (relative precision of t at every scale);
    # the linear clock u = |t - t0| only when an end is t = 0, where the logarithm does not exist.
    use_log = (t0 > 0) & (t1 > 0)
    sign = jnp.sign(t1 - t0)
    safe0 = jnp.where(use_log, t0, 1.0)
    u_end = jnp.where(
        use_log, jnp.abs(jnp.log(jnp.where(use_log, t1, 1.0)) - jnp.log(safe0)), jnp.abs(t1 - t0)
    )

    def vector_field(u, y, args):
        t_log = safe0 * jnp.exp(sign * u)
        t = jnp.where(use_log, t_log, t0 + sign * u)
        rate = jnp.where(use_log, t_log, 1.0)  # dt/du up to the sign
        return sign * rate * score.velocity(t, y)

    term = dfx.ODETerm(vector_field)

    def one(y0):
        sol = dfx.diffeqsolve(
            term,
            _ODE_SOLVERS[solver](),
            0.0,
            u_end,
            None,
            y0,
            stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps,
        )
        return sol.ys[-1]

    return jax.vmap(one)(x)


# =====================================================================================================
# PF-ODE log-likelihood
# =====================================================================================================
def log_likelihood(
    score: AbstractScore,
    x: Float[Array, "N d"],
    *,
    t0: ArrayLike | None = None,
    t1: ArrayLike | None = None,
    divergence: str = "exact",
    n_probes: int = 1,
    key: jax.Array | None = None,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    prior_log_prob: Callable[[Array], Array] | None = None,
    max_steps: int = 8192,
) -> tuple[Float[Array, " N"], Float[Array, "N d"]]:
    r"""``log p_{t0}(x)`` of the PF-ODE model defined by ``score`` for each row of ``x``.

    Integrates ``dx/dt = v(t, x)``, ``d delta/dt = div v(t, x)`` from ``t0`` (default ``t_min``) to ``t1``
    (default ``t_max``), then returns ``prior_log_prob(x_{t1}) + delta`` and the end points ``x_{t1}``.
    ``prior_log_prob`` defaults to the process prior; pass e.g. ``lambda z: score.log_prob(t1, z)`` for the
    exact marginal of an analytic score. ``divergence="hutchinson"`` needs ``key`` and uses ``n_probes``
    Rademacher probes per evaluation (fixed along each path).

    Args:
        score: the score defining the PF-ODE model.
        x: points at ``t0``, shape ``(N, d)``.
        t0: the time whose density is evaluated (default ``None``: the process's ``t_min``).
        t1: the end time where ``prior_log_prob`` is applied (default ``None``: ``t_max``).
        divergence: ``"exact"`` (default; ``score.velocity_divergence``) or ``"hutchinson"`` (estimator).
        n_probes: Rademacher probes per particle for ``"hutchinson"`` (default 1; ignored by ``"exact"``).
        key: PRNG key drawing the probes; required with ``"hutchinson"``, unused otherwise.
        solver: the Diffrax Runge-Kutta method (``"tsit5"`` default, ``"dopri5"``, ``"dopri8"``,
            ``"heun"``, ``"bosh3"``).
        rtol: relative tolerance of the PID controller (default ``1e-6``).
        atol: absolute tolerance (default ``1e-6``).
        prior_log_prob: log-density at ``t1`` of one point ``(d,) -> ()`` (default ``None``: the process
            prior's ``prior_log_prob``).
        max_steps: most solver steps per particle (default 8192); a solve needing more raises.

    Returns:
        ``(log_p, x_t1)``: the log-densities, shape ``(N,)``, and the end points at ``t1``, shape ``(N, d)``.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != score.dim:
        raise ValueError(f"`x` must have shape (N, {score.dim}), got {x.shape}.")
    p = score.process
    t0 = p.t_min if t0 is None else t0
    t1 = p.t_max if t1 is None else t1
    p.check_time(t0, "t0")
    p.check_time(t1, "t1")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"`divergence` must be 'exact' or 'hutchinson', got {divergence!r}.")
    if solver not in _ODE_SOLVERS:
        raise ValueError(f"Unknown ODE solver {solver!r}; choose from {sorted(_ODE_SOLVERS)}.")
    n_probes = check_positive_int(n_probes, "n_probes")
    if divergence == "hutchinson":
        key = check_key(key)
        probes = jr.rademacher(key, (x.shape[0], n_probes, x.shape[1]), dtype=x.dtype)
    else:
        probes = jnp.zeros((x.shape[0], 1, x.shape[1]), x.dtype)
    if prior_log_prob is None:
        prior_log_prob = p.prior_log_prob
    return _log_likelihood(
        score,
        x,
        jnp.asarray(t0, x.dtype),
        jnp.asarray(t1, x.dtype),
        probes,
        divergence == "hutchinson",
        solver,
        jnp.asarray(rtol, x.dtype),
        jnp.asarray(atol, x.dtype),
        prior_log_prob,
        max_steps,
    )


@eqx.filter_jit
def _log_likelihood(score, x, t0, t1, probes, hutchinson, solver, rtol, atol, prior_log_prob, max_steps):
    def vf(t, state, eps):
        y, _ = state
        if hutchinson:
            v, jvps = jax.vmap(lambda e: jax.jvp(lambda z: score.velocity(t, z), (y,), (e,)))(eps)
            div = jnp.mean(jnp.sum(jvps * eps, axis=-1))
            v = v[0]
        else:
            v = score.velocity(t, y)
            div = score.velocity_divergence(t, y)
        # the state keeps its dtype: a float64 process (jax_enable_x64) must not promote float32 particles
        return v.astype(y.dtype), div.astype(y.dtype)

    term = dfx.ODETerm(vf)

    def one(y0, eps):
        sol = dfx.diffeqsolve(
            term,
            _ODE_SOLVERS[solver](),
            t0,
            t1,
            None,
            (y0, jnp.zeros((), y0.dtype)),
            args=eps,
            stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps,
        )
        y1, delta = sol.ys[0][-1], sol.ys[1][-1]
        return prior_log_prob(y1) + delta, y1

    return jax.vmap(one)(x, probes)
