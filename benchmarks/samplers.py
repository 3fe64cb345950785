r"""Time per step of the k-diffusion samplers in ``simulate``, against a hand-fused scan and k-diffusion.

The problem is k-diffusion's: a ``K``-component spherical Gaussian mixture in ``d`` dimensions under VE
(``sigma`` from 80 to 0.002, Karras' rho = 7 schedule of ``n`` noise levels and the step to ``sigma = 0``),
``N`` particles, float32. Per sampler (``euler_ancestral``, ``dpmpp_2s_ancestral``, ``dpmpp_2m_sde``,
``dpmpp_3m_sde``, ``unipc``, ``lms``) one run through

- ``diffsim``: ``simulate(mixture, method, grids.from_sigmas(VE, sigmas), x=x0, key=key,
  final_denoise=True)``, the exact ``GaussianMixture`` (per-point denoiser, ``vmap``-ed);
- ``fused_scan`` (Euler ancestral only): a hand-written ``lax.scan`` of the ancestral step on the batched
  ``(N, d)`` state, the mixture denoiser in matrix form and one batch-level ``jr.normal`` per step: the
  strongest plain-JAX baseline we know how to write for it;
- ``k_diffusion`` (when ``torch`` and ``k-diffusion`` are installed): ``sample_<name>`` from
  ``k_diffusion/sampling.py`` (loaded by file, without the package ``__init__``, as
  ``tests/test_peers.py`` does) on the same sigmas, with the mixture denoiser in matrix form in torch,
  ``torch.randn_like`` as ``noise_sampler`` (k-diffusion's default Brownian tree needs ``torchsde``), under
  ``no_grad`` with as many threads as JAX gets. UniPC is not in k-diffusion (it is diffusers'): no peer.
- ``diffusers`` (when installed): the scheduler's own loop (``EulerAncestralDiscreteScheduler``,
  ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")``, ``UniPCMultistepScheduler(bh2)``,
  ``LMSDiscreteScheduler``) on its default discrete schedule with ``n`` timesteps and the same mixture
  denoiser as an epsilon model; timed only (its grid is diffusers' own), DPM-Solver++(2S) ancestral and
  (3M) SDE have no diffusers scheduler.

All routes make the same number of model calls (``n`` per run, ``2n - 1`` for DPM-Solver++(2S)); the
time per step is the best of ``--reps`` interleaved repetitions divided by ``n``, after a warm-up call
(compilation excluded). As a sanity check the deterministic LMS of diffsim and k-diffusion must agree
(float32), and every route's output mean is recorded.

Usage::

    python benchmarks/samplers.py                 # N = 4096, d = 16, K = 8, n = 32 (a minute on 2 cores)
    python benchmarks/samplers.py --smoke --out /tmp/b

Writes ``<out>/samplers-<device>.json`` and ``.md`` (``-smoke`` for ``--smoke``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import diffsim as ds


try:  # optional extra: the peers
    import torch
except ImportError:  # pragma: no cover
    torch = None

SAMPLERS = ("euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde", "unipc", "lms")
KD_NAMES = {s: f"sample_{s}" for s in SAMPLERS if s != "unipc"}
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def _stub(name):
    mod = types.ModuleType(name)

    def _missing(*args, **kwargs):
        raise RuntimeError(f"{name} is a stub in benchmarks/samplers.py (not installed)")

    mod.__getattr__ = lambda attr: _missing
    return mod


def load_k_diffusion():
    """k-diffusion's ``sampling`` module without its package ``__init__`` (which imports torchvision), or
    ``(None, reason)``."""
    if torch is None:
        return None, "torch is not installed"
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None, "k-diffusion is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "sampling.py"
    pkg = types.ModuleType("_kd_bench")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_bench.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg.utils = utils
    added = {"_kd_bench": pkg, "_kd_bench.utils": utils}
    for name in ("torchdiffeq", "torchsde"):  # unused by the samplers timed here
        if importlib.util.find_spec(name) is None:
            added[name] = _stub(name)
    saved = {k: sys.modules.get(k) for k in added}
    sys.modules.update(added)
    try:
        mod_spec = importlib.util.spec_from_file_location("_kd_bench.sampling", path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
    except Exception as err:  # noqa: BLE001 - any import failure is recorded as the reason
        return None, f"k-diffusion's sampling.py cannot be imported: {err!r}"
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod, None


def make_problem(d: int, k: int, seed: int = 0) -> dict:
    """``k`` components with means ``N(0, 4 I)``, Dirichlet weights, variances in ``[0.05, 0.3]`` (the
    throughput benchmark's mixture)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(k, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(k, 5.0)).astype(np.float32)
    variances = rng.uniform(0.05, 0.3, size=k).astype(np.float32)
    return {"means": means, "weights": weights / weights.sum(), "variances": variances}


def _denoiser_terms(lib, prob):
    """The matrix-form mixture denoiser ``D(x, sigma)`` for spherical components, in ``lib`` (jnp or torch):
    responsibilities from the component log densities, posterior means ``(v x + s2 mu) / (v + s2)``."""
    as_arr = jnp.asarray if lib is jnp else torch.from_numpy
    log_w, mu, var = as_arr(np.log(prob["weights"])), as_arr(prob["means"]), as_arr(prob["variances"])
    mu2 = (mu * mu).sum(-1)[None, :]
    d = mu.shape[1]

    def den(x, s2):
        prec = (1.0 / (var + s2))[None, :]
        quad = prec * ((x * x).sum(-1)[:, None] - 2.0 * (x @ mu.T) + mu2)
        logits = log_w[None, :] + 0.5 * d * lib.log(prec) - 0.5 * quad
        r = jax.nn.softmax(logits, axis=-1) if lib is jnp else torch.softmax(logits, dim=-1)
        rp = r * prec
        return x * (rp * var[None, :]).sum(-1)[:, None] + s2 * (rp @ mu)

    return den


def build_diffsim(method, prob, sigmas, x0, seed=0):
    gm = ds.GaussianMixture(
        jnp.asarray(prob["weights"]),
        jnp.asarray(prob["means"]),
        jnp.asarray(prob["variances"]),
        process=ds.VE(SIGMA_MIN, SIGMA_MAX),
    )
    grid = ds.grids.from_sigmas(gm.process, sigmas[:-1])
    x, key = jnp.asarray(x0), jr.key(seed)
    return lambda: ds.simulate(gm, method, grid, x=x, key=key, final_denoise=True).x


def build_fused_euler_ancestral(prob, sigmas, x0, seed=0):
    den = _denoiser_terms(jnp, prob)
    sig = jnp.asarray(sigmas[:-1], jnp.float32)

    @jax.jit
    def run(x, key):
        def body(x, inp):
            i, s, s_next = inp
            down = s_next * s_next / s  # ancestral_step with eta = 1
            up = jnp.sqrt(s_next * s_next - down * down)
            z = jr.normal(jr.fold_in(key, i), x.shape, x.dtype)
            return x + (x - den(x, s * s)) / s * (down - s) + up * z, None

        x, _ = jax.lax.scan(body, x, (jnp.arange(sig.shape[0] - 1), sig[:-1], sig[1:]))
        return den(x, sig[-1] * sig[-1])  # the step to sigma = 0

    x, key = jnp.asarray(x0), jr.key(seed)
    return lambda: run(x, key)


def build_k_diffusion(kd, method, prob, sigmas, x0, seed=0):
    den = _denoiser_terms(torch, prob)
    sig = torch.from_numpy(np.asarray(sigmas, np.float32))
    fn = getattr(kd, KD_NAMES[method])

    def model(x, sigma):
        s = sigma.reshape(-1)[0]
        return den(x, s * s)

    def run():
        torch.manual_seed(seed)
        x = torch.from_numpy(np.array(x0))
        kw = {} if method == "lms" else {"noise_sampler": lambda s, s_next: torch.randn_like(x)}
        with torch.no_grad():
            return fn(model, x, sig, disable=True, **kw).numpy()

    return run


#: diffsim sampler -> (diffusers scheduler class name, constructor options)
DIFFUSERS_SCHEDULERS = {
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {"solver_type": "bh2"}),
    "dpmpp_2s_ancestral": None,
    "dpmpp_3m_sde": None,
    "lms": ("LMSDiscreteScheduler", {}),
}


