"""Critical windows on a diffusers pipeline: feature retention under noising-denoising (Li & Chen, ICML 2024).

Clean latents (``--x0 FILE.npy``, shape ``(N, *latent_shape)`` or ``(N, d)``, or ``--n`` latents generated
by the pipeline itself from ``--prompt`` with DDIM on the scheduler's timesteps) are noised exactly to each
``T_hat`` of ``--t-hats`` and re-denoised ``--repeats`` times with the prompt-conditional model, on the
scheduler's timesteps below ``T_hat`` (as diffusers' img2img does with ``strength``), ending with the
denoiser step, with DDPM (reverse SDE) and DDIM (probability-flow ODE). ``--classifier FILE.py:NAME``
(required) maps a batch of latents ``(B, *latent_shape)`` to logits ``(B, C)`` (class = argmax) or to
discrete features ``(B,)``. :func:`diffsim.analysis.feature_retention` gives the retention curve (fraction of
outputs whose class equals the original's, with bootstrap intervals over clean samples), the class-level
keep/forget TVs and the window ``[keep, forget]`` at ``--eps``. With ``--heldout FILE.npy`` (latents not in
the training set) the membership AUC of the per-sample retention areas (``--x0`` as members) is reported.

``--t-hats`` are diffusers timesteps (integers ``n`` in ``0 .. N-1``, ``N = num_train_timesteps``; diffsim
time ``t = (n + 1) / N``) by default, or fractions ``f`` in ``(0, 1]`` with ``--t-hat-units fractions``
(timestep ``round(f N) - 1``, diffusers' img2img ``strength``). Every ``T_hat`` must lie above the last
inference timestep of the schedule (``--steps``), where denoising ends.

Example::

    python experiments/any_model_windows.py --model ./my-pipeline --prompt "a photo of a dog" \\
        --classifier my_classifier.py:logits --t-hats 200,400,600,800 --out runs/windows

Writes ``config.json``, ``results.json``, ``figures/`` and ``report.html`` into ``--out``
(:func:`diffsim.studies.run_experiment`).
"""

from __future__ import annotations

import argparse
import dataclasses
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


