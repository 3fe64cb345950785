"""Part ``split`` of the ``guidance`` study: the discretisation split of Wu et al. (ICML 2024), section 6.

Three unit-variance 1-D components at ``-m, 0, m`` (equal weights, OU process), guidance towards the centre
class. Over diffsim scales ``w``, step counts and spacings ``m``: Hartigan's dip test on the DDIM and DDPM
outputs (:func:`diffsim.analysis.guidance.split_map`), the predicted fold of a step at the centre
(:func:`diffsim.analysis.guidance.centre_step_slopes`), and the continuous-time limit's exact output
densities (PF-ODE change of variables and Fokker-Planck, :func:`diffsim.analysis.guidance.output_modes_1d`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.fokker_planck import FokkerPlanckGrid
from ..analysis.guidance import SplitMap, dip_test, output_modes_1d, split_map
from ..data import mixture_1d
from ._figures import guidance_split as figures
from ._runner import Check, Figure, PartContext, check


_FEW_STEPS = 16  # "few steps": at most this many
_LARGE_W = 5.0  # "large strength": at least this diffsim scale
_CALIBRATION_REPS = 200


def validate(config: Any) -> None:
    """Raise a ValueError naming the bad ``split_*`` field of the guidance Config."""
    sp, sc, st = config.split_spacings, config.split_scales, config.split_steps
    if not sp or min(sp) <= 0:
        raise ValueError("`split_spacings` must be non-empty positive spacings m (means -m, 0, m).")
    if len(sc) < 2 or any(b <= a for a, b in itertools.pairwise(sc)) or min(sc) < 1.0:
        raise ValueError("`split_scales` must hold at least two strictly increasing guidance scales w >= 1.")
    if len(st) < 2 or any(b <= a for a, b in itertools.pairwise(st)) or min(st) < 1:
        raise ValueError("`split_steps` must hold at least two strictly increasing positive step counts.")
    if config.split_n < 50:
        raise ValueError("`split_n` must be >= 50 outputs per cell.")
    if not 0.0 < config.split_level < 0.5:
        raise ValueError("`split_level` must lie in (0, 0.5).")
    if (1 + config.split_n_null) * config.split_level <= 1.0:
        raise ValueError("`split_n_null` must exceed 1 / split_level.")


class SplitResult(eqx.Module):
    """Per spacing: the dip-test phase map (``SplitMap.to_dict``) and the continuous-limit mode counts per
    strength (``{"ddim": [...], "ddpm": [...]}``); the dip test's rejection rates on unimodal samples."""

    spacings: list[float]
    maps: dict[str, dict[str, Any]]
    continuous_modes: dict[str, dict[str, list[int]]]
    false_positive: dict[str, float]
    split_maps: dict[str, SplitMap] = field(default=None, metadata={"json": False})
    curves: dict[str, Any] = field(default=None, metadata={"json": False})


def _key(m: float) -> str:
    return f"m={m:g}"


def compute_split(config: Any, ctx: PartContext) -> SplitResult:
    """Phase map per spacing (float64), continuous limit and the dip test's false-positive rate."""
    validate(config)
    key = jr.fold_in(jr.key(config.seed), 300)
    maps, modes, curves = {}, {}, {}
    opts = {"n_nodes": config.n_pf_ode + 96, "fp_grid": FokkerPlanckGrid(-20.0, 20.0, config.fp_cells_1d)}
    for i, m in enumerate(ctx.progress(list(config.split_spacings), "discretisation split")):
        mix = mixture_1d([1.0 / 3.0] * 3, [-m, 0.0, m], [1.0, 1.0, 1.0])
        # float64: a strongly guided DDIM output collapses to a spread of 1e-8..1e-13, below float32's
        # rounding of the step's O(1) terms; in float32 that rounding noise looks bimodal to the dip test
        with jax.enable_x64(True):
            mix64 = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, mix)
            sm = split_map(
                mix64,
                1,
                config.split_scales,
                config.split_steps,
                key=jr.fold_in(key, i),
                n=config.split_n,
                level=config.split_level,
                n_null=config.split_n_null,
            )
        cont = output_modes_1d(mix, 1, config.split_scales, **opts)
        maps[_key(m)] = sm
        modes[_key(m)] = {"ddim": cont["ddim"].tolist(), "ddpm": cont["ddpm"].tolist()}
        curves[_key(m)] = cont
    # the dip test's rejection rate on unimodal samples of the map's size (independent of the null draws)
    rng = np.random.default_rng(config.seed + 77)
    fp = {}
    for law, draw in (("uniform", rng.uniform), ("gaussian", rng.standard_normal)):
        rej = [
            dip_test(draw(size=config.split_n), level=config.split_level, n_null=config.split_n_null).bimodal
            for _ in range(_CALIBRATION_REPS)
        ]
        fp[law] = float(np.mean(rej))
    ctx.note(_note(config, maps, modes))
    return SplitResult(
        list(config.split_spacings),
        {k: v.to_dict() for k, v in maps.items()},
        modes,
        fp,
        maps,
        curves,
    )


