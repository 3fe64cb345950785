r"""Throughput, compile time, memory and analysis-cost benchmark of ``diffsim.simulate`` against its peers.

One run measures, on whatever device JAX sees first (CPU or GPU; the script is the same):

1. **Throughput** (particle-steps per second) of the reverse-SDE Euler-Maruyama sampler on the exact score of
   a Gaussian mixture (``K`` spherical components in ``d`` dimensions, VP-linear process, uniform grid), over
   ``d in {2, 16, 128}``, ``K in {8, 64}`` and ``N in {1e3, 1e4, 1e5, 1e6}``, for the same problem through

   - ``diffsim``: ``diffsim.simulate(score, "euler_maruyama", grid, x=x0, key=key)`` (default arguments, so
     counter-based noise since diffsim 0.2);
   - ``diffsim_per_particle``: the same with ``noise="per_particle"`` (a key per particle and step);
   - ``fused_scan``: a hand-fused ``lax.scan`` Euler-Maruyama on the batched ``(N, d)`` state with the
     mixture score written in matrix form and ``jr.normal(fold_in(key, step), (N, d))`` per step: the
     strongest plain-JAX baseline we know how to write;
   - ``fused_scan_pp``: the same scan with diffsim's per-particle keys (particle ``i`` draws step ``j``'s
     noise from ``fold_in(fold_in(key, i), j)``), isolating the cost of batch/chunk/shard invariant noise;
   - ``numpy``: the same loop vectorised over particles in NumPy (float32, ``default_rng``);
   - ``diffrax_ubp`` / ``diffrax_vbt``: one ``diffeqsolve`` on the batched (flattened) state with ``Euler``,
     ``StepTo`` on the grid and ``UnsafeBrownianPath`` (``ForwardMode`` adjoint) or ``VirtualBrownianTree``
     (``tol = dt / 2``), following the Diffrax FAQ (``EQX_ON_ERROR=nan``, everything inside one jit);
   - ``torchsde`` / ``torch_loop`` (only when ``torch`` and ``torchsde`` are installed, an optional extra):
     ``torchsde.sdeint(method="euler")`` with a ``BrownianInterval`` and a plain ``torch`` loop, both under
     ``no_grad`` with as many threads as JAX gets.

   Every method integrates the same grid from the same starting points. The number of steps per size is
   chosen so that one ``diffsim`` run takes about ``--target-s`` seconds (all methods share it). Repetitions
   of the methods are interleaved and the best of ``--reps`` is kept (the machine may be shared). A method
   whose predicted run time (from its throughput at the previous ``N``) exceeds ``--max-run-s``, or whose
   predicted memory exceeds what is free, is recorded as ``skipped`` with the reason.
2. **Steps sweep**: throughput against the number of steps at a fixed size (per-call overhead).
3. **Compile time** of the default sampler (first call minus a warm call, and XLA's own compile events), and
   a **recompile audit**: which changes of a configuration trigger a new compilation.
4. **Peak memory** of saved trajectories (``save="final"``, a stride, ``"all"``, chunked), from XLA's
   compiled memory analysis, against the bytes the saved states need.
5. **Analysis transforms** as their inputs grow: energy distance, PF-ODE log-likelihood, mixture posterior,
   Hessian, and the matrix-form mixture score against the direct per-component form.

Results go to ``<out>/<device-name>.json`` (``-quick`` appended for ``--quick``), a markdown table of ratios
``<device-name>.md`` and the plots ``<device-name>_throughput.png`` and ``<device-name>_scaling.png``.

Usage::

    python benchmarks/throughput.py            # full run (about 10 minutes on 2 CPU cores)
    python benchmarks/throughput.py --quick    # sanity run (about a minute)
"""

from __future__ import annotations

import os


os.environ.setdefault("EQX_ON_ERROR", "nan")  # Diffrax FAQ: no runtime checks when timing against plain JAX
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # let torch share the GPU with JAX

import argparse
import gc
import json
import math
import platform
import re
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

import diffsim as ds
from diffsim._io import write_atomic


try:  # optional extra: pip install torch==2.13.0 torchsde
    import torch
    import torchsde
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    torchsde = None


JAX_METHODS = ("diffsim", "diffsim_per_particle", "fused_scan", "fused_scan_pp", "diffrax_ubp", "diffrax_vbt")
HOST_METHODS = ("numpy", "torchsde", "torch_loop")
ALL_METHODS = JAX_METHODS + HOST_METHODS
TORCH_METHODS = ("torchsde", "torch_loop")


# =====================================================================================================
# compile-event bookkeeping (XLA compile durations, via jax.monitoring)
# =====================================================================================================
_EVENTS: dict[str, float] = defaultdict(float)
_EVENT_COUNTS: dict[str, int] = defaultdict(int)
_LISTENING = False


def _listen():
    global _LISTENING
    if not _LISTENING:

        def on_event(name, duration, **kwargs):
            _EVENTS[name] += duration
            _EVENT_COUNTS[name] += 1

        jax.monitoring.register_event_duration_secs_listener(on_event)
        _LISTENING = True


def _compile_counter() -> int:
    return _EVENT_COUNTS["/jax/core/compile/backend_compile_duration"]


def _compile_seconds() -> float:
    return sum(v for k, v in _EVENTS.items() if k.startswith("/jax/core/compile/"))


# =====================================================================================================
# the problem
# =====================================================================================================
@dataclass(frozen=True)
class Problem:
    """Reverse-SDE sampling of a ``K``-component spherical Gaussian mixture in ``d`` dimensions.

    ``grid`` holds ``steps + 1`` decreasing times; ``coef`` the per-step process coefficients
    ``(f(t), beta(t), g(t))`` on the grid (all methods use the same ones).
    """

    d: int
    K: int
    steps: int
    score: ds.GaussianMixture
    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    grid: np.ndarray
    coef: dict = field(repr=False)

    @property
    def process(self):
        return self.score.process


def make_problem(d: int, K: int, steps: int, seed: int = 0) -> Problem:
    """The benchmark problem: ``K`` components with means ``N(0, 4 I)``, Dirichlet weights, variances in
    ``[0.05, 0.3]``; VP-linear process; uniform grid of ``steps`` steps from ``t_max`` to ``t_min``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(K, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(K, 5.0)).astype(np.float32)
    weights = (weights / weights.sum()).astype(np.float32)
    variances = rng.uniform(0.05, 0.3, size=K).astype(np.float32)
    process = ds.VP.linear()
    score = ds.GaussianMixture(
        jnp.asarray(weights), jnp.asarray(means), jnp.asarray(variances), process=process
    )
    grid = np.asarray(ds.grids.uniform(process, steps), dtype=np.float32)
    t = jnp.asarray(grid)
    coef = {
        "f": np.asarray(process.drift_coefficient(t), np.float32),
        "beta": np.asarray(process.beta(t), np.float32),
        "g": np.asarray(process.diffusion(t), np.float32),
        "alpha": np.asarray(process.alpha(t), np.float32),
        "sigma2": np.asarray(process.sigma2(t), np.float32),
    }
    return Problem(d, K, steps, score, weights, means, variances, grid, coef)


def start_points(problem: Problem, n: int, seed: int = 1) -> np.ndarray:
    """``n`` prior draws (float32, host)."""
    rng = np.random.default_rng(seed)
    return (problem.process.prior_std * rng.standard_normal((n, problem.d))).astype(np.float32)


# =====================================================================================================
# the methods: each builder returns run() -> final particles (host or device array)
# =====================================================================================================
def _jax_batch_score(problem: Problem):
    """Batched mixture score in matrix form (what one writes by hand for spherical components); full-float32
    matrix products like diffsim's (no TF32 on GPUs)."""

    def mm(a, b):
        return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)

    log_w = jnp.log(jnp.asarray(problem.weights))
    mu = jnp.asarray(problem.means)
    var = jnp.asarray(problem.variances)
    mu2 = jnp.sum(mu * mu, axis=-1)
    d = problem.d

    def score(a, s2, x):
        prec = (1.0 / (a * a * var + s2))[None, :]  # (1, K): broadcast over particles explicitly
        quad = prec * (jnp.sum(x * x, axis=-1, keepdims=True) - 2.0 * a * mm(x, mu.T) + a * a * mu2[None, :])
        logits = log_w[None, :] + 0.5 * d * jnp.log(prec) - 0.5 * quad
        r = jax.nn.softmax(logits, axis=-1)
        rp = r * prec
        return a * mm(rp, mu) - x * jnp.sum(rp, axis=-1, keepdims=True)

    return score


