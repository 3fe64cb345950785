r"""Parts of the ``digits`` study that run the model-agnostic guidance and information analyses on its trained
UNet and classifier (no retraining; helpers and config checks in ``_digits_any_model``).

3. ``guidance_sweep``: :func:`~diffsim.analysis.guidance.model_guidance_sweep` of the UNet's CFG
   (confidence and diversity against the scale, DDPM vs DDIM; Wu et al., ICML 2024).
4. ``class_information``: the pixel-wise pointwise mutual information of the class token
   (:func:`~diffsim.analysis.information.variant_information`, Kong et al. 2024); the UNet has ONE
   conditioning token, so the PID of two conditions is not defined for it (stated in the docs).
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.guidance import model_guidance_sweep
from ..analysis.information import ConditionVariants, LogSNRScheme, pixel_map, variant_information
from ..analysis.sample_quality import classifier_features
from ._digits_any_model import _classifier, _keys, _stderr_diff
from ._figures import digits_any_model as figures
from ._runner import Check, Figure, Part, PartContext, check


__all__ = ["PARTS"]


# --- 3. guidance sweep: confidence and diversity against the CFG scale -----------------------------------
class GuidanceSweep(eqx.Module):
    """Per sampler and scale, averaged over the target classes: confidence, target fraction, kNN entropy of
    the classifier's 64-d features and pixel variance (each with a standard error)."""

    scales: list[float]
    targets: list[int]
    samplers: list[str]
    values: dict[str, dict[str, list[float]]]


def compute_guidance_sweep(config: Any, ctx: PartContext) -> GuidanceSweep:
    net, clf = ctx.results["model"].ema, ctx.results["evaluator"].classifier
    classify = _classifier(ctx)

    def features(x):
        return classifier_features(clf, jnp.clip(jnp.asarray(x), -1.0, 1.0).reshape(x.shape[0], -1))

    qs = ("confidence", "target_fraction", "knn_entropy", "pixel_variance")
    acc: dict[str, dict[str, list]] = {}
    samplers = ("ddpm", "ddim")
    for c in ctx.progress(config.sweep_targets, "guidance sweep"):
        r = model_guidance_sweep(
            net.guided(jnp.array([c]), 1.0),
            config.sweep_scales,
            classify,
            int(c),
            key=jr.fold_in(_keys(config)["sweep"], int(c)),
            n=config.sweep_n,
            grid=config.n_steps,
            samplers=samplers,
            features=features,
        )
        for i, s in enumerate(samplers):
            for q in qs:
                acc.setdefault(s, {}).setdefault(q, []).append(np.asarray(getattr(r, q))[i])
                if q != "pixel_variance":
                    acc[s].setdefault(q + "_var", []).append(np.asarray(getattr(r, q + "_se"))[i] ** 2)
    values = {}
    for s in samplers:
        nt = len(config.sweep_targets)
        values[s] = {q: np.mean(acc[s][q], axis=0).tolist() for q in qs}
        for q in qs[:3]:
            values[s][q + "_se"] = (np.sqrt(np.sum(acc[s][q + "_var"], axis=0)) / nt).tolist()
    return GuidanceSweep(list(config.sweep_scales), list(config.sweep_targets), list(samplers), values)


def checks_guidance_sweep(config: Any, r: GuidanceSweep) -> list[Check]:
    out = []
    for s in r.samplers:
        v = r.values[s]
        conf, se = np.asarray(v["confidence"]), np.asarray(v["confidence_se"])
        z = (conf[1:] - conf[:-1]) / np.maximum(_stderr_diff(se[1:], se[:-1]), 1e-12)
        note = (
            "Wu et al. (ICML 2024): guidance raises the classifier confidence of the target class, for DDPM "
            "and DDIM; smallest standardised step between consecutive scales, >= -2."
        )
        out.append(
            check(
                f"guidance sweep {s}: confidence non-decreasing in the scale",
                0.0,
                float(z.min()),
                2.0,
                relation="ge",
                note=note,
            )
        )
        h, hse = np.asarray(v["knn_entropy"]), np.asarray(v["knn_entropy_se"])
        note = (
            "Wu et al.: strong guidance reduces the diversity (differential entropy) of the outputs (stated "
            "for DDIM); kNN entropy of the classifier's 64-d features at the largest scale vs the smallest, "
            "2 SE."
        )
        tol = round(2 * float(_stderr_diff(hse[-1], hse[0])), 4)
        name = f"guidance sweep {s}: feature entropy lower at the largest scale"
        out.append(check(name, float(h[0]), float(h[-1]), tol, relation="le", note=note))
    return out


