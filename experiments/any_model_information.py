r"""Mutual information, PID / CPID and pixel-wise PID maps of two words of a prompt on a diffusers pipeline
(DiffusionPID, Dewan et al. NeurIPS 2024, with the I-MMSE estimators of Kong et al. ICLR 2024).

    python experiments/any_model_information.py --model PATH --prompt "a cat on a bowl" \
        --first cat --second bowl --out runs/info
    python experiments/any_model_information.py --model PATH --prompt "0,5,17,33,1,1,1,1" \
        --first 1 --second 2 --out runs/info          # token ids: positions to drop (replaced by --pad-id)

**Condition variants** (the four conditions of :func:`diffsim.analysis.variant_pid_information`, in this
order):

- ``--mode cpid`` (default; conditional PID given the rest of the prompt ``c``): prompt without both
  words, without the second (has ``y1``), without the first (has ``y2``), the full prompt;
- ``--mode pid``: the empty prompt, the first word alone, the second alone, both words.

Words are dropped from a string prompt (each ``--first`` / ``--second`` word once), or, for token ids,
the positions ``--first`` / ``--second`` are replaced by ``--pad-id`` (so every variant keeps the prompt's
length). ``--variants P0 P1 P2 P3`` gives the four prompts explicitly. Variants of different token lengths
cannot share one model call and are an error.

**Clean samples**: ``--x0 FILE.npy`` (``(N, *event_shape)`` or ``(N, d)`` latents) or ``--n-samples``
generated with the full prompt (DDIM on ``--steps`` timesteps, final denoising step). One noise draw per
log-SNR serves all four variants in ONE batched UNet call. Writes ``results.json`` (MI by both estimators,
PID terms for ``pointwise_min`` and ``mmi``, nats and bits), ``figures/`` (pixel-wise PID maps) and the
report, through :func:`diffsim.studies.run_experiment`.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, str(Path(__file__).parent))
from _any_model import add_model_arguments, load_model, parse_prompt, read_config_file  # noqa: E402


MODES = ("cpid", "pid")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Config:
    """Settings of the experiment (see the module docstring)."""

    model: str = ""
    dtype: str = "float32"
    device: str = "cpu"
    prompt: str = ""
    first: str = ""
    second: str = ""
    variants: tuple[str, ...] = ()
    mode: str = "cpid"
    pad_id: int = 1
    x0: str = ""
    n_samples: int = 4
    steps: int = 10
    n_logsnr: int = 32
    n_noise: int = 1
    logsnr_loc: float = 1.0
    logsnr_scale: float = 2.0
    logsnr_clip: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required.")
        if not self.variants and not (self.prompt and self.first and self.second):
            raise ValueError("--prompt, --first and --second are required (or --variants P0 P1 P2 P3).")
        if self.variants and len(self.variants) != 4:
            raise ValueError(
                f"--variants: expected 4 prompts [c, c+y1, c+y2, c+y1+y2], got {len(self.variants)}."
            )
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {MODES}, got {self.mode!r}.")
        for name in ("n_samples", "steps", "n_logsnr", "n_noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}.")
        if not (self.logsnr_scale > 0 and self.logsnr_clip > 0):
            raise ValueError("--logsnr-scale and --logsnr-clip must be positive.")


# ------------------------------------------------------------------------------------------------------
# prompt variants
# ------------------------------------------------------------------------------------------------------
def _drop_positions(ids: np.ndarray, positions, pad_id: int) -> np.ndarray:
    out = ids.copy()
    out[list(positions)] = pad_id
    return out


def _position(text: str, n: int, name: str) -> int:
    try:
        p = int(text)
    except ValueError:
        raise ValueError(
            f"{name}: with a token-id prompt, give a token position (an integer), got {text!r}."
        ) from None
    if not 0 <= p < n:
        raise ValueError(f"{name}: position {p} is outside the prompt of {n} tokens.")
    return p


def _drop_word(words: list[str], word: str, name: str) -> list[str]:
    if word not in words:
        raise ValueError(f"{name}: the word {word!r} is not in the prompt {' '.join(words)!r}.")
    out = list(words)
    out.remove(word)
    return out


def prompt_variants(config: Config) -> list[Any]:
    """The four prompts (strings or token-id arrays) in the order ``[c, c+y1, c+y2, c+y1+y2]``."""
    if config.variants:
        out = [parse_prompt(p, name=f"--variants[{i}]") for i, p in enumerate(config.variants)]
    else:
        prompt = parse_prompt(config.prompt)
        if isinstance(prompt, np.ndarray):
            n = prompt.shape[0]
            a, b = _position(config.first, n, "--first"), _position(config.second, n, "--second")
            if a == b:
                raise ValueError("--first and --second must be different positions.")
            keep = [0] if config.mode == "pid" else []  # pid: keep the start token only
            every = set(range(n)) - set(keep)
            if config.mode == "cpid":
                out = [
                    _drop_positions(prompt, [a, b], config.pad_id),
                    _drop_positions(prompt, [b], config.pad_id),
                    _drop_positions(prompt, [a], config.pad_id),
                    prompt,
                ]
            else:
                out = [
                    _drop_positions(prompt, every, config.pad_id),
                    _drop_positions(prompt, every - {a}, config.pad_id),
                    _drop_positions(prompt, every - {b}, config.pad_id),
                    _drop_positions(prompt, every - {a, b}, config.pad_id),
                ]
        else:
            words = prompt.split()
            for w, name in ((config.first, "--first"), (config.second, "--second")):
                _drop_word(words, w, name)
            if config.mode == "cpid":
                without_b = _drop_word(words, config.second, "--second")
                without_a = _drop_word(words, config.first, "--first")
                both = _drop_word(without_b, config.first, "--first")
                out = [" ".join(both), " ".join(without_b), " ".join(without_a), prompt]
            else:
                out = ["", config.first, config.second, f"{config.first} {config.second}"]
    kinds = {isinstance(p, np.ndarray) for p in out}
    if len(kinds) > 1:
        raise ValueError("Prompt variants mix token ids and strings.")
    lengths = [int(p.shape[0]) for p in out if isinstance(p, np.ndarray)]
    if lengths and len(set(lengths)) > 1:
        raise ValueError(
            f"Prompt variants have different token lengths {lengths}: they cannot share one batched model "
            "call (replace dropped tokens by the pad id instead of removing them)."
        )
    return out


# ------------------------------------------------------------------------------------------------------
# the part
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Information:
    """Image-level informations and PID terms (bits), and the pixel maps (bits, mean over samples)."""

    variants: list[str]
    n_samples: int
    mutual_information_bits: dict[str, list[float]]
    pid_bits: dict[str, dict[str, list[float]]]
    pixel_maps_bits: dict[str, list]
    pixel_sum_bits: list[float]
    batched: bool


def _load_x0(path: str, pipe) -> np.ndarray:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--x0: {path!r} does not exist.")
    arr = np.load(file)
    d = int(np.prod(pipe.event_shape))
    if arr.ndim < 1 or arr.size == 0 or arr.size % d or (arr.ndim > 1 and int(np.prod(arr.shape[1:])) != d):
        raise ValueError(
            f"--x0: expected clean samples of shape (N, *{tuple(pipe.event_shape)}) or (N, {d}), "
            f"got {arr.shape}."
        )
    arr = arr.reshape(-1, d)
    if not np.all(np.isfinite(arr)):
        raise ValueError("--x0 contains non-finite values.")
    return arr.astype(pipe.dtype)


def compute(config: Config, ctx) -> Information:
    import jax.random as jr

    import diffsim
    from diffsim.analysis.information import (
        ConditionVariants,
        LogSNRScheme,
        decompose,
        pixel_pid,
        variant_pid_information,
    )
    from diffsim.sampling.grids import diffusers_timesteps, from_timesteps

    prompts = prompt_variants(config)
    pipe = load_model(config.model, dtype=config.dtype, device=config.device)
    scores = [pipe.score(p) for p in prompts]
    variants = ConditionVariants.from_scores(scores, names=["c", "c+y1", "c+y2", "c+y1+y2"], batch="always")
    key = jr.key(config.seed)
    if config.x0:
        x0 = _load_x0(config.x0, pipe)
    else:
        ts = diffusers_timesteps(config.steps, pipe.num_train_timesteps, spacing="trailing")
        grid = from_timesteps(pipe.process, ts, pipe.num_train_timesteps)
        d = int(np.prod(pipe.event_shape))
        start = pipe.process.prior_std * jr.normal(jr.fold_in(key, 0), (config.n_samples, d), pipe.dtype)
        traj = diffsim.simulate(scores[3], "ddim", grid, x=start, key=jr.fold_in(key, 2), final_denoise=True)
        x0 = np.asarray(traj.x)
    scheme = LogSNRScheme.logistic(
        config.n_logsnr, config.logsnr_loc, config.logsnr_scale, config.logsnr_clip
    )
    info = variant_pid_information(variants, x0, jr.fold_in(key, 1), scheme=scheme, n_noise=config.n_noise)
    w = info.weights
    mi = {
        "standard": (np.asarray(w) @ info.pointwise / LN2).tolist(),
        "orthogonal": (np.asarray(w) @ info.orthogonal / LN2).tolist(),
    }
    pid = {
        f"{m}/{e}": [float(v) / LN2 for v in decompose(info, m, estimator=e).terms.as_tuple()]
        for m in ("pointwise_min", "mmi")
        for e in ("standard", "orthogonal")
    }
    pix = pixel_pid(info, pipe.event_shape)
    maps = {k: (np.asarray(v) / LN2).tolist() for k, v in pix.maps.as_dict().items()}
    total = (np.asarray(w) @ pix.information.reshape(len(w), 3, -1).sum(-1) / LN2).tolist()
    ctx.note(
        f"Variants {[str(p if isinstance(p, str) else p.tolist()) for p in prompts]}; {x0.shape[0]} clean "
        f"samples; {config.n_logsnr} truncated-logistic log-SNRs (loc {config.logsnr_loc:g}, scale "
        f"{config.logsnr_scale:g}, clip {config.logsnr_clip:g}) x {config.n_noise} noise draws."
    )
    return Information(
        [str(p if isinstance(p, str) else p.tolist()) for p in prompts],
        int(x0.shape[0]),
        mi,
        pid,
        maps,
        total,
        variants.batched,
    )


def checks(config: Config, r: Information) -> list:
    from diffsim.studies import check

    orth_pid = r.pid_bits["pointwise_min/orthogonal"]
    return [
        check(
            "pixel-wise orthogonal informations sum to the image-level orthogonal informations (bits)",
            r.mutual_information_bits["orthogonal"],
            r.pixel_sum_bits,
            1e-3,
            note="per-coordinate integrals vs the image-level integrand on the same draws.",
        ),
        check(
            "PID terms add up: R + U1 + U2 + S = I(x; y1, y2 | c) (orthogonal, bits)",
            r.mutual_information_bits["orthogonal"][2],
            float(sum(orth_pid)),
            1e-6,
        ),
        check("all four variants share one batched model call", True, r.batched, relation="true"),
    ]


def figures(config: Config, r: Information) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffsim.studies import Figure

    names = ("redundancy", "unique1", "unique2", "synergy")
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    for ax, name in zip(axes, names, strict=True):
        im = ax.imshow(np.asarray(r.pixel_maps_bits[name]), cmap="magma")
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("pixel-wise PID (pointwise min of orthogonal pixel informations, bits)")
    return [Figure("pixel_pid", fig, "Pixel-wise redundancy, unique informations and synergy (mean).")]


def make_study():
    from diffsim.studies import Part, Study

    return Study(
        name="any-model-information",
        config=Config,
        parts=[Part("information", compute, checks, figures)],
        description="MI and PID / CPID of two prompt words on a diffusers pipeline.",
        question="How much do two words of a prompt tell about the generated image, redundantly, uniquely, "
        "synergistically, and where?",
        headline="pixel_pid",
    )


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--prompt", default=None, help="prompt string, or comma-separated token ids")
    parser.add_argument("--first", default=None, help="first word (or token position) to decompose")
    parser.add_argument("--second", default=None, help="second word (or token position)")
    parser.add_argument("--variants", nargs=4, default=None, help="four prompts [c, c+y1, c+y2, c+y1+y2]")
    parser.add_argument("--mode", default=None, choices=MODES, help="cpid (given the rest) or pid")
    parser.add_argument("--pad-id", type=int, default=None, help="token id replacing dropped tokens (1)")
    parser.add_argument("--x0", default=None, help=".npy of clean samples (default: generate them)")
    for name, kind in (
        ("n-samples", int),
        ("steps", int),
        ("n-logsnr", int),
        ("n-noise", int),
        ("seed", int),
    ):
        parser.add_argument(f"--{name}", type=kind, default=None)
    for name in ("logsnr-loc", "logsnr-scale", "logsnr-clip"):
        parser.add_argument(f"--{name}", type=float, default=None)
    args = parser.parse_args(argv)
    settings = read_config_file(args.config)
    for k, v in vars(args).items():
        if v is not None and k not in ("config", "out"):
            settings[k] = tuple(v) if k == "variants" else v
    for k in ("first", "second"):
        if k in settings:
            settings[k] = str(settings[k])
    known = set(Config.__dataclass_fields__)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"--config: unknown settings {sorted(unknown)}.")
    return Config(**settings), Path(args.out)


def main(argv: list[str] | None = None):
    from diffsim.studies import run_experiment

    config, out = parse_args(argv)
    prompt_variants(config)  # clear errors before loading anything
    return run_experiment(make_study(), config, out, progress=False)


if __name__ == "__main__":
    main()