_TAKES_GENERATOR = ("EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler")


def load_diffusers():
    """``(diffusers module, None)`` or ``(None, reason)``."""
    if torch is None:
        return None, "torch is not installed"
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - depends on the environment
        return None, f"diffusers is not installed ({err})"
    return diffusers, None


def build_diffusers(dm, method, prob, steps, x0, seed=0):
    """The diffusers scheduler's own loop (``set_timesteps``, ``scale_model_input``, ``step``) with the
    mixture denoiser in matrix form in torch turned into the epsilon prediction the scheduler expects, on
    the scheduler's default 1000-step discrete VP schedule and ``steps`` timesteps. Same number of model
    calls as diffsim, a different grid (diffusers' schedulers live on their discrete schedule): this route
    is timed, not compared number for number (``tests/test_peers.py`` does that)."""
    name, opts = DIFFUSERS_SCHEDULERS[method]
    sched = getattr(dm, name)(**opts)
    sched.set_timesteps(steps)
    den = _denoiser_terms(torch, prob)
    alphas_cumprod = sched.alphas_cumprod.to(torch.float32)
    sigma_space = name in ("EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler")

    def eps(x_in, t):
        a2 = alphas_cumprod[int(t)]
        a, s = a2.sqrt(), (1.0 - a2).sqrt()
        # x_in = a x0 + s eps: the data-space denoiser at y = x_in / a, noise level (s / a)^2
        return (x_in - a * den(x_in / a, (s / a) ** 2)) / s

    def run():
        sched.set_timesteps(steps)  # resets the scheduler's step index and history
        gen = torch.Generator().manual_seed(seed)
        x = torch.from_numpy(np.array(x0)) / SIGMA_MAX * sched.init_noise_sigma
        with torch.no_grad():
            for t in sched.timesteps:
                x_in = sched.scale_model_input(x, t) if sigma_space else x
                kw = {"generator": gen} if name in _TAKES_GENERATOR else {}
                x = sched.step(eps(x_in, t), t, x, **kw).prev_sample
        return x.numpy()

    return run


