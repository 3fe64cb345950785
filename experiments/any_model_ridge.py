"""Ridge geometry of a diffusers pipeline's samples at scale: the matrix-free normal space of the learned
log-density Hessian (Lanczos on Hessian-vector products), the ridge residual and the Newton distance.

The ridge-manifold picture (a non-memorising model puts its samples on the ``k``-ridge of ``log p_t``, where
the gradient has no component along the ``D - k`` most negative curvature directions) is tested on a
real model: ``--n`` latents are sampled with DDIM on the scheduler's timesteps for ``--prompt``; at each
noise level of ``--t`` (fractions of the process's time range) the noisy sample's top ``k + 1`` Hessian
eigenpairs are computed by :func:`diffsim.analysis.ridge_geometry_matrix_free` (no ``D x D`` matrix: memory
``O(D k)``; the symmetric part ``(J + J^T) / 2`` of the learned score's Jacobian, one JVP and one VJP
through the PyTorch bridge per Hessian-vector product), giving the eigengap, the residual
``|P_perp grad log p_t|`` and the Newton distance to the ridge.

Example::

    python experiments/any_model_ridge.py --model ./my-pipeline --prompt "a photo of a car" --k 8 \\
        --t 0.05,0.2 --out runs/ridge

Writes ``config.json``, ``results.json``, ``figures/`` and ``report.html`` into ``--out``
(:func:`diffsim.studies.run_experiment`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).parent))
from _any_model import (  # noqa: E402
    add_model_arguments,
    load_model,
    parse_prompt,
    read_config_file,
    scheduler_timesteps,
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the ridge-geometry run."""

    model: str = ""
    prompt: str = ""
    k: int = 4
    t: tuple[float, ...] = (0.05, 0.2)
    n: int = 4
    steps: int = 10
    num_iter: int | None = None
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required (a diffusers pipeline directory).")
        if self.k < 1:
            raise ValueError(f"--k (the ridge dimension) must be >= 1, got {self.k}.")
        if not self.t or any(not math.isfinite(v) or not 0.0 < v <= 1.0 for v in self.t):
            raise ValueError(f"--t must be fractions of the time range in (0, 1], got {list(self.t)}.")
        if self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}.")
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}.")


@dataclasses.dataclass(frozen=True)
class RidgeRun:
    """Per noise level: the times, top eigenvalues, gaps, residuals, Newton distances and the share of
    points whose eigengap makes the ridge defined (``valid``)."""

    dim: int
    times: list[float]
    top_eigvals: list[list[list[float]]]
    relative_gap: list[list[float]]
    residual: list[list[float]]
    newton_distance: list[list[float]]
    valid_share: list[float]
    max_ritz_residual: list[float]


def compute_ridge(config: Config, ctx: Any) -> RidgeRun:
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import diffsim
    from diffsim.analysis import ridge_geometry_matrix_free

    pipe = load_model(config.model, dtype=config.dtype, device=config.device)
    prompt = parse_prompt(config.prompt, name="--prompt")
    score = pipe.score(prompt) if pipe.conditional else pipe.score()
    d = score.dim
    if config.k >= d:
        raise ValueError(f"--k must be below the latent dimension {d}, got {config.k}.")
    p = score.process
    times = [float(p.t_min + f * (p.t_max - p.t_min)) for f in config.t]
    key = jr.key(config.seed)
    k_sample, k_noise, k_lanczos = jr.split(key, 3)
    grid = pipe.times(scheduler_timesteps(pipe, config.steps))
    x0 = diffsim.simulate(score, "ddim", grid, n=config.n, key=k_sample, final_denoise=True).x
    out: dict[str, list] = {
        f.name: [] for f in dataclasses.fields(RidgeRun) if f.name not in ("dim", "times")
    }
    for i, t in enumerate(ctx.progress(times, "noise levels")):
        t_arr = jnp.asarray(t, x0.dtype)
        z = jr.normal(jr.fold_in(k_noise, i), x0.shape, x0.dtype)
        xt = p.alpha(t_arr) * x0 + p.sigma(t_arr) * z
        geo = ridge_geometry_matrix_free(
            score, t_arr, xt, config.k, key=jr.fold_in(k_lanczos, i), num_iter=config.num_iter
        )
        geo = jax.tree.map(np.asarray, geo)
        out["top_eigvals"].append(geo.top_eigvals.tolist())
        out["relative_gap"].append(geo.relative_gap.tolist())
        out["residual"].append(np.nan_to_num(geo.residual, nan=-1.0).tolist())
        out["newton_distance"].append(np.nan_to_num(geo.newton_distance, nan=-1.0).tolist())
        out["valid_share"].append(float(np.mean(geo.valid)))
        out["max_ritz_residual"].append(float(np.max(geo.ritz_residual)))
    ctx.note(
        f"{config.n} DDIM samples ({config.steps} scheduler steps) of prompt {config.prompt!r}, latent "
        f"dimension {d}, ridge dimension k = {config.k}; residual and Newton distance -1 where the eigengap "
        "leaves the ridge undefined."
    )
    return RidgeRun(d, times, **out)