def _coef_arrays(problem: Problem):
    c = problem.coef
    t = jnp.asarray(problem.grid)
    return (
        t,
        jnp.asarray(c["f"]),
        jnp.asarray(c["beta"]),
        jnp.asarray(c["g"]),
        jnp.asarray(c["alpha"]),
        jnp.asarray(c["sigma2"]),
    )


def build_diffsim(problem: Problem, x0: np.ndarray, seed: int = 0, noise: str | None = None):
    score, grid = problem.score, jnp.asarray(problem.grid)
    x = jnp.asarray(x0)
    key = jr.key(seed)
    return lambda: ds.simulate(score, "euler_maruyama", grid, x=x, key=key, noise=noise).x


def build_diffsim_per_particle(problem: Problem, x0: np.ndarray, seed: int = 0):
    return build_diffsim(problem, x0, seed, noise="per_particle")


def build_fused_scan(problem: Problem, x0: np.ndarray, seed: int = 0, per_particle_keys: bool = False):
    score = _jax_batch_score(problem)
    arrays = _coef_arrays(problem)

    @jax.jit
    def run(x, key, arrays):
        t, f, beta, g, alpha, sigma2 = arrays
        n, d = x.shape
        if per_particle_keys:
            pkeys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(n))

        def body(x, inp):
            i, dt, f_i, beta_i, g_i, a_i, s2_i = inp
            if per_particle_keys:
                keys = jax.vmap(jr.fold_in, in_axes=(0, None))(pkeys, i)
                z = jax.vmap(lambda k: jr.normal(k, (d,), x.dtype))(keys)
            else:
                z = jr.normal(jr.fold_in(key, i), x.shape, x.dtype)
            x = x + (f_i * x - beta_i * score(a_i, s2_i, x)) * dt + g_i * jnp.sqrt(-dt) * z
            return x, None

        inputs = (
            jnp.arange(t.shape[0] - 1),
            t[1:] - t[:-1],
            f[:-1],
            beta[:-1],
            g[:-1],
            alpha[:-1],
            sigma2[:-1],
        )
        return jax.lax.scan(body, x, inputs)[0]

    x = jnp.asarray(x0)
    key = jr.key(seed)
    return lambda: run(x, key, arrays)


def build_fused_scan_pp(problem: Problem, x0: np.ndarray, seed: int = 0):
    return build_fused_scan(problem, x0, seed, per_particle_keys=True)


def build_diffrax(problem: Problem, x0: np.ndarray, seed: int = 0, brownian: str = "unsafe"):
    """Diffrax's SDE path used directly: one solve on the flattened ``(N d,)`` state (faster than a vmap
    of per-particle solves), Euler, ``StepTo`` on the grid, reverse time on the clock ``u = t_max - t``."""
    score = _jax_batch_score(problem)
    process = problem.process
    n, d = x0.shape
    grid = jnp.asarray(problem.grid)

    @eqx.filter_jit
    def run(y0, key, grid):
        t0 = grid[0]
        us = t0 - grid
        u_end = us[-1]

        def drift(u, y, args):
            t = t0 - u
            x = y.reshape(n, d)
            a, s2 = process.alpha(t), process.sigma2(t)
            out = process.drift_coefficient(t) * x - process.beta(t) * score(a, s2, x)
            return (-out.reshape(-1)).astype(y.dtype)  # (times are float64 when x64 is on)

        def diffusion(u, y, args):
            return lx.DiagonalLinearOperator(jnp.full((n * d,), process.diffusion(t0 - u), y.dtype))

        bshape = jax.ShapeDtypeStruct((n * d,), y0.dtype)
        if brownian == "virtual":
            bm = dfx.VirtualBrownianTree(
                0.0, u_end, tol=0.5 * u_end / (grid.shape[0] - 1), shape=bshape, key=key
            )
            adjoint = dfx.RecursiveCheckpointAdjoint()
        else:
            bm = dfx.UnsafeBrownianPath(shape=bshape, key=key)
            adjoint = dfx.ForwardMode()
        terms = dfx.MultiTerm(dfx.ODETerm(drift), dfx.ControlTerm(diffusion, bm))
        sol = dfx.diffeqsolve(
            terms,
            dfx.Euler(),
            0.0,
            u_end,
            None,
            y0,
            saveat=dfx.SaveAt(t1=True),
            stepsize_controller=dfx.StepTo(ts=us),
            adjoint=adjoint,
            max_steps=grid.shape[0],
        )
        return sol.ys[-1].reshape(n, d)

    y0 = jnp.asarray(x0).reshape(-1)
    key = jr.key(seed)
    return lambda: run(y0, key, grid)


def build_diffrax_ubp(problem, x0, seed=0):
    return build_diffrax(problem, x0, seed, "unsafe")


def build_diffrax_vbt(problem, x0, seed=0):
    return build_diffrax(problem, x0, seed, "virtual")


def _numpy_score(problem: Problem):
    log_w = np.log(problem.weights)
    mu = problem.means
    var = problem.variances
    mu2 = np.sum(mu * mu, axis=-1)
    d = problem.d

    def score(a, s2, x):
        prec = (1.0 / (a * a * var + s2)).astype(np.float32)
        quad = prec * (np.sum(x * x, axis=-1, keepdims=True) - (2.0 * a) * (x @ mu.T) + (a * a) * mu2)
        logits = log_w + 0.5 * d * np.log(prec) - 0.5 * quad
        logits -= logits.max(axis=-1, keepdims=True)
        r = np.exp(logits)
        r /= r.sum(axis=-1, keepdims=True)
        rp = r * prec
        return a * (rp @ mu) - x * rp.sum(axis=-1, keepdims=True)

    return score


def build_numpy(problem: Problem, x0: np.ndarray, seed: int = 0):
    score = _numpy_score(problem)
    c = problem.coef
    t = problem.grid

    def run():
        rng = np.random.default_rng(seed)
        x = x0.copy()
        for i in range(problem.steps):
            dt = np.float32(t[i + 1] - t[i])
            drift = c["f"][i] * x - c["beta"][i] * score(c["alpha"][i], c["sigma2"][i], x)
            x += drift * dt + (c["g"][i] * np.sqrt(-dt)) * rng.standard_normal(x.shape, dtype=np.float32)
        return x

    return run


def _torch_device():
    """CUDA when JAX runs on a GPU and torch sees one (a like-for-like comparison), else the CPU."""
    if jax.devices()[0].platform == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _torch_score(problem: Problem):
    dev = _torch_device()
    log_w = torch.from_numpy(np.log(problem.weights)).to(dev)
    mu = torch.from_numpy(problem.means).to(dev)
    var = torch.from_numpy(problem.variances).to(dev)
    mu2 = (mu * mu).sum(-1)
    d = problem.d

    def score(a, s2, x):
        prec = 1.0 / (a * a * var + s2)
        quad = prec * ((x * x).sum(-1, keepdim=True) - (2.0 * a) * (x @ mu.T) + (a * a) * mu2)
        logits = log_w + 0.5 * d * torch.log(prec) - 0.5 * quad
        r = torch.softmax(logits, dim=-1)
        rp = r * prec
        return a * (rp @ mu) - x * rp.sum(-1, keepdim=True)

    return score


def build_torch_loop(problem: Problem, x0: np.ndarray, seed: int = 0):
    score = _torch_score(problem)
    c = {k: v.tolist() for k, v in problem.coef.items()}
    t = problem.grid.tolist()

    dev = _torch_device()

    def run():
        gen = torch.Generator(device=dev).manual_seed(seed)
        with torch.no_grad():
            x = torch.from_numpy(x0.copy()).to(dev)
            for i in range(problem.steps):
                dt = t[i + 1] - t[i]
                drift = c["f"][i] * x - c["beta"][i] * score(c["alpha"][i], c["sigma2"][i], x)
                x = (
                    x
                    + drift * dt
                    + (c["g"][i] * math.sqrt(-dt)) * torch.randn(x.shape, generator=gen, device=dev)
                )
        return x.cpu().numpy()

    return run