def _block(out):
    return jax.block_until_ready(out) if not isinstance(out, np.ndarray) else out


def time_routes(routes: dict, reps: int) -> dict:
    """Warm each route once (compilation), then ``reps`` interleaved timed calls; the best is kept."""
    outs, best = {}, {}
    for name, fn in routes.items():
        outs[name] = np.asarray(_block(fn()))
        best[name] = math.inf
    for _ in range(reps):
        for name, fn in routes.items():
            t0 = time.perf_counter()
            _block(fn())
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"best_s": best, "outputs": outs}


def _n_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def device_name() -> str:
    dev = jax.devices()[0]
    return "cpu" if dev.platform == "cpu" else dev.device_kind.lower().replace(" ", "-")


def run_benchmark(n: int, d: int, k: int, steps: int, reps: int, samplers=SAMPLERS, log=print) -> dict:
    kd, kd_reason = load_k_diffusion()
    dm, dm_reason = load_diffusers()
    if torch is not None:
        torch.set_num_threads(_n_threads())
    prob = make_problem(d, k)
    sig = ds.grids.sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
    sigmas = np.concatenate([np.asarray(sig, np.float64), [0.0]])  # k-diffusion's, with the step to 0
    x0 = (SIGMA_MAX * np.random.default_rng(1).standard_normal((n, d))).astype(np.float32)
    records = []
    for method in samplers:
        routes = {"diffsim": build_diffsim(method, prob, sigmas, x0)}
        if method == "euler_ancestral":
            routes["fused_scan"] = build_fused_euler_ancestral(prob, sigmas, x0)
        if kd is not None and method in KD_NAMES:
            routes["k_diffusion"] = build_k_diffusion(kd, method, prob, sigmas, x0)
        if dm is not None and DIFFUSERS_SCHEDULERS.get(method):
            routes["diffusers"] = build_diffusers(dm, method, prob, steps, x0)
        res = time_routes(routes, reps)
        nfe = 2 * steps - 1 if method == "dpmpp_2s_ancestral" else steps
        per_step = {r: res["best_s"][r] / steps for r in routes}
        rec = {
            "sampler": method,
            "model_calls": nfe,
            "time_per_step_s": per_step,
            "mean_output": {r: float(np.mean(o)) for r, o in res["outputs"].items()},
            "ratio_to_diffsim": {r: per_step[r] / per_step["diffsim"] for r in routes if r != "diffsim"},
        }
        if method == "lms" and "k_diffusion" in routes:
            a, b = res["outputs"]["diffsim"], res["outputs"]["k_diffusion"]
            rec["max_abs_diff_k_diffusion"] = float(np.max(np.abs(a - b)))
        if method not in KD_NAMES:
            rec["k_diffusion"] = "no k-diffusion sampler (UniPC is diffusers')"
        elif kd is None:
            rec["k_diffusion"] = f"skipped: {kd_reason}"
        if not DIFFUSERS_SCHEDULERS.get(method):
            rec["diffusers"] = "no diffusers scheduler for this sampler"
        elif dm is None:
            rec["diffusers"] = f"skipped: {dm_reason}"
        log(f"{method}: " + ", ".join(f"{r} {1e3 * t:.3f} ms/step" for r, t in per_step.items()))
        records.append(rec)
    return {
        "problem": {"N": n, "d": d, "K": k, "steps": steps, "reps": reps, "process": "VE(0.002, 80)"},
        "device": {
            "name": device_name(),
            "jax": jax.__version__,
            "torch": None if torch is None else torch.__version__,
            "threads": _n_threads(),
            "python": platform.python_version(),
        },
        "records": records,
    }


