"""Part ``pointing_diagnosis`` of the ``concepts`` study: why the digits UNet's bar-token pointing game
misses its threshold -- the estimator, the model or the step. No new computation: it reads the per-step
pointing of part ``digits`` for the exact kernel-density model (``kde``), the trained UNet (``network``)
and its weight-randomised copy (``randomised``), with the same masks, occlusion patches and test digits.

The estimator is at fault if it misses the bar on the exact model; the model if the exact model is hit and
the UNet missed at the same states; the step (and hence the threshold on the mean over steps) if the
exact model itself misses there, which happens once the bar is decided and the token's effect
``eps(.|y) - eps(.|y without bar)`` has faded (docs/concepts.md, "The digits pointing game").
"""

from __future__ import annotations

import equinox as eqx
import numpy as np

from ._concepts_config import Config
from ._runner import Check, PartContext, check


_METHODS = ("masking", "occlusion")


class PointingDiagnosis(eqx.Module):
    """Per method and model: pointing (mean, SE over test digits) per step; the steps' log-SNRs; the step
    the exact model misses (``None`` if none); the verdict per step."""

    steps: list
    log_snr: list
    pointing: dict
    verdict: dict


def _verdict(kde, net, threshold):
    if kde < threshold:
        return "step (the exact model misses too)"
    if net < threshold:
        return "model (the exact model is hit)"
    return "pass"


def compute_pointing_diagnosis(config: Config, ctx: PartContext) -> PointingDiagnosis:
    dg = ctx.results.get("digits")
    if dg is None or dg.saliency is None:
        raise ValueError(
            "Part `pointing_diagnosis` needs part `digits` with its network (digits_network=True)."
        )
    steps = list(dg.saliency_steps)
    pointing = {
        f"{tag}/{m}": [list(dg.saliency[f"{tag}/{m}"][s]["pointing"]) for s in steps]
        for tag in ("kde", "network", "randomised")
        for m in _METHODS
    }
    thr = config.pointing_threshold
    verdict = {
        m: [
            _verdict(pointing[f"kde/{m}"][i][0], pointing[f"network/{m}"][i][0], thr)
            for i in range(len(steps))
        ]
        for m in _METHODS
    }
    ctx.note(
        "Digits bar-token pointing game, per step (log-SNR "
        f"{np.round(dg.saliency_log_snr, 1).tolist()}): "
        + "; ".join(
            f"{m}: exact {[round(p[0], 2) for p in pointing[f'kde/{m}']]}, UNet "
            f"{[round(p[0], 2) for p in pointing[f'network/{m}']]}, randomised "
            f"{[round(p[0], 2) for p in pointing[f'randomised/{m}']]} -> {verdict[m]}"
            for m in _METHODS
        )
        + "."
    )
    return PointingDiagnosis(steps, list(dg.saliency_log_snr), pointing, verdict)


def checks_pointing_diagnosis(config: Config, r: PointingDiagnosis) -> list[Check]:
    thr = config.pointing_threshold
    out = []
    for m in _METHODS:
        kde = np.asarray([p[0] for p in r.pointing[f"kde/{m}"]])
        net = np.asarray([p[0] for p in r.pointing[f"network/{m}"]])
        valid = kde >= thr  # steps at which the token's effect still localises on the exact model
        out.append(
            check(
                f"digits pointing diagnosis: {m} saliency on the exact KDE model points into the bar at the "
                "noisiest saliency step (the estimator works where the token still acts)",
                thr,
                float(kde[0]),
                0.0,
                relation="ge",
                note=f"exact-model pointing per step {np.round(kde, 2).tolist()} at log-SNR "
                f"{np.round(r.log_snr, 1).tolist()}; UNet {np.round(net, 2).tolist()}; UNet over the steps "
                "the "
                f"exact model passes: {float(net[valid].mean()) if valid.any() else float('nan'):.2f}; "
                f"verdict per step {r.verdict[m]}.",
            )
        )
    return out