def build_torchsde(problem: Problem, x0: np.ndarray, seed: int = 0):
    """torchsde's fair recipe (its maintainers' and ours): Ito Euler, fixed ``dt`` equal to the grid step,
    ``ts = [0, u_end]`` (final state only), a pre-built ``BrownianInterval`` with the ``dt`` hint."""
    score = _torch_score(problem)
    c = {k: v.tolist() for k, v in problem.coef.items()}
    t = problem.grid
    du = float(t[0] - t[1])
    u_end = float(t[0] - t[-1])
    n_steps = problem.steps

    def index(u):  # torchsde's Euler evaluates at the grid times u_n = n du only
        return min(int(round(float(u) / du)), n_steps)

    class ReverseSDE(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, u, y):
            i = index(u)
            return -(c["f"][i] * y - c["beta"][i] * score(c["alpha"][i], c["sigma2"][i], y))

        def g(self, u, y):
            return torch.full_like(y, c["g"][index(u)])

    sde = ReverseSDE()
    dev = _torch_device()

    def run():
        with torch.no_grad():
            y0 = torch.from_numpy(x0.copy()).to(dev)
            bm = torchsde.BrownianInterval(
                t0=0.0, t1=u_end, size=y0.shape, dtype=y0.dtype, device=dev, entropy=seed, dt=du
            )
            ys = torchsde.sdeint(
                sde, y0, torch.tensor([0.0, u_end], device=dev), bm=bm, method="euler", dt=du
            )
        return ys[-1].cpu().numpy()

    return run


BUILDERS: dict[str, Callable] = {
    "diffsim": build_diffsim,
    "diffsim_per_particle": build_diffsim_per_particle,
    "fused_scan": build_fused_scan,
    "fused_scan_pp": build_fused_scan_pp,
    "diffrax_ubp": build_diffrax_ubp,
    "diffrax_vbt": build_diffrax_vbt,
    "numpy": build_numpy,
    "torchsde": build_torchsde,
    "torch_loop": build_torch_loop,
}


def available_methods() -> list[str]:
    return [m for m in ALL_METHODS if m not in TORCH_METHODS or torch is not None]