def to_markdown(data: dict) -> str:
    p = data["problem"]
    lines = [
        f"# Samplers: time per step ({data['device']['name']}, {data['device']['threads']} threads)",
        "",
        f"N = {p['N']}, d = {p['d']}, K = {p['K']} spherical components, {p['steps']} Karras noise levels "
        f"(VE 80 -> 0.002) and the step to 0, float32, best of {p['reps']}.",
        "",
        "| sampler | model calls | diffsim (ms/step) | fused scan (ms/step) | k-diffusion (ms/step) "
        "| diffusers (ms/step) | fused / diffsim | k-diffusion / diffsim | diffusers / diffsim |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["records"]:
        t, q = r["time_per_step_s"], r["ratio_to_diffsim"]

        def ms(name, t=t):
            return f"{1e3 * t[name]:.3f}" if name in t else "-"

        def ratio(name, q=q):
            return f"{q[name]:.2f}" if name in q else "-"

        lines.append(
            f"| `{r['sampler']}` | {r['model_calls']} | {ms('diffsim')} | {ms('fused_scan')} | "
            f"{ms('k_diffusion')} | {ms('diffusers')} | {ratio('fused_scan')} | {ratio('k_diffusion')} | "
            f"{ratio('diffusers')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="a tiny run (N = 64, d = 2, 6 steps, 1 rep)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.k, args.steps, args.reps = 64, 2, 3, 6, 1
    data = run_benchmark(args.n, args.d, args.k, args.steps, args.reps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"samplers-{data['device']['name']}" + ("-smoke" if args.smoke else "")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2))
    (out / f"{stem}.md").write_text(to_markdown(data))
    return data


if __name__ == "__main__":
    main()