def checks_ridge(config: Config, r: RidgeRun) -> list:
    import numpy as np

    from diffsim.studies import check

    out = []
    for t, eig, ritz in zip(r.times, r.top_eigvals, r.max_ritz_residual, strict=True):
        eig = np.asarray(eig)
        out.append(
            check(
                f"t={t:.3g}: top eigenvalues finite and descending",
                True,
                bool(np.all(np.isfinite(eig)) and np.all(np.diff(eig, axis=-1) <= 1e-6 * np.abs(eig).max())),
                relation="true",
            )
        )
        out.append(
            check(
                f"t={t:.3g}: Lanczos Ritz pairs converged (residual below the spectrum's scale)",
                0.1 * float(np.abs(eig).max()),
                ritz,
                relation="le",
                note="the largest |H y - theta y| of the top k + 1 pairs",
            )
        )
    return out


def figures_ridge(config: Config, r: RidgeRun) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from diffsim.studies import Figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for t, eig in zip(r.times, r.top_eigvals, strict=True):
        eig = np.asarray(eig)
        axes[0].plot(np.arange(1, eig.shape[-1] + 1), eig.mean(0), marker="o", label=f"t = {t:.3g}")
        res = np.asarray(r.residual[r.times.index(t)])
        axes[1].scatter(np.full(res.shape, t), np.where(res >= 0, res, np.nan), s=12)
    axes[0].set_xlabel("eigenvalue index (descending)")
    axes[0].set_title("top Hessian eigenvalues (mean over samples)")
    axes[0].legend()
    axes[1].set_xlabel("t")
    axes[1].set_title("ridge residual |P_perp grad log p_t|")
    fig.tight_layout()
    return [
        Figure("ridge_spectrum", fig, "Matrix-free top Hessian spectrum and ridge residuals per noise level.")
    ]


def make_study():
    from diffsim.studies import Part, Study

    return Study(
        "any-model-ridge",
        Config,
        parts=[Part("ridge", compute_ridge, checks_ridge, figures_ridge)],
        question="Do the model's samples sit on a ridge of its learned log-density?",
        answer=lambda config, results: _answer(results["ridge"]),
        headline="ridge_spectrum",
    )


def _answer(r: RidgeRun) -> str:
    parts = [
        f"t = {t:.3g}: ridge defined at {v:.0%} of the samples"
        for t, v in zip(r.times, r.valid_share, strict=True)
    ]
    return f"Latent dimension {r.dim}. " + "; ".join(parts) + "."


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}.") from None


def parse_args(argv: list[str] | None) -> tuple[Config, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--prompt", default=None, help="prompt text or comma-separated token ids")
    parser.add_argument("--k", type=int, default=None, help="ridge dimension")
    parser.add_argument("--t", type=_floats, default=None, help="noise levels, fractions of the time range")
    parser.add_argument("--n", type=int, default=None, help="samples")
    parser.add_argument("--steps", type=int, default=None, help="scheduler steps of the DDIM sampling")
    parser.add_argument("--num-iter", type=int, default=None, help="Lanczos block iterations")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    settings = read_config_file(args.config)
    unknown = set(settings) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"--config: unknown settings {sorted(unknown)}.")
    for name in ("prompt", "k", "t", "n", "steps", "num_iter", "seed"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    settings.update(model=args.model, dtype=args.dtype, device=args.device)
    if "t" in settings:
        settings["t"] = tuple(float(v) for v in settings["t"])
    return Config(**settings), args.out


def main(argv: list[str] | None = None) -> Any:
    """Parse the command line, run into ``--out`` and return the :class:`Results`."""
    from diffsim.studies import run_experiment

    config, out = parse_args(argv)
    return run_experiment(make_study(), config, out, progress=False)


if __name__ == "__main__":
    main()