def _few_large(config: Any, sm: SplitMap) -> np.ndarray:
    """Boolean mask ``[scale, step]`` of the few-step, large-strength cells."""
    return (sm.scales[:, None] >= _LARGE_W) & (sm.steps[None, :] <= _FEW_STEPS)


def _note(config: Any, maps: dict[str, SplitMap], modes: dict[str, dict[str, list[int]]]) -> str:
    parts = []
    for name, sm in maps.items():
        for i, s in enumerate(sm.samplers):
            cells = [
                f"w={w:g}: {[int(n) for n, b in zip(sm.steps, sm.bimodal[i, j], strict=True) if b]}"
                for j, w in enumerate(sm.scales)
            ]
            parts.append(f"{name} {s} bimodal step counts per w: " + "; ".join(cells))
    return (
        f"Discretisation split (dip test at level {config.split_level}, n = {config.split_n} per cell). "
        + " | ".join(parts)
        + f" | continuous-limit modes per w: {modes}"
    )


def checks_split(config: Any, r: SplitResult) -> list[Check]:
    out = []
    level = config.split_level
    se = math.sqrt(level * (1 - level) / _CALIBRATION_REPS)
    for law, rate in r.false_positive.items():
        out.append(
            check(
                f"split: dip test false-positive rate <= level on {law} samples",
                level,
                rate,
                3 * se,
                relation="le",
                note=f"{_CALIBRATION_REPS} unimodal samples of size {config.split_n}; level {level}, "
                f"null calibrated on {config.split_n_null} uniform samples (uniform: rate = level in "
                "expectation; Gaussian: conservative); tolerance 3 binomial standard errors",
            )
        )
    fine = max(config.split_steps)
    for name, sm in r.split_maps.items():
        mask = _few_large(config, sm)
        n_few = int(sum(np.sum(sm.bimodal[i] & mask) for i in range(len(sm.samplers))))
        out.append(
            check(
                f"split ({name}): bimodal centre class at few steps and large strength",
                1,
                n_few,
                0,
                relation="ge",
                note=f"cells with <= {_FEW_STEPS} steps and w >= {_LARGE_W:g} where the dip test rejects "
                f"unimodality (DDIM and DDPM, {int(2 * mask.sum())} cells); Wu et al. 2024, section 6",
            )
        )
        strong = sm.scales >= _LARGE_W
        rows = [
            (s, float(w))
            for i, s in enumerate(sm.samplers)
            for j, w in enumerate(sm.scales)
            if strong[j] and sm.bimodal[i, j, :-1].any()
        ]
        n_fine = int(
            sum(sm.bimodal[i, j, -1] for i, _ in enumerate(sm.samplers) for j in np.flatnonzero(strong))
        )
        out.append(
            check(
                f"split ({name}): unimodal at {fine} steps at the same strengths",
                0,
                n_fine,
                0,
                relation="abs",
                note=f"dip-test rejections at {fine} steps in the w >= {_LARGE_W:g} rows (DDIM, DDPM); rows "
                f"with a split at fewer steps: {rows}; outputs collapsed to a point at float64 precision "
                f"(spread < {sm.resolution:.1e}, not tested) at {fine} steps: "
                f"{int(sm.collapsed[:, strong, -1].sum())}",
            )
        )
        n_bi = int(sm.bimodal.sum())
        out.append(
            check(
                f"split ({name}): every split cell has a step that folds at the centre",
                n_bi,
                int((sm.bimodal & sm.fold).sum()),
                0,
                relation="abs",
                note="a split needs a step map with negative slope at the centre (it overshoots the centre "
                f"and folds); folds predicted in {int(sm.fold.sum())} of {sm.fold.size} cells, splits "
                f"measured in {n_bi}: the fold is necessary, not sufficient (docs/guidance.md)",
            )
        )
        modes = r.continuous_modes[name]
        out.append(
            check(
                f"split ({name}): unimodal in the continuous-time limit (DDIM and DDPM)",
                1,
                max(max(modes["ddim"]), max(modes["ddpm"])),
                0,
                relation="abs",
                note=f"modes of the exact output densities per w {list(config.split_scales)}: PF-ODE change "
                f"of variables (DDIM) {modes['ddim']}, Fokker-Planck (DDPM) {modes['ddpm']}",
            )
        )
    return out


def figures_split(config: Any, r: SplitResult) -> list[Figure]:
    return [figures.phase_diagram(r.split_maps, r.continuous_modes)]
