r"""What a diffusers pipeline predicts at each step, and where its prompt acts (Park, Ju & Lee, ESWA 2024,
on any model): per-step x0 predictions streamed during sampling, a classifier's emergence curve on them,
masking (DF-RISE done right) and gradient saliency of the prompt's effect, and insertion/deletion AUCs.

    python experiments/any_model_concepts.py --model PATH --prompt "a cat on a bowl" --out runs/concepts
    python experiments/any_model_concepts.py --model PATH --prompt "0,5,17,33,1,1,1,1" \
        --negative-prompt "0,1,1,1,1,1,1,1" --classifier my_classifier.py:logits --schedule early --out runs/c

**Sampling.** ``--n-samples`` trajectories of ``--method`` (DDIM) with the prompt (classifier-free guided
with ``--guidance`` against ``--negative-prompt`` when it is not 1) on ``--steps`` timesteps:
``--schedule uniform`` (diffusers' "trailing" spacing), ``early`` or ``late`` (Park et al.'s exponential
scheduler with ``--schedule-lam``, in integer timesteps: :func:`diffsim.sampling.grids.paper_timesteps`).
At every step the x0 prediction is streamed (:func:`diffsim.analysis.stream_x0`), with the classifier's
output on it (``--classifier FILE.py:NAME``: a JAX callable ``(B, *event_shape) -> logits (B, C)``);
:func:`diffsim.analysis.emergence_curves` gives its agreement with the final reading and the emergence
log-SNR, and the image's own explained fraction. x0 predictions are decoded with the VAE for the figures.

**Saliency** at grid index ``--saliency-step`` (default: the middle step), on the latent grid, of the
prompt's effect ``x0_hat(x_t | prompt) - x0_hat(x_t | negative prompt)``: masking saliency with RISE
masks (``--n-masks``, ``--mask-cells``), masking saliency of the prediction itself (DF-RISE), and gradient
saliency through the UNet's VJP (torch autograd) of the classifier's logit of ``x0_hat`` (or of the effect
energy without a classifier); insertion and deletion games on the effect with a random-order floor.
Writes ``config.json``, ``results.json``, ``figures/`` and ``report.html`` through
:func:`diffsim.studies.run_experiment`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).parent))
from _any_model import (  # noqa: E402
    add_model_arguments,
    load_callable,
    load_model,
    parse_prompt,
    read_config_file,
)


SCHEDULES = ("uniform", "early", "late")
OUTPUTS = ("logits", "probs")


@dataclass(frozen=True)
class Config:
    """Settings of the experiment (see the module docstring)."""

    model: str = ""
    dtype: str = "float32"
    device: str = "cpu"
    prompt: str = ""
    negative_prompt: str = ""
    guidance: float = 1.0
    classifier: str = ""
    classifier_outputs: str = "logits"
    method: str = "ddim"
    steps: int = 10
    schedule: str = "uniform"
    schedule_lam: float = 60.0
    n_samples: int = 4
    saliency_step: int = -1
    n_masks: int = 64
    mask_cells: int = 2
    auc_pixels_per_step: int = 4
    n_random: int = 4
    seed: int = 0

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required.")
        if not self.prompt:
            raise ValueError("--prompt is required (a string, or comma-separated token ids).")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.classifier_outputs not in OUTPUTS:
            raise ValueError(
                f"--classifier-outputs must be one of {OUTPUTS}, got {self.classifier_outputs!r}."
            )
        for name, low in (
            ("steps", 2),
            ("n_samples", 1),
            ("n_masks", 2),
            ("mask_cells", 1),
            ("auc_pixels_per_step", 1),
            ("n_random", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v!r}.")
        if not self.guidance >= 0:
            raise ValueError(f"--guidance must be >= 0, got {self.guidance}.")
        if not self.schedule_lam >= 0:
            raise ValueError(f"--schedule-lam must be >= 0, got {self.schedule_lam}.")
        if not -1 <= self.saliency_step < self.steps:
            raise ValueError(
                f"--saliency-step must be a grid index in 0..{self.steps - 1} (or -1: the middle step), "
                f"got {self.saliency_step}."
            )


# ------------------------------------------------------------------------------------------------------
# the part
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Concepts:
    """Per-step x0 streams, emergence, saliency maps and games (lists, for results.json)."""

    timesteps: list[int]
    log_snr: list[float]
    emergence_curves: dict
    emergence_log_snr: dict
    labels: list | None
    x0_images: list
    saliency_step: int
    saliency_log_snr: float
    saliency_maps: dict
    auc: dict
    auc_curves: dict
    auc_fractions: list[float]
    vjp_directional: float
    finite_difference: float
    stream_error: float
    final_images: list


def _grid(config: Config, pipe):
    from diffsim.sampling.grids import diffusers_timesteps, from_timesteps, paper_timesteps

    n_train = pipe.num_train_timesteps
    if config.schedule == "uniform":
        ts = diffusers_timesteps(config.steps, n_train, spacing="trailing")
    else:
        ts = paper_timesteps(config.steps, config.schedule_lam, config.schedule, n_train)
    ts = np.asarray(ts, np.int64)
    if np.any(np.diff(ts) >= 0):
        raise ValueError(
            f"--schedule {config.schedule} with --steps {config.steps} and --schedule-lam "
            f"{config.schedule_lam:g} repeats timesteps ({ts.tolist()}): use fewer steps or a smaller lam."
        )
    return ts, from_timesteps(pipe.process, ts, n_train)


def _prompts(config: Config):
    prompt = parse_prompt(config.prompt)
    if not config.negative_prompt and isinstance(prompt, np.ndarray):
        raise ValueError(
            "--negative-prompt is required with a token-id prompt (e.g. the empty prompt's ids "
            "'0,1,1,1,1,1,1,1'): it is the unconditional branch of the prompt's effect."
        )
    negative = parse_prompt(config.negative_prompt, name="--negative-prompt")
    if isinstance(prompt, np.ndarray) != isinstance(negative, np.ndarray) or (
        isinstance(prompt, np.ndarray) and prompt.shape != negative.shape
    ):
        raise ValueError(
            "--negative-prompt must be of the prompt's kind and length (both strings, or token ids of one "
            "length)."
        )
    return prompt, negative


def _thumbnail(img, size: int = 64) -> list:
    """An image (H, W, 3) strided down to at most ``size`` pixels a side, as lists (for results.json)."""
    step = max(1, -(-max(img.shape[:2]) // size))
    return np.round(np.asarray(img)[::step, ::step], 4).tolist()


def _classifier_feature(config: Config, event_shape):
    if not config.classifier:
        return None
    clf = load_callable(config.classifier, name="--classifier")

    def feature(x0):
        return clf(x0.reshape((1, *event_shape)))[0]

    return feature


def compute(config: Config, ctx) -> Concepts:
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import diffsim
    from diffsim.analysis import (
        emergence_curves,
        gradient_saliency,
        model_insertion_deletion,
        model_masking_saliency,
        prediction_fn,
        stream_x0,
    )
    from diffsim.scores import ClassifierFreeGuidance

    prompt, negative = _prompts(config)
    pipe = load_model(config.model, dtype=config.dtype, device=config.device)
    event_shape = tuple(pipe.event_shape)
    feature = _classifier_feature(config, event_shape)
    cond = pipe.score(prompt)
    unc = pipe.score(negative)
    score = cond if config.guidance == 1.0 else ClassifierFreeGuidance(unc, cond, config.guidance)
    timesteps, grid = _grid(config, pipe)
    d = int(np.prod(event_shape))
    key = jr.key(config.seed)
    start = pipe.process.prior_std * jr.normal(jr.fold_in(key, 0), (config.n_samples, d), pipe.dtype)

    # 1. per-step x0 predictions, streamed (the image and the classifier's output only)
    features = {"image": lambda x0: x0}
    if feature is not None:
        out = jax.eval_shape(feature, jax.ShapeDtypeStruct((d,), start.dtype))
        if out.ndim != 1 or out.shape[0] < 2:
            raise ValueError(
                f"--classifier must return logits (B, C) with C >= 2 for a batch (B, *{event_shape}), "
                f"got {(1, *out.shape)} for B = 1."
            )
        features["classifier"] = feature
    stream = stream_x0(
        score, config.method, grid, key=jr.fold_in(key, 1), x=start, features=features, final_denoise=True
    )
    outputs = {"image": "features", "classifier": config.classifier_outputs}
    em = emergence_curves(stream, outputs={k: outputs[k] for k in stream.features})
    x0_steps = stream.features["image"]  # (S, N, d)
    idx = np.unique(np.linspace(0, x0_steps.shape[0] - 1, min(6, x0_steps.shape[0])).astype(int))
    arrays = Path(ctx.out_dir) / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    np.save(arrays / "x0_stream.npy", x0_steps.reshape(x0_steps.shape[:2] + event_shape))
    decoded = pipe.decode(jnp.asarray(x0_steps[idx, 0]))  # (len(idx), H, W, 3)
    np.save(arrays / "x0_stream_decoded_sample0.npy", decoded)
    x0_images = [_thumbnail(img) for img in decoded]
    final_images = [_thumbnail(img) for img in pipe.decode(jnp.asarray(stream.x))]

    # 2. saliency at one step: the states there (the same trajectories: same start, key and grid)
    j = config.steps // 2 if config.saliency_step < 0 else config.saliency_step
    traj = diffsim.simulate(score, config.method, grid, x=start, key=jr.fold_in(key, 1), save=[j])
    xs, t = traj.xs[0], float(grid[j])
    recomputed = np.asarray(jax.vmap(score.denoise, in_axes=(None, 0))(grid[j], xs))
    stream_error = float(np.max(np.abs(recomputed - x0_steps[j])) / max(np.max(np.abs(recomputed)), 1e-12))
    masks_effect, masks_pred, grads = [], [], []
    for i in range(config.n_samples):
        k = jr.fold_in(key, 100 + i)
        common = dict(n_masks=config.n_masks, cells=(config.mask_cells, config.mask_cells), batch_size=64)
        masks_effect.append(
            np.asarray(
                model_masking_saliency(cond, t, xs[i], k, target="effect", unconditional=unc, **common)
            )
        )
        masks_pred.append(np.asarray(model_masking_saliency(score, t, xs[i], k, **common)))
        if feature is not None:
            label = int(em.labels["classifier"][i])
            g = gradient_saliency(score, t, xs[i], objective=lambda x0, c=label: feature(x0)[c])
        else:
            g = gradient_saliency(cond, t, xs[i], target="effect", unconditional=unc)
        grads.append(g.map)
    maps = {
        "masking_effect": np.stack(masks_effect),
        "masking_prediction": np.stack(masks_pred),
        "gradient": np.stack(grads),
    }

    # the VJP through the model (torch autograd for a torch model) against a central finite difference of a
    # random linear functional of its x0 prediction, J(x) = <w, x0_hat(t, x)>, along a random unit direction
    direction = jr.normal(jr.fold_in(key, 7), (d,), xs.dtype)
    direction = direction / jnp.linalg.norm(direction)
    weights = jr.normal(jr.fold_in(key, 8), (d,), xs.dtype)
    fn = prediction_fn(score, t)

    def linear(x0):
        return jnp.dot(weights, x0)

    g0 = gradient_saliency(score, t, xs[0], objective=linear)
    h = 3e-2
    fd = (float(linear(fn(xs[0] + h * direction))) - float(linear(fn(xs[0] - h * direction)))) / (2 * h)
    vjp_dir = float(np.dot(g0.gradient, np.asarray(direction)))

    # 3. insertion / deletion on the prompt's effect
    auc, curves, fractions = {}, {}, []
    for mode in ("insertion", "deletion"):
        game = model_insertion_deletion(
            cond,
            t,
            xs,
            maps,
            jr.fold_in(key, 3),
            mode=mode,
            target="effect",
            unconditional=unc,
            pixels_per_step=config.auc_pixels_per_step,
            n_random=config.n_random,
        )
        auc[mode] = {name: row["auc"] for name, row in game.summary.items()}
        curves[mode] = {name: np.asarray(c).mean(0).tolist() for name, c in game.curves.items()}
        fractions = game.fractions.tolist()
    lam = [float(v) for v in stream.log_snr]
    ctx.note(
        f"{config.n_samples} {config.method} trajectories on timesteps {timesteps.tolist()} "
        f"({config.schedule}); guidance {config.guidance:g}; saliency at step {j} (log-SNR {lam[j]:.2f}), "
        f"{config.n_masks} RISE masks on a {config.mask_cells}x{config.mask_cells} grid."
    )
    return Concepts(
        timesteps.tolist(),
        lam,
        {k: np.asarray(v).tolist() for k, v in em.curves.items()},
        {k: float(v) for k, v in em.emergence.items()},
        np.asarray(em.labels["classifier"]).tolist() if "classifier" in em.labels else None,
        x0_images,
        int(j),
        lam[j],
        {k: v.tolist() for k, v in maps.items()},
        auc,
        curves,
        fractions,
        vjp_dir,
        fd,
        stream_error,
        final_images,
    )


def checks(config: Config, r: Concepts) -> list:
    from diffsim.studies import check

    return [
        check(
            "gradient saliency: the VJP through the model = a central finite difference of the objective",
            r.finite_difference,
            r.vjp_directional,
            2e-2,
            relation="rel",
            note="J = <w, x0_hat(t, x)> for a random w; <dJ/dx, v> for a random unit v against "
            "(J(x + h v) - J(x - h v)) / 2h, h = 3e-2 (float32 model: finite differences good to ~0.5%).",
        ),
        check(
            "the x0 prediction streamed at the saliency step = the denoiser at the state saved there",
            0.0,
            r.stream_error,
            1e-4,
            note="relative max difference; the stream keeps only x0_hat, a second run saves the state.",
        ),
    ]


def figures(config: Config, r: Concepts) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffsim.studies import Figure

    out = []
    n = len(r.x0_images)
    fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.2))
    for ax, img in zip(np.atleast_1d(axes), r.x0_images, strict=True):
        ax.imshow(np.asarray(img))
        ax.axis("off")
    fig.suptitle("x0 predictions along the trajectory (sample 0, decoded)")
    out.append(
        Figure("x0_stream", fig, "Tweedie's x0 prediction at evenly spaced steps, decoded with the VAE.")
    )

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in r.emergence_curves.items():
        ax.plot(r.log_snr, curve, marker="o", label=f"{name} (emerges at {r.emergence_log_snr[name]:.2f})")
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("agreement / explained fraction")
    ax.legend(fontsize=8)
    out.append(Figure("emergence", fig, "Emergence curves of the streamed features over log-SNR."))

    names = list(r.saliency_maps)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.6 * (len(names) + 1), 2.6))
    axes[0].imshow(np.asarray(r.final_images[0]))
    axes[0].set_title("final sample")
    for ax, name in zip(axes[1:], names, strict=True):
        ax.imshow(np.asarray(r.saliency_maps[name])[0], cmap="magma")
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.axis("off")
    out.append(Figure("saliency", fig, f"Saliency maps at step {r.saliency_step} (sample 0, latent grid)."))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, mode in zip(axes, ("insertion", "deletion"), strict=True):
        for name, curve in r.auc_curves[mode].items():
            ax.plot(r.auc_fractions, curve, label=f"{name} ({r.auc[mode][name]:.2f})")
        ax.set_title(mode)
        ax.set_xlabel("fraction of pixels")
        ax.legend(fontsize=7)
    out.append(Figure("insertion_deletion", fig, "Fidelity of the prompt's effect; AUC in the legend."))
    return out


def make_study():
    from diffsim.studies import Part, Study

    return Study(
        name="any-model-concepts",
        config=Config,
        parts=[Part("concepts", compute, checks, figures)],
        description="Per-step x0 predictions, emergence, saliency and insertion/deletion on a diffusers "
        "pipeline.",
        question="What does the model predict at each step, when does the classifier's concept emerge, and "
        "where on the latent grid does the prompt act?",
        headline="saliency",
    )


_INT = (
    "steps",
    "n_samples",
    "saliency_step",
    "n_masks",
    "mask_cells",
    "auc_pixels_per_step",
    "n_random",
    "seed",
)
_FLOAT = ("guidance", "schedule_lam")
_STR = ("prompt", "negative_prompt", "classifier", "classifier_outputs", "method", "schedule")


def parse_args(argv: list[str] | None = None) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, classifier=True)
    for name in _STR:
        if name != "classifier":
            parser.add_argument(f"--{name.replace('_', '-')}", default=None)
    for name in _INT:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in _FLOAT:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    args = parser.parse_args(argv)
    settings = read_config_file(args.config)
    for k, v in vars(args).items():
        if v is not None and k not in ("config", "out"):
            settings[k] = v
    unknown = set(settings) - set(Config.__dataclass_fields__)
    if unknown:
        raise ValueError(f"--config: unknown settings {sorted(unknown)}.")
    return Config(**settings), Path(args.out)


def main(argv: list[str] | None = None):
    from diffsim.studies import run_experiment

    config, out = parse_args(argv)
    _prompts(config)  # clear errors before loading anything
    if config.classifier:
        load_callable(config.classifier, name="--classifier")
    return run_experiment(make_study(), config, out, progress=False)


if __name__ == "__main__":
    main()
