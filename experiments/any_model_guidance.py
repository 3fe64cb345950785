"""Guidance-scale sweep on a diffusers pipeline: classifier confidence and diversity versus the
classifier-free guidance scale, for DDPM and DDIM (Wu, Chen, Li, Wang & Wei, ICML 2024).

For each guidance scale ``w`` (diffusers' ``guidance_scale``: ``eps_u + w (eps_c - eps_u)``, the
unconditional branch being ``--negative-prompt``), ``--n`` latents are sampled on the scheduler's
timesteps with DDPM (reverse SDE, Euler-Maruyama) and DDIM (probability-flow ODE), ending with the
denoiser step as diffusers does, and measured by :func:`diffsim.analysis.model_guidance_sweep`: the mean
probability of ``--target`` under ``--classifier`` and the fraction classified as it; the kNN entropy of
``--features`` (default: the flat latents) and the per-coordinate variance of the latents.

Example::

    python experiments/any_model_guidance.py --model ./my-pipeline --prompt "a photo of a car" \\
        --scales 1,3,7.5 --classifier my_classifier.py:logits --target 0 --out runs/guidance

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
    load_callable,
    load_model,
    parse_prompt,
    read_config_file,
    scheduler_timesteps,
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the guidance sweep (scales in diffusers' ``guidance_scale`` = diffsim's ``w``)."""

    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    scales: tuple[float, ...] = (1.0, 3.0, 7.5)
    classifier: str = ""
    features: str | None = None
    target: int = 0
    n: int = 64
    steps: int = 25
    samplers: tuple[str, ...] = ("ddpm", "ddim")
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required (a diffusers pipeline directory).")
        if not self.prompt:
            raise ValueError("--prompt is required.")
        if not self.classifier:
            raise ValueError("--classifier is required for a guidance sweep: give FILE.py:NAME.")
        sc = tuple(self.scales)
        if not sc or any(not math.isfinite(s) or s < 0 for s in sc):
            raise ValueError(f"--scales must be finite guidance scales >= 0, got {list(sc)}.")
        if self.n < 2:
            raise ValueError(f"--n must be >= 2 (kNN entropy needs neighbours), got {self.n}.")
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}.")
        if self.target < 0:
            raise ValueError(f"--target must be a class index >= 0, got {self.target}.")
        for s in self.samplers:
            if s not in ("ddpm", "ddim"):
                raise ValueError(f"--samplers entries must be 'ddpm' or 'ddim', got {s!r}.")


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The sweep's numbers per sampler (``ModelGuidanceSweep.to_dict``) and the diffusers timesteps."""

    summary: dict[str, Any]
    timesteps: list[int]
    sweep: Any = dataclasses.field(default=None, metadata={"json": False})


def compute_sweep(config: Config, ctx: Any) -> SweepResult:
    import jax.random as jr

    from diffsim.analysis import model_guidance_sweep

    pipe = load_model(config.model, dtype=config.dtype, device=config.device)
    classifier = load_callable(config.classifier, name="--classifier")
    features = None if config.features is None else load_callable(config.features, name="--features")
    prompt = parse_prompt(config.prompt, name="--prompt")
    negative = parse_prompt(config.negative_prompt, name="--negative-prompt")
    if negative is None or (isinstance(negative, str) and not negative and pipe.tokenizer is None):
        raise ValueError(
            "--negative-prompt: this pipeline has no tokenizer; give the empty prompt as token ids."
        )
    if not isinstance(prompt, str) and not isinstance(negative, str) and prompt.shape != negative.shape:
        raise ValueError(
            f"--prompt and --negative-prompt token ids must have the same length, got {prompt.shape[0]} and "
            f"{negative.shape[0]}."
        )
    guided = pipe.guided(prompt, 1.0, negative_prompt=negative)
    timesteps = scheduler_timesteps(pipe, config.steps)
    sweep = model_guidance_sweep(
        guided,
        config.scales,
        classifier,
        config.target,
        key=jr.key(config.seed),
        n=config.n,
        grid=pipe.times(timesteps),
        samplers=config.samplers,
        features=features,
        final_denoise=True,
    )
    ctx.note(
        f"{config.n} samples per (sampler, scale), {config.steps} scheduler steps, prompt {config.prompt!r}, "
        f"negative prompt {config.negative_prompt!r}; target class {config.target}."
    )
    return SweepResult(sweep.to_dict(), [int(t) for t in timesteps], sweep)


