r"""Study ``digits``: a class-conditional UNet trained on scikit-learn's 8x8 digits, sampled with several
samplers and classifier-free guidance strengths, and evaluated against real digits.

Protocol (docs/digits.md has the theory and every constant), one part each:

1. ``evaluator``: a small JAX/optax MLP classifier ``64 -> 128 -> 64 -> 10`` trained on the real training
   digits of :func:`diffsim.data.digits.load_digits` (``[-1, 1]``, 1,438 train / 359 test); its 64-d
   penultimate activations are the fixed feature space of the Fréchet distance.
2. ``model``: :class:`~diffsim.scores.nn.UNetScore` conditioned on the class token (alphabet 10, null id
   10), trained by DSM with token dropout (:func:`~diffsim.training.train_or_load`, cached).
3. ``sampling``: for every sampler and guidance strength ``w`` (``s_u + w (s_c - s_u)``, ``w = 0``
   unconditional, ``w = 1`` conditional), ``n_per_class`` samples of every requested class on a grid
   uniform in log-SNR, clipped to ``[-1, 1]``; classifier accuracy on the requested class and Fréchet
   distance to the real test digits.
4. ``memorisation``: ratio ``d_1 / d_2`` (nearest / second-nearest training image) of network samples
   against samples of the memorising :class:`~diffsim.EmpiricalScore`.
5. ``dsm``: the DSM loss of the network beside the exact empirical score, which minimises the objective
   (``memorisation`` and ``dsm``: ``_digits_memorisation``).
6.-9. ``class_windows``, ``sd_protocol``, ``guidance_sweep``, ``class_information``: the model-agnostic
   analyses on the trained UNet and classifier (``_digits_any_model``, ``_digits_any_model_info``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.sample_quality import (
    classifier_features,
    classifier_predict,
    frechet_distance,
    train_classifier,
)
from ..data.digits import load_digits
from ..sampling import grids, simulate
from ..scores import PARAMETRISATIONS
from ..scores.nn import UNetScore
from ..training import WEIGHTINGS, TrainConfig, train_or_load
from . import _digits_any_model as any_model, _digits_any_model_info as any_model_info
from ._config import check_fields
from ._digits_memorisation import (
    _keys,
    _process,
    checks_dsm,
    checks_memorisation,
    compute_dsm,
    compute_memorisation,
    figures_memorisation,
)
from ._figures import digits as figures
from ._runner import Check, Figure, Part, PartContext, Study, check, register_study


__all__ = ["STUDY", "Config"]

_PROCESSES = ("linear", "cosine", "ou")
_CHANCE = 0.1

_NOTES = {
    "evaluator": "Sanity of the evaluator (64 -> 128 -> 64 -> 10 MLP on real training digits).",
    "guidance": "CFG raises classifier confidence (Ho & Salimans 2022; Wu et al. 2024); "
    "tolerance 2 binomial SE.",
    "chance": "With w=0 only the null-token (unconditional) score is used, so the requested class "
    "is irrelevant and accuracy should equal the class frequency (~0.1); 3 binomial SE. "
    "Fails if the unconditional model is class-biased.",
}


@dataclass(frozen=True)
class Config:
    """Configuration of the ``digits`` study (defaults: under ~5 minutes on two CPU cores)."""

    train_steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2)
    parametrisation: str = "eps"
    weighting: str = "eps"
    token_dropout: float = 0.15
    process: str = "linear"
    samplers: tuple[str, ...] = ("ddim", "ddpm", "heun")
    n_steps: int = 30
    guidance: tuple[float, ...] = (0.0, 1.0, 3.0)
    classes: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    n_per_class: int = 40
    classifier_steps: int = 1500
    dsm_times: tuple[float, ...] = (0.02, 0.1, 0.4)
    accuracy_threshold: float = 0.8
    seed: int = 0
    cache_dir: str = ""
    # the model-agnostic analyses on the trained UNet (_digits_any_model; docs/digits.md)
    windows_n_digits: int = 40
    windows_repeats: int = 8
    windows_t_hats: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    windows_steps: int = 30
    windows_eps: float = 0.1
    sd_beta_schedule: str = "scaled_linear"
    sd_inference_steps: int = 50
    sd_ks: tuple[int, ...] = (1, 3, 5, 10, 15, 20, 30, 40, 50)
    sd_guidance: float = 3.0
    sd_repeats: int = 4
    sd_per_class: int = 8
    sweep_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0)
    sweep_targets: tuple[int, ...] = (0, 3, 8)
    sweep_n: int = 200
    information_n: int = 10
    information_logsnr: int = 32

    def __post_init__(self):
        for name in (
            "train_steps",
            "batch_size",
            "base_channels",
            "n_steps",
            "n_per_class",
            "classifier_steps",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        check_fields(
            self,
            positive=("learning_rate",),
            nonnegative=("warmup_steps",),
            fractions=("ema_decay", "token_dropout"),
        )
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"`parametrisation` must be one of {PARAMETRISATIONS}, got {self.parametrisation!r}."
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {self.weighting!r}.")
        if self.process not in _PROCESSES:
            raise ValueError(f"`process` must be one of {_PROCESSES}, got {self.process!r}.")
        if not self.samplers:
            raise ValueError("`samplers` must name at least one sampler.")
        if not self.guidance or any(not math.isfinite(w) or w < 0 for w in self.guidance):
            raise ValueError(f"`guidance` must be non-empty, finite and >= 0, got {self.guidance}.")
        distinct = len(set(self.classes)) == len(self.classes)
        if not self.classes or any(not 0 <= c <= 9 for c in self.classes) or not distinct:
            raise ValueError(f"`classes` must be distinct digits in 0..9, got {self.classes}.")
        if not 0.0 < self.accuracy_threshold <= 1.0:
            raise ValueError(f"`accuracy_threshold` must lie in (0, 1], got {self.accuracy_threshold}.")
        any_model.check_config(self)

    @property
    def n_generated(self) -> int:
        return self.n_per_class * len(self.classes)


# --- the evaluator: a small classifier on real digits and its penultimate features ----------------------
class Evaluator(eqx.Module):
    """The evaluator classifier, its accuracy on the real test digits and their features."""

    test_accuracy: float
    classifier: Any = field(default=None, metadata={"json": False})
    features_test: Any = field(default=None, metadata={"json": False})


def compute_evaluator(config: Config, ctx: PartContext) -> Evaluator:
    data = load_digits()
    x_train, y_train = data.flat("train")
    x_test, y_test = data.flat("test")
    clf = train_classifier(x_train, y_train, key=_keys(config)["classifier"], steps=config.classifier_steps)
    acc = float(np.mean(np.asarray(classifier_predict(clf, jnp.asarray(x_test))) == y_test))
    return Evaluator(acc, clf, np.asarray(classifier_features(clf, jnp.asarray(x_test))))


def checks_evaluator(config: Config, r: Evaluator) -> list[Check]:
    name = "evaluator: classifier accuracy on real test digits"
    return [check(name, 0.9, r.test_accuracy, 0.0, relation="ge", note=_NOTES["evaluator"])]


# --- the model: a class-conditional UNet trained by DSM --------------------------------------------------
class Model(eqx.Module):
    """The trained UNet (its EMA weights) and its training summary."""

    from_cache: bool
    loss_final: float
    n_parameters: int
    train_s: float
    losses: Any = field(default=None, metadata={"json": False})
    ema: Any = field(default=None, metadata={"json": False})


def compute_model(config: Config, ctx: PartContext) -> Model:
    t0 = time.perf_counter()
    keys = _keys(config)
    x_train, y_train = load_digits().flat("train")
    arch = {k: getattr(config, k) for k in ("base_channels", "channel_mults", "parametrisation")}
    net = UNetScore((8, 8), key=keys["net"], process=_process(config.process), alphabet_sizes=(10,), **arch)
    same = {
        k: getattr(config, k)
        for k in ("batch_size", "learning_rate", "ema_decay", "weighting", "token_dropout")
    }
    warmup = min(config.warmup_steps, config.train_steps // 2)
    tcfg = TrainConfig(steps=config.train_steps, warmup_steps=warmup, **same)
    cache = Path(config.cache_dir) if config.cache_dir else ctx.out_dir / "models"
    opts = dict(cache_dir=cache, name="digits-unet", progress=ctx.show_progress)
    trained = train_or_load(net, x_train, tcfg, key=keys["train"], tokens=y_train[:, None], **opts)
    n_params = int(sum(a.size for a in jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))))
    train_s = time.perf_counter() - t0
    how = "loaded from cache" if trained.from_cache else f"{train_s:.0f} s"
    ctx.note(f"Trained {n_params} parameters for {config.train_steps} steps ({how}).")
    if config.train_steps < 1000:
        ctx.note(
            f"Quick preset: the UNet is trained for only {config.train_steps} steps with "
            f"{config.base_channels} base channels, so sample quality checks may fail; they are recorded "
            "as measured, not loosened."
        )
    loss_final = float(np.mean(trained.losses[-50:]))
    return Model(trained.from_cache, loss_final, n_params, train_s, trained.losses, trained.ema)


def figures_model(config: Config, r: Model) -> list[Figure]:
    return [figures.loss_curve(config, r.losses)]


# --- sampling with guidance: accuracy and Fréchet distance -----------------------------------------------
class Sampling(eqx.Module):
    """Per sampler and guidance strength ``w``: accuracy (mean and per class), Fréchet distance, samples."""

    accuracy: dict[str, dict[str, float]]
    accuracy_per_class: dict[str, dict[str, list[float]]]
    frechet_distance: dict[str, dict[str, float]]
    samples: Any = field(default=None, metadata={"json": False})


def compute_sampling(config: Config, ctx: PartContext) -> Sampling:
    t0 = time.perf_counter()
    model, evaluator = ctx.results["model"].ema, ctx.results["evaluator"]
    clf, feats_test = evaluator.classifier, evaluator.features_test
    # reverse grid uniform in log-SNR (DPM-Solver's choice): fine steps near the data, where the empirical
    # score snaps onto training points, so memorisation is resolved even with few steps
    grid = grids.logsnr_uniform(_process(config.process), config.n_steps)
    k_sample = _keys(config)["sample"]
    samples, accuracy, per_class, fd = {}, {}, {}, {}
    settings = [(m, w) for m in config.samplers for w in config.guidance]
    for method, w in ctx.progress(settings, "sample"):
        xs_all, accs = [], []
        for c in config.classes:
            score = model.guided(jnp.array([c]), jnp.asarray(w, jnp.float32))
            key = jr.fold_in(jr.fold_in(k_sample, c), config.samplers.index(method))
            xs = np.clip(
                np.asarray(simulate(score, method, grid, n=config.n_per_class, key=key).x), -1.0, 1.0
            )
            xs_all.append(xs)
            accs.append(float(np.mean(np.asarray(classifier_predict(clf, jnp.asarray(xs))) == c)))
        xs_all = np.concatenate(xs_all)
        samples[(method, w)] = xs_all
        accuracy.setdefault(method, {})[f"{w:g}"] = float(np.mean(accs))
        per_class.setdefault(method, {})[f"{w:g}"] = accs
        fd.setdefault(method, {})[f"{w:g}"] = frechet_distance(
            np.asarray(classifier_features(clf, jnp.asarray(xs_all))), feats_test
        )
    ctx.note(
        f"Sampled {len(settings)} sampler x guidance settings of {config.n_generated} digits each in "
        f"{time.perf_counter() - t0:.0f} s."
    )
    return Sampling(accuracy, per_class, fd, samples)


def checks_sampling(config: Config, r: Sampling) -> list[Check]:
    n_gen, w_max, out = config.n_generated, max(config.guidance), []
    for m in config.samplers:
        if 1.0 in config.guidance:
            acc1 = r.accuracy[m]["1"]
            note = f"Classifier accuracy on the requested class, {n_gen} samples; chance is {_CHANCE:.2f}; "
            note += f"measured {acc1:.3f}."
            name = f"{m}: conditional samples recognised (w=1)"
            out.append(check(name, config.accuracy_threshold, acc1, 0.0, relation="ge", note=note))
            if w_max > 1.0:
                tol = round(2 * math.sqrt(max(acc1 * (1 - acc1), 0.01) / n_gen), 4)
                name, measured = (
                    f"{m}: guidance w={w_max:g} does not lower accuracy",
                    r.accuracy[m][f"{w_max:g}"],
                )
                out.append(check(name, acc1, measured, tol, relation="ge", note=_NOTES["guidance"]))
        if 0.0 in config.guidance:
            tol = round(3 * math.sqrt(_CHANCE * (1 - _CHANCE) / n_gen), 4)
            name = f"{m}: w=0 ignores the class (accuracy at chance)"
            out.append(check(name, _CHANCE, r.accuracy[m]["0"], tol, note=_NOTES["chance"]))
    return out


def figures_sampling(config: Config, r: Sampling) -> list[Figure]:
    return [*figures.samples(config, r), figures.accuracy_fd(config, r)]


_QUICK = dict(train_steps=250, base_channels=8, channel_mults=(1,), samplers=("ddim", "ddpm"), n_steps=10)
_QUICK.update(n_per_class=10, classifier_steps=500, guidance=(0.0, 1.0, 3.0), **any_model.QUICK)


# --- the study ----------------------------------------------------------------------------------------------
def _answer(config: Config, results: dict[str, Any]) -> str:
    acc, mem = results["sampling"].accuracy, results["memorisation"].memorised_fraction
    acc_text = "; ".join(
        f"{m} " + " / ".join(f"{acc[m][f'{w:g}']:.2f}" for w in config.guidance) for m in config.samplers
    )
    ws = " / ".join(f"{w:g}" for w in config.guidance)
    return (
        f"A class-conditional UNet trained by DSM ({results['model'].n_parameters} parameters, "
        f"{config.train_steps} steps) generates digits that a classifier trained on real digits (test "
        f"accuracy {results['evaluator'].test_accuracy:.2f}) recognises with accuracy {acc_text} at w = {ws} "
        f"(chance {_CHANCE}); network samples are memorised copies in {mem['network']:.2f} of cases against "
        f"{mem['empirical']:.2f} for the exact empirical score, which nonetheless attains the lower "
        "training DSM loss."
    )


STUDY = register_study(
    Study(
        name="digits",
        config=Config,
        parts=[
            Part("evaluator", compute_evaluator, checks_evaluator),
            Part("model", compute_model, None, figures_model),
            Part("sampling", compute_sampling, checks_sampling, figures_sampling),
            Part("memorisation", compute_memorisation, checks_memorisation, figures_memorisation),
            Part("dsm", compute_dsm, checks_dsm),
            *any_model.PARTS,
            *any_model_info.PARTS,
        ],
        quick=_QUICK,
        description="Class-conditional UNet on 8x8 digits: samplers, guidance, accuracy, FD, memorisation",
        question="Does a small class-conditional network trained by denoising score matching generate digits "
        "a real-digit classifier recognises, does guidance sharpen them, and does it avoid the memorisation "
        "of the exact empirical score?",
        answer=_answer,
        headline="accuracy_fd_vs_guidance",
    )
)