SAMPLERS = {"ddpm": "sde", "ddim": "ode"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the windows experiment (``t_hats`` in ``t_hat_units``: timesteps or fractions)."""

    model: str = ""
    prompt: str = ""
    x0: str | None = None
    heldout: str | None = None
    n: int = 16
    classifier: str = ""
    t_hats: tuple[float, ...] = (200, 400, 600, 800)
    t_hat_units: str = "timesteps"
    repeats: int = 8
    steps: int = 25
    samplers: tuple[str, ...] = ("ddpm", "ddim")
    eps: float = 0.05
    n_bootstrap: int = 200
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required (a diffusers pipeline directory).")
        if not self.prompt:
            raise ValueError("--prompt is required.")
        if not self.classifier:
            raise ValueError(
                "--classifier is required for a windows run: give FILE.py:NAME, a callable mapping latents "
                "(B, *latent_shape) to logits (B, C) or discrete features (B,)."
            )
        if not self.t_hats:
            raise ValueError("--t-hats must list at least one noising time.")
        if self.t_hat_units not in ("timesteps", "fractions"):
            raise ValueError(f"--t-hat-units must be 'timesteps' or 'fractions', got {self.t_hat_units!r}.")
        if self.t_hat_units == "fractions" and any(not 0.0 < f <= 1.0 for f in self.t_hats):
            raise ValueError(f"--t-hats: fractions must lie in (0, 1], got {list(self.t_hats)}.")
        if self.t_hat_units == "timesteps" and any(float(v) != int(v) for v in self.t_hats):
            raise ValueError(f"--t-hats: timesteps must be integers, got {list(self.t_hats)}.")
        for name in ("n", "repeats", "steps"):
            if getattr(self, name) < (2 if name == "n" else 1):
                raise ValueError(f"--{name} must be >= {2 if name == 'n' else 1}, got {getattr(self, name)}.")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"--eps must lie in (0, 1), got {self.eps}.")
        for s in self.samplers:
            if s not in SAMPLERS:
                raise ValueError(f"--samplers entries must be 'ddpm' or 'ddim', got {s!r}.")


@dataclasses.dataclass(frozen=True)
class WindowsResult:
    """Per sampler: the retention curve, keep/forget TVs and the window, in diffusers timesteps too."""

    timesteps: list[int]
    schedule: list[int]
    n_clean: int
    samplers: dict[str, Any]
    curves: Any = dataclasses.field(default=None, metadata={"json": False})


def _t_hat_timesteps(config: Config, big_n: int, schedule) -> list[int]:
    """The noising times as diffusers timesteps, checked against the schedule."""
    if config.t_hat_units == "fractions":
        steps = [round(f * big_n) - 1 for f in config.t_hats]
    else:
        steps = [int(v) for v in config.t_hats]
    last = int(min(schedule))
    bad = [s for s in steps if not last < s <= big_n - 1]
    if bad:
        raise ValueError(
            f"--t-hats: timesteps {bad} lie outside the schedule: each must be in ({last}, {big_n - 1}] "
            f"(above the last inference timestep {last} of --steps {len(schedule)}, at most "
            f"num_train_timesteps - 1 = {big_n - 1})."
        )
    if len(set(steps)) != len(steps):
        raise ValueError(f"--t-hats: repeated timesteps {steps}.")
    return sorted(steps)


def _clean_samples(config: Config, pipe, score, grid, key):
    import numpy as np

    from diffsim import simulate

    if config.x0 is None:
        import jax.random as jr

        k_prior, k_run = jr.split(key)
        dtype = np.float32 if pipe.dtype == "float32" else np.float64
        x_prior = pipe.process.prior_sample(k_prior, (config.n, score.dim)).astype(dtype)
        return np.asarray(simulate(score, "ddim", grid, x=x_prior, key=k_run, final_denoise=True).x)
    return _load_latents(config.x0, "--x0", pipe)


def _load_latents(path: str, name: str, pipe):
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{name}: {path!r} does not exist.")
    arr = np.load(file)
    d = int(np.prod(pipe.event_shape))
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != d or arr.shape[0] < 2:
        raise ValueError(
            f"{name}: expected latents of shape (N >= 2, *{tuple(pipe.event_shape)}) or (N, {d}), "
            f"got {arr.shape}."
        )
    return arr.reshape(arr.shape[0], d).astype(np.float32 if pipe.dtype == "float32" else np.float64)


def _record(res, big_n: int) -> dict[str, Any]:
    import numpy as np

    def steps(t):
        return None if not np.isfinite(t) else float(t * big_n - 1.0)

    w = res.window
    return {
        "retention": res.retention.tolist(),
        "retention_stderr": res.retention_stderr.tolist(),
        "retention_low": res.retention_low.tolist(),
        "retention_high": res.retention_high.tolist(),
        "soft_retention": [None if not np.isfinite(v) else float(v) for v in res.soft_retention],
        "keep_tv": res.keep_curve.tv.tolist(),
        "forget_tv": res.forget_curve.tv.tolist(),
        "forget_tv_stderr": res.forget_curve.tv_stderr.tolist(),
        "fresh_frequencies": res.fresh_frequencies.tolist(),
        "window_t": [None if not np.isfinite(v) else float(v) for v in (w.keep, w.forget)],
        "window_timesteps": [steps(w.keep), steps(w.forget)],
        "membership_score": res.membership_score.tolist(),
    }


def compute_windows(config: Config, ctx: Any) -> WindowsResult:
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    from diffsim.analysis import feature_retention, membership_auc, membership_scores

    pipe = load_model(config.model, dtype=config.dtype, device=config.device)
    classifier = load_callable(config.classifier, name="--classifier")
    prompt = parse_prompt(config.prompt, name="--prompt")
    big_n = pipe.num_train_timesteps
    schedule = scheduler_timesteps(pipe, config.steps)
    steps = _t_hat_timesteps(config, big_n, schedule)
    score = pipe.score(prompt)
    grid = np.asarray(pipe.times(schedule), dtype=float)
    key = jr.key(config.seed)
    x0 = _clean_samples(config, pipe, score, jnp.asarray(grid), jr.fold_in(key, 0))
    n_train = x0.shape[0]
    if config.heldout is not None:
        x0 = np.concatenate([x0, _load_latents(config.heldout, "--heldout", pipe)])
    t_hats = np.asarray(pipe.times(np.asarray(steps)), dtype=float)
    out, curves = {}, {}
    for i, name in enumerate(config.samplers):
        res = feature_retention(
            score,
            x0,
            t_hats,
            classifier=classifier,
            key=jr.fold_in(key, 1 + i),
            n_repeats=config.repeats,
            sampler=SAMPLERS[name],
            grid=grid,
            final_denoise=True,
            eps=config.eps,
            n_bootstrap=config.n_bootstrap,
        )
        rec = _record(res, big_n)
        if config.heldout is not None:
            s = membership_scores(res)
            rec["membership_auc"] = membership_auc(s[:n_train], s[n_train:])
        out[name], curves[name] = rec, res
    ctx.note(
        f"{x0.shape[0]} clean latents ({'generated from the prompt' if config.x0 is None else config.x0}), "
        f"{config.repeats} re-denoisings each, {config.steps} scheduler steps, T_hat timesteps {steps}; "
        "intervals: percentile bootstrap over clean samples."
    )
    return WindowsResult(steps, [int(s) for s in schedule], int(x0.shape[0]), out, curves)


def checks_windows(config: Config, r: WindowsResult) -> list:
    import numpy as np

    from diffsim.studies import check

    out = []
    for name, q in r.samplers.items():
        ret = np.asarray(q["retention"])
        ok = bool(np.all(np.isfinite(ret)) and np.all((ret >= 0) & (ret <= 1)))
        out.append(check(f"{name}: retention is a fraction in [0, 1]", True, ok, relation="true"))
        se = np.asarray(q["retention_stderr"])
        out.append(
            check(
                f"{name}: retention at the smallest T_hat >= at the largest (features fade with noise)",
                float(ret[-1]),
                float(ret[0]),
                3.0 * float(np.hypot(se[0], se[-1])),
                relation="ge",
                note="Li & Chen: a feature decided early is kept under little noise and lost under much",
            )
        )
    return out


def figures_windows(config: Config, r: WindowsResult) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from diffsim.studies import Figure

    ts = np.asarray(r.timesteps)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, q in r.samplers.items():
        line = axes[0].plot(ts, q["retention"], marker="o", label=name)[0]
        axes[0].fill_between(ts, q["retention_low"], q["retention_high"], color=line.get_color(), alpha=0.2)
        axes[1].plot(ts, q["keep_tv"], marker="o", color=line.get_color(), label=f"{name} keep (1 - R)")
        axes[1].plot(ts, q["forget_tv"], marker="s", ls="--", color=line.get_color(), label=f"{name} forget")
        for t in q["window_timesteps"]:
            if t is not None:
                axes[1].axvline(t, color=line.get_color(), alpha=0.4, lw=0.8)
    axes[1].axhline(config.eps, color="k", lw=0.8, ls=":", label="eps")
    axes[0].set_title("feature retention R(T_hat) (95% bootstrap band)")
    axes[1].set_title("class-level keep / forget TV")
    for ax in axes:
        ax.set_xlabel("T_hat (diffusers timestep)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return [
        Figure("retention", fig, "Feature retention under noising-denoising and the window [keep, forget].")
    ]


def make_study():
    from diffsim.studies import Part, Study

    return Study(
        "any-model-windows",
        Config,
        parts=[Part("windows", compute_windows, checks_windows, figures_windows)],
        question="Over which noise levels does the model decide the classifier's feature of a clean sample?",
        answer=lambda config, results: _answer(results["windows"]),
        headline="retention",
    )


def _answer(r: WindowsResult) -> str:
    parts = []
    for name, q in r.samplers.items():
        k, f = q["window_timesteps"]
        fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
        text = f"{name}: window [keep, forget] = [{fmt(k)}, {fmt(f)}] (timesteps)"
        if "membership_auc" in q:
            text += f", membership AUC {q['membership_auc']:.3f}"
        parts.append(text)
    return "; ".join(parts) + "."


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--t-hats: expected comma-separated numbers, got {text!r}."
        ) from None


def parse_args(argv: list[str] | None) -> tuple[Config, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, classifier=True)
    parser.add_argument("--prompt", default=None, help="prompt text or comma-separated token ids")
    parser.add_argument(
        "--x0", default=None, help="clean latents FILE.npy (default: generated from the prompt)"
    )
    parser.add_argument("--heldout", default=None, help="held-out latents FILE.npy (membership AUC)")
    parser.add_argument("--n", type=int, default=None, help="clean latents to generate (without --x0)")
    parser.add_argument("--t-hats", type=_numbers, default=None, help="comma-separated noising times")
    parser.add_argument("--t-hat-units", default=None, choices=("timesteps", "fractions"))
    parser.add_argument("--repeats", type=int, default=None, help="re-denoisings per sample and T_hat")
    parser.add_argument("--steps", type=int, default=None, help="scheduler inference steps")
    parser.add_argument("--eps", type=float, default=None, help="tolerance of the window")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    settings = read_config_file(args.config)
    unknown = set(settings) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"--config: unknown settings {sorted(unknown)}.")
    names = ("prompt", "x0", "heldout", "n", "t_hats", "t_hat_units", "classifier", "repeats", "steps", "eps")
    for name in (*names, "seed"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    settings.update(model=args.model, dtype=args.dtype, device=args.device)
    for name in ("t_hats", "samplers"):
        if name in settings:
            settings[name] = tuple(settings[name])
    return Config(**settings), args.out


def main(argv: list[str] | None = None) -> Any:
    """Parse the command line, run the protocol into ``--out`` and return the :class:`Results`."""
    from diffsim.studies import run_experiment

    config, out = parse_args(argv)
    return run_experiment(make_study(), config, out, progress=False)


if __name__ == "__main__":
    main()