def checks_sweep(config: Config, r: SweepResult) -> list:
    import numpy as np

    from diffsim.studies import check

    out = []
    for sampler, q in r.summary["samplers"].items():
        values = np.asarray([q[k] for k in ("confidence", "knn_entropy", "pixel_variance")])
        out.append(
            check(
                f"{sampler}: every measurement is finite",
                True,
                bool(np.all(np.isfinite(values))),
                relation="true",
            )
        )
        conf = np.asarray(q["confidence"])
        out.append(
            check(
                f"{sampler}: confidence at the largest scale >= at the smallest (Wu et al.)",
                float(conf[0]),
                float(conf[-1]),
                3.0 * float(np.hypot(q["confidence_se"][0], q["confidence_se"][-1])),
                relation="ge",
                note="a prediction for well-trained models; a random or mis-specified model may fail it",
            )
        )
    return out


def figures_sweep(config: Config, r: SweepResult) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from diffsim.studies import Figure

    scales = np.asarray(r.summary["scales"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for sampler, q in r.summary["samplers"].items():
        axes[0].errorbar(scales, q["confidence"], yerr=q["confidence_se"], marker="o", label=sampler)
        axes[1].errorbar(scales, q["knn_entropy"], yerr=q["knn_entropy_se"], marker="o", label=sampler)
        axes[2].plot(scales, q["pixel_variance"], marker="o", label=sampler)
    for ax, title in zip(
        axes,
        ("confidence E[p(target | X)]", "kNN entropy of features (nats)", "per-coordinate variance"),
        strict=True,
    ):
        ax.set_xlabel("guidance scale w")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    return [
        Figure("guidance_sweep", fig, "Confidence and diversity against the guidance scale, DDPM and DDIM.")
    ]


def make_study():
    from diffsim.studies import Part, Study

    return Study(
        "any-model-guidance",
        Config,
        parts=[Part("sweep", compute_sweep, checks_sweep, figures_sweep)],
        question="How do classifier confidence and sample diversity change with the guidance scale?",
        answer=lambda config, results: _answer(results["sweep"]),
        headline="guidance_sweep",
    )


def _answer(r: SweepResult) -> str:
    parts = []
    for sampler, q in r.summary["samplers"].items():
        c, h = q["confidence"], q["knn_entropy"]
        parts.append(
            f"{sampler}: confidence {c[0]:.3f} -> {c[-1]:.3f}, kNN entropy {h[0]:.2f} -> {h[-1]:.2f}"
        )
        parts[-1] += f" (scales {r.summary['scales'][0]:g} -> {r.summary['scales'][-1]:g})"
    return "; ".join(parts) + "."


def _scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--scales: expected comma-separated numbers, got {text!r}."
        ) from None


def parse_args(argv: list[str] | None) -> tuple[Config, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, classifier=True)
    parser.add_argument("--prompt", default=None, help="prompt text or comma-separated token ids")
    parser.add_argument("--negative-prompt", default=None, help="unconditional branch (default: empty)")
    parser.add_argument("--scales", type=_scales, default=None, help="comma-separated guidance scales")
    parser.add_argument("--features", default=None, help="FILE.py:NAME, a callable (B, *shape) -> (B, F)")
    parser.add_argument("--target", type=int, default=None, help="class index of the prompt's concept")
    parser.add_argument("--n", type=int, default=None, help="samples per sampler and scale")
    parser.add_argument("--steps", type=int, default=None, help="scheduler steps")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    settings = read_config_file(args.config)
    unknown = set(settings) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"--config: unknown settings {sorted(unknown)}.")
    for name in (
        "prompt",
        "negative_prompt",
        "scales",
        "classifier",
        "features",
        "target",
        "n",
        "steps",
        "seed",
    ):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    settings.update(model=args.model, dtype=args.dtype, device=args.device)
    if "scales" in settings:
        settings["scales"] = tuple(float(s) for s in settings["scales"])
    if "samplers" in settings:
        settings["samplers"] = tuple(settings["samplers"])
    return Config(**settings), args.out


def main(argv: list[str] | None = None) -> Any:
    """Parse the command line, run the sweep into ``--out`` and return the :class:`Results`."""
    from diffsim.studies import run_experiment

    config, out = parse_args(argv)
    return run_experiment(make_study(), config, out, progress=False)


if __name__ == "__main__":
    main()