# =====================================================================================================
# device, memory, timing helpers
# =====================================================================================================
def device_info() -> dict:
    dev = jax.devices()[0]
    info = {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "n_devices": jax.device_count(),
        "n_local_devices": jax.local_device_count(),
        "jax": jax.__version__,
        "diffrax": dfx.__version__,
        "equinox": eqx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch": None if torch is None else torch.__version__,
        "torchsde": None if torchsde is None else getattr(torchsde, "__version__", "?"),
        "cpu_count": _n_threads(),
        "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["name"] = device_name(dev)
    return info


def device_name(dev=None) -> str:
    dev = dev or jax.devices()[0]
    if dev.platform == "cpu":
        return f"cpu-{_n_threads()}core"
    return re.sub(r"[^a-z0-9]+", "-", dev.device_kind.lower()).strip("-")


def _n_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def free_memory_bytes() -> float:
    """Memory a run may use: free device memory on accelerators, half the available host memory on CPU."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            st = dev.memory_stats()
            return 0.8 * (st["bytes_limit"] - st.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001
            pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable"):
                    return 0.5 * float(line.split()[1]) * 1024
    except OSError:
        pass
    return 4e9


def predicted_bytes(method: str, n: int, d: int, k: int) -> float:
    """Rough working set of one run: a few ``(N, d)`` states plus ``(N, K)`` responsibilities, in float32."""
    state, resp = 4.0 * n * d, 4.0 * n * k
    factor = {"diffrax_vbt": 10, "diffrax_ubp": 6, "torchsde": 8}.get(method, 5)
    return factor * state + 4 * resp


def _block(out):
    return jax.block_until_ready(out) if not isinstance(out, np.ndarray) else out


def _time_call(fn) -> float:
    t0 = time.perf_counter()
    _block(fn())
    return time.perf_counter() - t0


def _summary(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {
        "mean0": float(x[:, 0].mean()),
        "std0": float(x[:, 0].std()),
        "finite": bool(np.all(np.isfinite(x))),
    }


def _set_torch_threads():
    if torch is not None:
        torch.set_num_threads(_n_threads())


# =====================================================================================================
# 1. throughput grid
# =====================================================================================================
@dataclass
class Plan:
    ds_: tuple[int, ...] = (2, 16, 128)
    ks: tuple[int, ...] = (8, 64)
    ns: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    methods: tuple[str, ...] = ALL_METHODS
    reps: int = 3
    target_s: float = 0.4  # aim of one diffsim run; sets the number of steps
    min_steps: int = 4
    max_steps: int = 200
    max_run_s: float = 5.0  # skip a method whose predicted single run exceeds this
    budget_s: float = 330.0  # skip everything left after this much time in the throughput grid
    restricted: dict = field(default_factory=dict)  # method -> predicate(d, K, N) saying whether to run it


def default_restrictions(full: bool) -> dict:
    """Baselines that need their own compile per size run on a subset unless ``--full`` (to keep the default
    run near 10 minutes on 2 CPU cores): the Diffrax paths and the per-particle-key scan on ``K = 8`` (the
    Brownian and key machinery does not depend on ``K``) and ``N <= 1e5`` (VBT: ``N <= 1e4``)."""
    if full:
        return {}
    return {
        "diffrax_ubp": lambda d, k, n: k == 8 and n <= 100_000,
        "diffrax_vbt": lambda d, k, n: k == 8 and n <= 10_000,
        "fused_scan_pp": lambda d, k, n: k == 8 and n <= 100_000,
        "torchsde": lambda d, k, n: k == 8 or n <= 10_000,
    }


def choose_steps(plan: Plan, n: int, throughput_hint: float | None) -> int:
    if throughput_hint is None:
        return plan.max_steps if n <= 10_000 else plan.min_steps
    steps = int(plan.target_s * throughput_hint / n)
    return int(min(max(steps, plan.min_steps), plan.max_steps))


def run_throughput(
    plan: Plan, log: Callable[[str], None] = print, hints: list[dict] | None = None
) -> list[dict]:
    """The throughput grid. Returns one record per (d, K, N, method). ``hints``: records of an earlier run
    (``--hints FILE``) whose throughputs at smaller ``N`` seed the step counts and the time-based skips."""
    _listen()
    _set_torch_threads()
    records: list[dict] = []
    t_start = time.perf_counter()
    mem_free = free_memory_bytes()
    last: dict[tuple, dict[str, float]] = defaultdict(dict)  # (d, K) -> method -> throughput at the last N
    for r in sorted(hints or [], key=lambda r: r["N"]):
        if r.get("status") == "ok" and r["N"] < min(plan.ns):
            last[(r["d"], r["K"])][r["method"]] = r["particle_steps_per_s"]
    for n in plan.ns:  # N outermost: a time budget cuts the largest sizes, not whole dimensions
        for d in plan.ds_:
            for k in plan.ks:
                last_thr = last[(d, k)]
                steps = choose_steps(plan, n, last_thr.get("diffsim", last_thr.get("diffsim_per_particle")))
                recs = measure_config(plan, d, k, n, steps, last_thr, mem_free, t_start, log)
                for r in recs:
                    if r["status"] == "ok":
                        last_thr[r["method"]] = r["particle_steps_per_s"]
                records.extend(recs)
    return records


def measure_config(
    plan: Plan,
    d: int,
    k: int,
    n: int,
    steps: int,
    last_thr: dict,
    mem_free: float,
    t_start: float,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Build, warm up and time every method on one size, repetitions interleaved."""
    problem = make_problem(d, k, steps)
    x0 = start_points(problem, n)
    base = {"d": d, "K": k, "N": n, "steps": steps}
    records, runners = {}, {}
    for m in plan.methods:
        rec = dict(base, method=m, status="skipped")
        records[m] = rec
        if m in TORCH_METHODS and torch is None:
            rec["reason"] = "torch/torchsde not installed (optional extra)"
            continue
        pred = plan.restricted.get(m)
        if pred is not None and not pred(d, k, n):
            rec["reason"] = "not in the default plan (use --full)"
            continue
        if time.perf_counter() - t_start > plan.budget_s:
            rec["reason"] = f"time budget of {plan.budget_s:.0f}s for the grid used up"
            continue
        if predicted_bytes(m, n, d, k) > mem_free:
            rec["reason"] = (
                f"memory: needs ~{predicted_bytes(m, n, d, k) / 1e9:.1f} GB, {mem_free / 1e9:.1f} GB free"
            )
            continue
        if m in last_thr:
            pred_s = n * steps / last_thr[m]
            if pred_s > plan.max_run_s:
                rec["reason"] = f"time: predicted {pred_s:.0f}s per run > {plan.max_run_s:.0f}s"
                continue
        try:
            fn = BUILDERS[m](problem, x0)
            c0, e0 = _compile_counter(), _compile_seconds()
            first = _time_call(fn)
            rec["first_call_s"] = first
            rec["xla_compiles"] = _compile_counter() - c0
            rec["xla_compile_event_s"] = _compile_seconds() - e0
            runners[m] = fn
            rec["times_s"] = []
        except Exception as err:  # noqa: BLE001 - record and go on (e.g. out of memory)
            rec["reason"] = (
                f"error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            )
            log(f"    {m}: {rec['reason']}")
            gc.collect()
    for rep in range(plan.reps):
        for m, fn in list(runners.items()):
            spent = records[m]["first_call_s"] + sum(records[m]["times_s"])
            if rep >= 1 and (spent > 2 * plan.max_run_s or (rep >= 2 and min(records[m]["times_s"]) > 2.0)):
                continue  # long runs: fewer repetitions
            try:
                records[m]["times_s"].append(_time_call(fn))
            except Exception as err:  # noqa: BLE001
                records[m]["reason"] = f"error: {type(err).__name__}"
                runners.pop(m)
    for m, fn in runners.items():
        rec = records[m]
        best = min(rec["times_s"])
        rec.update(
            status="ok",
            time_s=best,
            particle_steps_per_s=n * steps / best,
            compile_s=max(rec["first_call_s"] - best, 0.0),
        )
        try:
            rec.update(_summary(np.asarray(fn())))
        except Exception:  # noqa: BLE001
            pass
    runners.clear()
    gc.collect()
    line = " ".join(
        f"{m}={records[m]['particle_steps_per_s'] / 1e6:.2f}M"
        if records[m]["status"] == "ok"
        else f"{m}=skip"
        for m in plan.methods
    )
    log(f"  d={d:3d} K={k:2d} N={n:>8d} steps={steps:4d}: {line}  (particle-steps/s)")
    return list(records.values())


# =====================================================================================================
# 2. steps sweep
# =====================================================================================================
def run_steps_sweep(
    d: int,
    k: int,
    n: int,
    steps_list,
    methods,
    reps: int,
    max_run_s: float,
    log: Callable[[str], None] = print,
) -> list[dict]:
    plan = Plan(methods=tuple(methods), reps=reps, max_run_s=max_run_s, budget_s=math.inf)
    out, last = [], {}
    mem_free = free_memory_bytes()
    for s in steps_list:
        recs = measure_config(
            plan, d, k, n, s, {m: v * 1.0 for m, v in last.items()}, mem_free, time.perf_counter(), log
        )
        for r in recs:
            if r["status"] == "ok":
                last[r["method"]] = r["particle_steps_per_s"]
        out.extend(recs)
    return out


# =====================================================================================================
# 3. compile time and recompile audit
# =====================================================================================================
def measure_compile(d: int = 16, k: int = 8, n: int = 10_000, steps: int = 100) -> dict:
    """Compile time of the default sampler (``euler_maruyama``): first call minus a warm call, and the sum
    of JAX's trace/lower/compile events; then how many compilations each kind of change triggers."""
    _listen()
    jax.clear_caches()
    problem = make_problem(d, k, steps, seed=3)
    x0 = jnp.asarray(start_points(problem, n))
    grid = jnp.asarray(problem.grid)

    key0 = jr.key(0)

    def call(score=problem.score, g=grid, x=x0, key=key0, method="euler_maruyama", **kw):
        return ds.simulate(score, method, g, x=x, key=key, **kw).x

    e0, c0 = _compile_seconds(), _compile_counter()
    first = _time_call(call)
    events, compiles = _compile_seconds() - e0, _compile_counter() - c0
    warm = min(_time_call(call) for _ in range(3))
    out = {
        "d": d,
        "K": k,
        "N": n,
        "steps": steps,
        "first_call_s": first,
        "warm_call_s": warm,
        "compile_s": first - warm,
        "compile_event_s": events,
        "xla_compiles_first_call": compiles,
    }

    other = make_problem(d, k, steps, seed=4)  # same shapes, other values
    new_process = ds.GaussianMixture(
        problem.score.weights,
        problem.score.means,
        jnp.asarray(problem.variances),
        process=ds.VP.linear(beta_max=19.0),
    )
    # each entry: (warm-up kwargs or None, kwargs of the counted call); arguments are built before counting
    changes = {
        "new key": (None, dict(key=jr.key(1))),
        "new start points": (None, dict(x=x0 + 1.0)),
        "new mixture parameters (same K, d)": (None, dict(score=other.score)),
        "new grid values (same steps)": (None, dict(g=ds.grids.karras(problem.process, steps))),
        "new number of particles": (None, dict(x=x0[: n // 2])),
        "new number of steps": (None, dict(g=ds.grids.uniform(problem.process, steps + 1))),
        "save='all' instead of 'final'": (None, dict(save="all")),
        "new process parameter (VP.linear beta_max, a Python float)": (None, dict(score=new_process)),
        "new sampler option (ddim eta, a Python float)": (
            dict(method="ddim", eta=0.3),
            dict(method="ddim", eta=0.6),
        ),
    }
    audit = {}
    for name, (warm_kw, kw) in changes.items():
        if warm_kw is not None:
            _block(call(**warm_kw))
        c0 = _compile_counter()
        _block(call(**kw))
        audit[name] = _compile_counter() - c0
    out["recompiles"] = audit
    return out


def measure_diffrax_compile(d: int = 16, k: int = 8, n: int = 10_000, steps: int = 100) -> dict:
    problem = make_problem(d, k, steps, seed=5)
    x0 = start_points(problem, n)
    out = {}
    for m in ("fused_scan", "diffrax_ubp", "diffrax_vbt"):
        fn = BUILDERS[m](problem, x0)
        first = _time_call(fn)
        warm = min(_time_call(fn) for _ in range(2))
        out[m] = {"first_call_s": first, "warm_call_s": warm, "compile_s": first - warm}
    return out


# =====================================================================================================
# 4. memory of saved trajectories
# =====================================================================================================
def _memory_of(fn, *args) -> dict:
    compiled = jax.jit(fn).lower(*args).compile()
    ma = compiled.memory_analysis()
    if ma is None:  # pragma: no cover - backend without the analysis
        return {}
    arg, outb, tmp = ma.argument_size_in_bytes, ma.output_size_in_bytes, ma.temp_size_in_bytes
    alias = getattr(ma, "alias_size_in_bytes", 0)
    return {
        "argument_bytes": int(arg),
        "output_bytes": int(outb),
        "temp_bytes": int(tmp),
        "peak_bytes": int(arg + outb + tmp - alias),
    }


def measure_memory(
    d: int = 16, k: int = 8, n: int = 100_000, steps: int = 100, chunk: int = 10_000
) -> list[dict]:
    """XLA's compiled peak (arguments + outputs + temporaries) for each ``save`` mode, against the bytes the
    saved states need (``S N d`` floats)."""
    problem = make_problem(d, k, steps)
    grid = jnp.asarray(problem.grid)
    x0 = jnp.asarray(start_points(problem, n))
    item = x0.dtype.itemsize
    out = []
    for save, n_saved in (("final", 1), (10, steps // 10 + 1), ("all", steps + 1)):

        def fn(x, key, save=save):
            traj = ds.simulate(problem.score, "euler_maruyama", grid, x=x, key=key, save=save)
            return traj.xs, traj.x

        rec = {
            "save": str(save),
            "N": n,
            "d": d,
            "steps": steps,
            "saved_states": n_saved,
            "needed_bytes": n_saved * n * d * item,
            **_memory_of(fn, x0, jr.key(0)),
        }
        rec["peak_over_needed"] = rec.get("peak_bytes", float("nan")) / rec["needed_bytes"]
        out.append(rec)

    def chunk_fn(x, key):  # what one chunk of a chunked run holds on the device
        traj = ds.simulate(problem.score, "euler_maruyama", grid, x=x, key=key, save="all")
        return traj.xs, traj.x

    rec = {
        "save": f"all, chunk_size={chunk}",
        "N": n,
        "d": d,
        "steps": steps,
        "saved_states": steps + 1,
        "needed_bytes": (steps + 1) * n * d * item,
        **_memory_of(chunk_fn, x0[:chunk], jr.key(0)),
    }
    rec["device_peak_over_full_output"] = rec.get("peak_bytes", float("nan")) / rec["needed_bytes"]
    out.append(rec)
    return out


# =====================================================================================================
# 5. analysis transforms
# =====================================================================================================
def _best(fn, reps):
    _block(fn())
    return min(_time_call(fn) for _ in range(reps))


def measure_analysis(sizes: dict[str, tuple[int, ...]], d: int = 16, k: int = 8, reps: int = 2) -> list[dict]:
    from diffsim.analysis.metrics import energy_distance

    problem = make_problem(d, k, 10)
    gm = problem.score
    t = jnp.float32(0.3)
    rng = np.random.default_rng(0)
    out = []

    post = jax.jit(jax.vmap(gm.posterior, in_axes=(None, 0)))
    hess = jax.jit(jax.vmap(gm.hessian, in_axes=(None, 0)))
    score_matrix = jax.jit(jax.vmap(gm.score, in_axes=(None, 0)))

    def direct_score(tt, x):  # the per-component residual form, for comparison
        r, s_rot, _ = gm._score_parts(tt, x)
        return jnp.sum(r[:, None] * gm._rotate_out(s_rot), axis=0)

    score_direct = jax.jit(jax.vmap(direct_score, in_axes=(None, 0)))

    transforms = {
        "energy_distance": lambda x: energy_distance(x, x[::-1] + 0.1),
        "log_likelihood": lambda x: ds.log_likelihood(gm, x, rtol=1e-4, atol=1e-4)[0],
        "mixture_posterior": lambda x: post(t, x),
        "mixture_hessian": lambda x: hess(t, x),
        "mixture_score_matrix": lambda x: score_matrix(t, x),
        "mixture_score_direct": lambda x: score_direct(t, x),
    }
    for name, ns in sizes.items():
        fn = transforms[name]
        for n in ns:
            x = jnp.asarray(rng.normal(size=(n, d)).astype(np.float32))
            try:
                sec = _best(lambda fn=fn, x=x: fn(x), reps)
                out.append(
                    {
                        "transform": name,
                        "N": n,
                        "d": d,
                        "K": k,
                        "status": "ok",
                        "time_s": sec,
                        "per_item_s": sec / n,
                    }
                )
            except Exception as err:  # noqa: BLE001
                msg = str(err).splitlines()[0][:200] if str(err) else ""
                out.append(
                    {
                        "transform": name,
                        "N": n,
                        "d": d,
                        "K": k,
                        "status": "skipped",
                        "reason": f"error: {type(err).__name__}: {msg}",
                    }
                )
    return out


def scaling_exponents(records: list[dict], key: str, x: str = "N", y: str = "time_s") -> dict:
    """Least-squares slope of ``log y`` against ``log x`` per group (1 = linear)."""
    groups = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[r[key]].append((r[x], r[y]))
    out = {}
    for g, pts in groups.items():
        if len(pts) >= 2:
            a = np.log(np.array(pts, dtype=float))
            out[g] = float(np.polyfit(a[:, 0], a[:, 1], 1)[0])
    return out


# =====================================================================================================
# ratios, targets, tables, plots
# =====================================================================================================
def ratios(records: list[dict], reference: str = "diffsim") -> list[dict]:
    """Throughput of ``reference`` over each other method's, per size (> 1: diffsim faster)."""
    by = defaultdict(dict)
    for r in records:
        if r["status"] == "ok":
            by[(r["d"], r["K"], r["N"], r["steps"])][r["method"]] = r["particle_steps_per_s"]
    out = []
    for (d, k, n, s), thr in sorted(by.items()):
        if reference not in thr:
            continue
        row = {"d": d, "K": k, "N": n, "steps": s}
        for m, v in thr.items():
            if m != reference:
                row[m] = thr[reference] / v
        out.append(row)
    return out


def check_targets(records: list[dict], compile_info: dict | None, reference: str = "diffsim") -> dict:
    rows = ratios(records, reference)
    fused = [r["fused_scan"] for r in rows if "fused_scan" in r]
    torchsde_r = [r["torchsde"] for r in rows if "torchsde" in r and r["N"] >= 10_000]
    numpy_r = [r["numpy"] for r in rows if "numpy" in r and r["N"] >= 10_000]
    out = {
        "reference": reference,
        "diffsim_over_fused_min": min(fused) if fused else None,
        "diffsim_over_fused_median": float(np.median(fused)) if fused else None,
        "fused_target_0.9_met": (min(fused) >= 0.9) if fused else None,
        "diffsim_over_torchsde_min_N>=1e4": min(torchsde_r) if torchsde_r else None,
        "torchsde_target_3_met": (min(torchsde_r) >= 3.0) if torchsde_r else None,
        "diffsim_over_numpy_min_N>=1e4": min(numpy_r) if numpy_r else None,
        "numpy_target_2_met": (min(numpy_r) >= 2.0) if numpy_r else None,
    }
    if compile_info:
        out["compile_s"] = compile_info["compile_s"]
        out["compile_target_3s_met"] = compile_info["compile_s"] < 3.0
    misses = [r for r in rows if "fused_scan" in r and r["fused_scan"] < 0.9]
    out["sizes_below_0.9_of_fused"] = [{k: r[k] for k in ("d", "K", "N", "fused_scan")} for r in misses]
    return out


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"


def _ratio_table(records, reference, title):
    rows = ratios(records, reference)
    methods = [m for m in ALL_METHODS if m != reference and any(m in r for r in rows)]
    lines = [
        title,
        "",
        "| d | K | N | steps | " + " | ".join(methods) + " |",
        "|---|---|---|---|" + "---|" * len(methods),
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['K']} | {r['N']:.0e} | {r['steps']} | "
            + " | ".join(_fmt(r.get(m)) for m in methods)
            + " |"
        )
    return lines + [""]


def _target_lines(tg, label):
    lines = [
        f"- {label} / fused scan: min {_fmt(tg.get('diffsim_over_fused_min'))}, median "
        f"{_fmt(tg.get('diffsim_over_fused_median'))} (target >= 0.9 at every size)",
        f"- {label} / torchsde, N >= 1e4: min "
        f"{_fmt(tg.get('diffsim_over_torchsde_min_N>=1e4'))} (target >= 3)",
        f"- {label} / NumPy, N >= 1e4: min {_fmt(tg.get('diffsim_over_numpy_min_N>=1e4'))} (target >= 2)",
    ]
    return lines


def markdown_tables(results: dict) -> str:
    dev = results["device"]
    lines = [
        f"Device: **{dev['name']}** ({dev.get('device_kind')}, {dev.get('cpu_model', '')}), "
        f"jax {dev['jax']}; "
        f"load average at start {results['loadavg_start']}, at end {results['loadavg_end']}.",
        "",
    ]
    lines += _ratio_table(
        results["throughput"],
        "diffsim",
        "Throughput of `diffsim.simulate` (default arguments: counter noise) divided by each method's "
        "(particle-steps per second; > 1 means diffsim is faster; `-` = skipped, see the JSON "
        "for why).",
    )
    if any(r["method"] == "diffsim_per_particle" and r["status"] == "ok" for r in results["throughput"]):
        lines += _ratio_table(
            results["throughput"],
            "diffsim_per_particle",
            'The same with `simulate(..., noise="per_particle")` (the default before diffsim 0.2) as the '
            "numerator.",
        )
    if results.get("steps_sweep"):
        lines += _ratio_table(
            results["steps_sweep"], "diffsim", "Steps sweep (default diffsim over each method):"
        )
    tg = results.get("targets", {})
    if tg:
        lines += ["Targets:", ""] + _target_lines(tg, "diffsim")
        if results.get("targets_per_particle"):
            lines += _target_lines(results["targets_per_particle"], 'diffsim noise="per_particle"')
        if "compile_s" in tg:
            lines.append(f"- compile time of the default sampler: {tg['compile_s']:.2f} s (target < 3 s)")
    return "\n".join(lines) + "\n"


def make_plots(results: dict, out_dir: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    color = {m: f"C{i}" for i, m in enumerate(ALL_METHODS)}  # one colour per method in every panel
    recs = [r for r in results["throughput"] if r["status"] == "ok"]
    ds_ = sorted({r["d"] for r in recs})
    ks = sorted({r["K"] for r in recs})
    if recs:
        fig, axes = plt.subplots(
            len(ds_), len(ks), figsize=(4.2 * len(ks), 3.2 * len(ds_)), squeeze=False, sharex=True
        )
        for i, d in enumerate(ds_):
            for j, k in enumerate(ks):
                ax = axes[i, j]
                for m in ALL_METHODS:
                    pts = sorted(
                        (r["N"], r["particle_steps_per_s"])
                        for r in recs
                        if r["d"] == d and r["K"] == k and r["method"] == m
                    )
                    if pts:
                        ax.loglog(
                            *zip(*pts, strict=False),
                            marker="o",
                            label=m,
                            color=color[m],
                            lw=2.5 if m == "diffsim" else 1.2,
                        )
                ax.set_title(f"d={d}, K={k}")
                ax.grid(True, which="both", alpha=0.3)
                if j == 0:
                    ax.set_ylabel("particle-steps / s")
                if i == len(ds_) - 1:
                    ax.set_xlabel("N particles")
        handles = {}
        for ax in axes.ravel():
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=5, fontsize=7)
        fig.suptitle(f"Euler-Maruyama throughput on {name}")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        p = out_dir / f"{name}_throughput.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    ax = axes[0, 0]  # vs d at the largest N measured for every d
    for m in ALL_METHODS:
        pts = []
        for d in ds_:
            cand = [r for r in recs if r["d"] == d and r["K"] == min(ks or [8]) and r["method"] == m]
            if cand:
                best = max(cand, key=lambda r: r["N"])
                pts.append((d, best["particle_steps_per_s"]))
        if pts:
            ax.loglog(*zip(*pts, strict=False), marker="o", label=m, color=color[m])
    ax.set_xlabel(f"d (K = {min(ks or [8])}, largest N measured)")
    ax.set_ylabel("particle-steps / s")
    ax.set_title("throughput vs d")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[0, 1]  # vs K
    for m in ALL_METHODS:
        pts = []
        for k in ks:
            cand = [
                r
                for r in recs
                if r["K"] == k and r["d"] == (16 if 16 in ds_ else ds_[0]) and r["method"] == m
            ]
            if cand:
                best = max(cand, key=lambda r: r["N"])
                pts.append((k, best["particle_steps_per_s"]))
        if pts:
            ax.loglog(*zip(*pts, strict=False), marker="o", label=m, color=color[m])
    ax.set_xlabel("K (d = 16, largest N measured)")
    ax.set_title("throughput vs K")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1, 0]  # vs steps
    sweep = [r for r in results.get("steps_sweep", []) if r["status"] == "ok"]
    for m in ALL_METHODS:
        pts = sorted((r["steps"], r["particle_steps_per_s"]) for r in sweep if r["method"] == m)
        if pts:
            ax.loglog(*zip(*pts, strict=False), marker="o", label=m, color=color[m])
    if sweep:
        ax.set_title(f"throughput vs steps (d={sweep[0]['d']}, K={sweep[0]['K']}, N={sweep[0]['N']})")
    ax.set_xlabel("steps")
    ax.set_ylabel("particle-steps / s")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1, 1]  # scaling: time per step vs N for diffsim, plus analysis transforms
    for d in ds_:
        for k in ks:
            pts = sorted(
                (r["N"], r["time_s"] / r["steps"])
                for r in recs
                if r["d"] == d and r["K"] == k and r["method"] == "diffsim"
            )
            if pts:
                ax.loglog(*zip(*pts, strict=False), marker="o", lw=1, label=f"simulate step d={d} K={k}")
    for name_t in sorted({r["transform"] for r in results.get("analysis", [])}):
        pts = sorted(
            (r["N"], r["time_s"])
            for r in results["analysis"]
            if r["transform"] == name_t and r["status"] == "ok"
        )
        if pts:
            ax.loglog(*zip(*pts, strict=False), marker="s", ls="--", lw=1, label=name_t)
    ax.set_xlabel("N")
    ax.set_ylabel("seconds")
    ax.set_title("scaling (dashed: analysis transforms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=5.5, ncol=2)
    fig.tight_layout()
    p = out_dir / f"{name}_scaling.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(str(p))
    return paths


# =====================================================================================================
# main
# =====================================================================================================
# =====================================================================================================
# small and repeated calls, sweeps, two processes (issue 15): ratios to baselines timed in the same run
# =====================================================================================================
def _best_call(fn, reps: int, inner: int) -> float:
    """Best over ``reps`` of the mean time of ``inner`` back-to-back calls (the last one blocked on)."""
    _block(fn())
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        _block(out)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure_small_calls(
    n: int = 1000, d: int = 2, k: int = 8, steps=(1, 10, 100), reps: int = 5
) -> list[dict]:
    """Per-call cost of short runs at a small size: the hand-fused scan's call time / ``simulate``'s."""
    rows = []
    for st in steps:
        problem = make_problem(d, k, st)
        x0 = start_points(problem, n)
        inner = max(3, int(200 / st))
        fns = {
            "fused_scan": build_fused_scan(problem, x0),
            "diffsim": build_diffsim(problem, x0),
            "diffsim_per_particle": build_diffsim_per_particle(problem, x0),
        }
        times = {m: [] for m in fns}
        for _ in range(reps):  # interleaved: the machine may be shared
            for m, fn in fns.items():
                times[m].append(_best_call(fn, 1, inner))
        best = {m: min(v) for m, v in times.items()}
        rows.append(
            {
                "case": f"d={d}, K={k}, N={n}, {st} step{'s' * (st > 1)}",
                "steps": st,
                "time_s": best,
                "ratio_default": best["fused_scan"] / best["diffsim"],
                "ratio_per_particle": best["fused_scan"] / best["diffsim_per_particle"],
                "load": os.getloadavg(),
            }
        )
    return rows


def _sweep_final(problem, n, steps):
    """A module-level-like function of one guidance scale (reused, so a sweep compiles once)."""
    from diffsim.scores.guidance import guided_mixture

    grid = jnp.asarray(problem.grid)
    key = jr.key(0)

    def final(w):
        return ds.simulate(guided_mixture(problem.score, 0, w), "euler_maruyama", grid, n=n, key=key).x

    return final


def measure_sweep(
    n: int = 1000, d: int = 2, k: int = 8, steps: int = 20, n_scales: int = 10, reps: int = 5
) -> dict:
    """10 guidance scales: one compiled vmapped call (``diffsim.sampling._sweep.sweep``) against a loop of 10
    ``simulate`` calls (both warm), and the compilations each needs for a new set of scales."""
    from diffsim.sampling._sweep import sweep

    problem = make_problem(d, k, steps)
    final = _sweep_final(problem, n, steps)
    scales = jnp.linspace(0.0, 4.0, n_scales)
    scales_host = [float(w) for w in np.asarray(scales)]
    loop = lambda: [final(w) for w in scales_host]  # noqa: E731
    vm = lambda: sweep(final, scales)  # noqa: E731
    c0 = _compile_counter()
    _block(vm())
    compiles_vmap = _compile_counter() - c0
    c0 = _compile_counter()
    _block(loop())
    compiles_loop = _compile_counter() - c0
    t_loop, t_vmap = [], []
    for _ in range(reps):
        t_loop.append(_best_call(loop, 1, 3))
        t_vmap.append(_best_call(vm, 1, 3))
    out_v, out_l = np.asarray(vm()), np.stack([np.asarray(a) for a in loop()])
    return {
        "case": f"{n_scales} guidance scales, d={d}, K={k}, N={n}, {steps} steps",
        "time_loop_s": min(t_loop),
        "time_vmap_s": min(t_vmap),
        "ratio": min(t_loop) / min(t_vmap),
        "compiles_first_vmap": compiles_vmap,
        "compiles_first_loop": compiles_loop,
        "max_abs_diff": float(np.max(np.abs(out_v - out_l))),
        "load": os.getloadavg(),
    }


_MP_WORKER = """
import json, sys, time
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
if sys.argv[2] != "single":
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import jax.numpy as jnp, jax.random as jr, numpy as np
import diffsim as ds
from diffsim.sampling import simulate_sharded
rng = np.random.default_rng(0)
K, d, N, steps = 8, 2, int(sys.argv[4]), int(sys.argv[5])
mix = ds.GaussianMixture(jnp.asarray(rng.dirichlet(np.full(K, 5.0)), jnp.float32),
                         jnp.asarray(rng.normal(scale=2.0, size=(K, d)), jnp.float32),
                         jnp.asarray(rng.uniform(0.05, 0.3, K), jnp.float32), process=ds.VP.linear())
run = lambda: simulate_sharded(mix, "euler_maruyama", steps, n=N, key=jr.key(0)).x.block_until_ready()
run()
best = 1e9
for _ in range(5):
    t0 = time.perf_counter(); run(); best = min(best, time.perf_counter() - t0)
json.dump({"time_s": best, "processes": jax.process_count()}, open(sys.argv[3], "w"))
if sys.argv[2] != "single":
    jax.distributed.shutdown()
"""


def measure_multiprocess(n: int = 20_000, steps: int = 50, timeout_s: float = 300.0) -> dict:
    """``simulate_sharded`` over two processes on this machine (``jax.distributed``, gloo) against one
    process, each a fresh worker timed warm; the ratio is one-process time / two-process time."""
    import socket
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(_MP_WORKER)
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env.pop("XLA_FLAGS", None)
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        args = lambda pid, out: [sys.executable, str(script), address, pid, out, str(n), str(steps)]  # noqa: E731
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{sock.getsockname()[1]}"
        single = Path(tmp) / "single.json"
        subprocess.run(
            args("single", str(single)), env=env, timeout=timeout_s, check=True, capture_output=True
        )
        outs = [Path(tmp) / f"p{i}.json" for i in range(2)]
        procs = [subprocess.Popen(args(str(i), str(outs[i])), env=env) for i in range(2)]
        for p in procs:
            p.wait(timeout=timeout_s)
        if any(p.returncode for p in procs):
            return {"skipped": f"a worker failed (return codes {[p.returncode for p in procs]})"}
        t1 = json.loads(single.read_text())["time_s"]
        t2 = max(json.loads(o.read_text())["time_s"] for o in outs)
    return {
        "case": f"simulate_sharded, d=2, K=8, N={n}, {steps} steps: 2 processes x 1 CPU device vs 1 process",
        "time_one_process_s": t1,
        "time_two_processes_s": t2,
        "ratio": t1 / t2,
        "load": os.getloadavg(),
    }


def sweeps_markdown(res: dict) -> str:
    """The small-call, sweep and multi-process tables (every number a ratio from the same run)."""
    lines = [
        "# Small and repeated calls, sweeps, two processes (`benchmarks/throughput.py --sweeps-only`)",
        "",
        f"Device: {res['device']}; load average at start {res['load_start']}, at end {res['load_end']}.",
        "Every number is a ratio of times measured in this run (interleaved repetitions, best kept).",
        "",
        "## Per-call cost: hand-fused scan's call time / `simulate`'s (1 = as fast as the hand scan)",
        "",
        '| case | default (`noise="counter"`) | `noise="per_particle"` | load |',
        "|---|---|---|---|",
    ]
    for r in res["small_calls"]:
        load = ", ".join(f"{v:.1f}" for v in r["load"])
        lines.append(f"| {r['case']} | {r['ratio_default']:.2f} | {r['ratio_per_particle']:.2f} | {load} |")
    sw = res.get("sweep")
    if sw:
        lines += [
            "",
            "## Sweep: 10 guidance scales, one compiled vmapped call against 10 `simulate` calls",
            "",
            "| case | loop time / vmapped time | compilations (first vmapped sweep, then the loop) "
            "| max abs diff | load |",
            "|---|---|---|---|---|",
            f"| {sw['case']} | {sw['ratio']:.2f} | {sw['compiles_first_vmap']}, {sw['compiles_first_loop']} "
            f"| {sw['max_abs_diff']:.1e} | {', '.join(f'{v:.1f}' for v in sw['load'])} |",
            "",
            "The first loop's compilations include the eager operations of building the guided scores; a "
            "second loop or sweep with new scales compiles nothing. The difference is in float32 (the "
            "benchmark's precision: a batched matrix product may sum in another order); "
            "`tests/test_sweeps.py` checks vmapped sweep = loop to 1e-12 in float64.",
        ]
    mp = res.get("multiprocess")
    if mp:
        lines += ["", "## Two processes on this machine (`jax.distributed`, gloo CPU collectives)", ""]
        if "skipped" in mp:
            lines.append(f"Skipped: {mp['skipped']}")
        else:
            lines += [
                "| case | one-process time / two-process time | load |",
                "|---|---|---|",
                f"| {mp['case']} | {mp['ratio']:.2f} | {', '.join(f'{v:.1f}' for v in mp['load'])} |",
            ]
    return "\n".join(lines) + "\n"


def run_sweeps_section(out_dir: Path, name: str, quick: bool) -> dict:
    """Run the small-call, sweep and multi-process measurements and write ``<name>-sweeps.{json,md}``."""
    res = {"device": name, "load_start": [round(v, 2) for v in os.getloadavg()]}
    res["small_calls"] = measure_small_calls(reps=3 if quick else 5)
    res["sweep"] = measure_sweep(reps=3 if quick else 5)
    try:
        res["multiprocess"] = measure_multiprocess(n=4000 if quick else 20_000)
    except Exception as err:  # recorded, not fatal: e.g. no gloo in this jaxlib
        res["multiprocess"] = {"skipped": f"{type(err).__name__}: {err}"}
    res["load_end"] = [round(v, 2) for v in os.getloadavg()]
    write_atomic(out_dir / f"{name}-sweeps.json", json.dumps(res, indent=1, default=float))
    write_atomic(out_dir / f"{name}-sweeps.md", sweeps_markdown(res))
    return res


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sanity run (about a minute)")
    ap.add_argument("--full", action="store_true", help="run every baseline at every size (slow)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--name", default=None, help="device name for the file names (default: from JAX)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(ALL_METHODS))
    ap.add_argument("--d", default=None, help="comma-separated dimensions")
    ap.add_argument("--k", default=None, help="comma-separated numbers of components")
    ap.add_argument("--n", default=None, help="comma-separated numbers of particles")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--target-s", type=float, default=None, help="aim of one diffsim run in seconds")
    ap.add_argument("--max-run-s", type=float, default=None, help="skip a method predicted to run longer")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget of the throughput grid")
    ap.add_argument(
        "--hints",
        default=None,
        metavar="JSON",
        help="an earlier result file of this device: its throughputs at smaller N choose the steps "
        "and the time-based skips (to continue a grid with --n)",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="merge result files of one device (later win) into <out>/<name>.json and exit",
    )
    ap.add_argument(
        "--sweeps-only",
        action="store_true",
        help="only the per-call, sweep and two-process rows: write <out>/<name>-sweeps.{json,md} and exit",
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: throughput,steps,compile,memory,analysis",
    )
    return ap


def add_ratio_summaries(results: dict) -> None:
    """The per-particle mode's targets and both modes' ratio tables of a result (a run or a merge)."""
    results["targets_per_particle"] = check_targets(results["throughput"], None, "diffsim_per_particle")
    results["ratios"] = ratios(results["throughput"])
    results["ratios_per_particle"] = ratios(results["throughput"], "diffsim_per_particle")


def merge_results(paths: list[str], out_dir: Path, name: str) -> dict:
    """Union of several result files of one device (later files win for the same size and method, and for
    the other sections), with targets, tables and plots recomputed. For runs split over several calls."""
    merged: dict[str, Any] = {}
    thr: dict[tuple, dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data.get("throughput", []):
            key = (r["d"], r["K"], r["N"], r["method"])
            if r["status"] == "ok" or key not in thr or thr[key]["status"] != "ok":
                thr[key] = r
        for k, v in data.items():
            if k != "throughput" and (v or k not in merged):
                merged[k] = v
    merged["throughput"] = sorted(
        thr.values(), key=lambda r: (r["d"], r["K"], r["N"], ALL_METHODS.index(r["method"]))
    )
    merged["merged_from"] = [str(p) for p in paths]
    merged.pop("partial", None)
    merged["targets"] = check_targets(merged["throughput"], merged.get("compile"))
    add_ratio_summaries(merged)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / f"{name}.json", json.dumps(merged, indent=1, default=str))
    write_atomic(out_dir / f"{name}.md", markdown_tables(merged))
    merged["plots"] = make_plots(merged, out_dir, name)
    return merged


def _ints(s):
    return tuple(int(float(v)) for v in s.split(",")) if s else None


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.merge:
        merged = merge_results(args.merge, Path(args.out), args.name or Path(args.merge[0]).stem)
        print(markdown_tables(merged))
        return merged
    _listen()
    t0 = time.perf_counter()
    gpu = jax.devices()[0].platform != "cpu"
    name = args.name or device_name()
    suffix = "-quick" if args.quick else ""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    if args.sweeps_only:
        res = run_sweeps_section(out_dir, name, args.quick)
        print(sweeps_markdown(res))
        return res
    methods = tuple(args.methods.split(",")) if args.methods else tuple(available_methods())

    if args.quick:
        plan = Plan(
            ds_=(2, 16),
            ks=(8,),
            ns=(1_000, 10_000),
            methods=methods,
            reps=2,
            target_s=0.1,
            min_steps=10,
            max_steps=50,
            max_run_s=3.0,
            budget_s=60.0,
        )
        sweep = dict(d=16, k=8, n=2_000, steps_list=(10, 50), reps=2, max_run_s=2.0)
        analysis_sizes = {
            "energy_distance": (500, 1_000),
            "log_likelihood": (20, 40),
            "mixture_posterior": (10_000, 40_000),
            "mixture_hessian": (1_000, 4_000),
            "mixture_score_matrix": (10_000, 40_000),
            "mixture_score_direct": (10_000, 40_000),
        }
        mem = dict(n=10_000, steps=50, chunk=2_000)
    else:
        plan = Plan(methods=methods, restricted=default_restrictions(args.full))
        if gpu:
            plan.target_s, plan.max_steps, plan.max_run_s = 0.3, 1000, 20.0
        sweep = dict(d=16, k=8, n=10_000, steps_list=(10, 100, 1000), reps=3, max_run_s=8.0)
        analysis_sizes = {
            "energy_distance": (1_000, 4_000, 16_000),
            "log_likelihood": (50, 200, 800),
            "mixture_posterior": (10_000, 100_000, 1_000_000),
            "mixture_hessian": (1_000, 10_000, 100_000),
            "mixture_score_matrix": (10_000, 100_000, 1_000_000),
            "mixture_score_direct": (10_000, 100_000, 1_000_000),
        }
        mem = dict(n=100_000, steps=100, chunk=10_000)
        if gpu:
            analysis_sizes["energy_distance"] = (4_000, 16_000, 64_000)
            analysis_sizes["log_likelihood"] = (200, 800, 3_200)
            mem = dict(n=1_000_000, steps=100, chunk=100_000)
    for attr, val in (
        ("ds_", _ints(args.d)),
        ("ks", _ints(args.k)),
        ("ns", _ints(args.n)),
        ("reps", args.reps),
        ("target_s", args.target_s),
        ("max_run_s", args.max_run_s),
        ("budget_s", args.budget_s),
    ):
        if val is not None:
            setattr(plan, attr, val)

    hints = json.loads(Path(args.hints).read_text()).get("throughput", []) if args.hints else None
    results: dict[str, Any] = {
        "device": device_info(),
        "loadavg_start": list(os.getloadavg()),
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "plan": {
            "d": plan.ds_,
            "K": plan.ks,
            "N": plan.ns,
            "methods": plan.methods,
            "reps": plan.reps,
            "target_s": plan.target_s,
            "max_run_s": plan.max_run_s,
            "restricted": sorted(plan.restricted),
        },
    }
    print(f"diffsim benchmark on {name}: {results['device']}", flush=True)

    def log(msg):
        print(msg, flush=True)

    sections = [
        ("compile", lambda: results.__setitem__("compile", measure_compile())),
        ("throughput", lambda: results.__setitem__("throughput", run_throughput(plan, log, hints))),
        (
            "steps",
            lambda: results.__setitem__(
                "steps_sweep",
                run_steps_sweep(
                    sweep["d"],
                    sweep["k"],
                    sweep["n"],
                    sweep["steps_list"],
                    methods,
                    sweep["reps"],
                    sweep["max_run_s"],
                    log,
                ),
            ),
        ),
        (
            "compile",
            lambda: results.__setitem__(
                "compile_peers",
                measure_diffrax_compile(n=2_000 if args.quick else 10_000, steps=20 if args.quick else 100),
            ),
        ),
        ("memory", lambda: results.__setitem__("memory", measure_memory(**mem))),
        ("analysis", lambda: results.__setitem__("analysis", measure_analysis(analysis_sizes))),
    ]
    for sec, fn in sections:
        if sec in skip:
            continue
        ts = time.perf_counter()
        log(f"[{sec}]")
        try:
            fn()
        except Exception:  # noqa: BLE001 - keep the other sections
            results.setdefault("errors", []).append({"section": sec, "traceback": traceback.format_exc()})
            log(traceback.format_exc())
        log(f"[{sec}] {time.perf_counter() - ts:.1f}s")
        partial = dict(results, loadavg_end=list(os.getloadavg()), partial=True)
        write_atomic(out_dir / f"{name}{suffix}.json", json.dumps(partial, indent=1, default=str))

    results.setdefault("throughput", [])
    results["loadavg_end"] = list(os.getloadavg())
    results["targets"] = check_targets(results["throughput"], results.get("compile"))
    add_ratio_summaries(results)
    results["scaling_exponent_diffsim_time_vs_N"] = {
        f"d={d},K={k}": v
        for (d, k), v in scaling_exponents(
            [
                dict(r, dk=(r["d"], r["K"]), per_step=r["time_s"] / r["steps"])
                for r in results["throughput"]
                if r["method"] == "diffsim" and r["status"] == "ok"
            ],
            "dk",
            "N",
            "per_step",
        ).items()
    }
    results["scaling_exponent_analysis"] = scaling_exponents(results.get("analysis", []), "transform")
    results["wall_s"] = time.perf_counter() - t0
    write_atomic(out_dir / f"{name}{suffix}.json", json.dumps(results, indent=1, default=str))
    write_atomic(out_dir / f"{name}{suffix}.md", markdown_tables(results))
    try:
        results["plots"] = make_plots(results, out_dir, name + suffix)
    except Exception:  # noqa: BLE001
        log(traceback.format_exc())
    log(markdown_tables(results))
    log(f"total {results['wall_s']:.0f}s; results in {out_dir / (name + suffix)}.json")
    return results


if __name__ == "__main__":
    main()