def figures_guidance_sweep(config: Any, r: GuidanceSweep) -> list[Figure]:
    return [figures.guidance_sweep(config, r)]


# --- 4. pixel-wise mutual information of the class token --------------------------------------------------
class ClassInformation(eqx.Module):
    """Pointwise MI ``i(x; c)`` (nats) between each generated digit and its class token, standard and
    orthogonal estimators (mean and SE of the mean, and of their paired difference); per-class mean
    pixel maps ``(10, 8, 8)`` of the orthogonal estimator."""

    n_points: int
    standard: float
    standard_se: float
    orthogonal: float
    orthogonal_se: float
    difference_se: float
    per_class: list[float]
    maps: Any = field(default=None, metadata={"json": False})
    digits: Any = field(default=None, metadata={"json": False})


def compute_class_information(config: Any, ctx: PartContext) -> ClassInformation:
    net = ctx.results["model"].ema
    method = "ddim" if "ddim" in config.samplers else config.samplers[0]
    samples = ctx.results["sampling"].samples[(method, 1.0 if 1.0 in config.guidance else config.guidance[0])]
    m = min(config.information_n, config.n_per_class)
    xs = samples.reshape(len(config.classes), config.n_per_class, -1)[:, :m].reshape(-1, 64)
    groups = np.repeat(np.arange(len(config.classes)), m)
    variants = [
        ConditionVariants.from_scores([net.bind(net.null_tokens), net.bind(jnp.array([c]))])
        for c in config.classes
    ]
    scheme = LogSNRScheme.gauss_legendre(config.information_logsnr, -9.0, 9.0)
    info = variant_information(
        variants, jnp.asarray(xs), _keys(config)["information"], scheme=scheme, groups=groups
    )
    st, orth = np.asarray(info.standard, float), np.asarray(info.orthogonal, float)
    pix = pixel_map(np.asarray(info.orthogonal_coords), (8, 8)).reshape(len(config.classes), m, 8, 8)
    n = st.size
    return ClassInformation(
        n_points=n,
        standard=float(st.mean()),
        standard_se=float(st.std(ddof=1) / math.sqrt(n)),
        orthogonal=float(orth.mean()),
        orthogonal_se=float(orth.std(ddof=1) / math.sqrt(n)),
        difference_se=float((st - orth).std(ddof=1) / math.sqrt(n)),
        per_class=orth.reshape(len(config.classes), m).mean(axis=1).tolist(),
        maps=pix.mean(axis=1),
        digits=xs.reshape(len(config.classes), m, 8, 8)[:, 0],
    )


def checks_class_information(config: Any, r: ClassInformation) -> list[Check]:
    h = math.log(len(config.classes))
    note = (
        f"The pointwise MI averages to I(X; C) over the model's own samples, which lies in [0, H(C) = "
        f"log {len(config.classes)} = {h:.3f}] nats (Kong et al., ICLR 2024); standard estimator, 3 SE."
    )
    tol = round(3 * r.standard_se, 4)
    out = [
        check("class information: mean pointwise MI >= 0", 0.0, r.standard, tol, relation="ge", note=note),
        check(
            "class information: mean pointwise MI <= log(#classes)",
            h,
            r.standard,
            tol,
            relation="le",
            note=note,
        ),
    ]
    note = (
        "Standard and orthogonal estimators have the same expectation over samples of the model itself "
        "(Kong et al. 2024); these are the model's DDIM samples at w = 1 (clipped, discretised), paired "
        "difference within 3 SE."
    )
    out.append(
        check(
            "class information: standard = orthogonal estimator",
            r.orthogonal,
            r.standard,
            round(3 * r.difference_se, 4),
            note=note,
        )
    )
    return out


def figures_class_information(config: Any, r: ClassInformation) -> list[Figure]:
    return [figures.class_information(config, r)]


PARTS = [
    Part("guidance_sweep", compute_guidance_sweep, checks_guidance_sweep, figures_guidance_sweep),
    Part("class_information", compute_class_information, checks_class_information, figures_class_information),
]
