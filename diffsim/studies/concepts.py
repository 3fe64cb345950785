r"""Study ``concepts``: what the sampler sees at each step -- concept emergence, saliency, step schedules
(Park, Ju & Lee, ESWA 2024, transplanted to models with known ground truth).

Parts (docs/concepts.md has the theory, every constant and the figures):

1. **emergence (toy, exact).** A conditional Gaussian mixture on 4x4 images whose binary tokens move one
   2x2 region each, with separations ``(6, 3, 1.5)`` (coarse, medium, fine)
   (:func:`~diffsim.data.concepts.concept_mixture`). Unconditional DDPM trajectories of the exact
   score record Tweedie's ``x0_hat`` at every step; linear probes trained on clean data read each concept
   off ``x0_hat``; the exact posterior ``p(y_k | x_t)`` and a closed-form Bayes-accuracy curve
   (:func:`~diffsim.analysis.probes.bayes_accuracy`) are the references. Coarse concepts must emerge at
   lower log-SNR.
2. **information (toy, exact).** ``rho_k(lambda)`` per token (the conditional MMSE gap); its integral
   against the exact conditional mutual information; where it peaks.
3. **schedules (toy, exact score).** Uniform, exponential early-dense and late-dense (Park et al.'s
   ``lambda`` schedule), uniform in log-SNR and information-equalising grids at a fixed small number of
   steps, with an asymmetric token prior: token weight errors, within-mode spread and energy distance.
   **schedules_bounded**: the information-equalising grid with every step's DDIM angle bounded on the
   data's scales (one DDIM step contracts a Gaussian mode's spread by ``cos(Delta theta)``,
   ``theta = arctan(e^{-lambda/2} / s)``), against the plain one and late-dense with paired errors.
4. **saliency_toy (exact model, and a trained UNet unless ``toy_network=False``).** Per step and token:
   masking (Bernoulli, smooth), Jacobian and occlusion maps of the token's effect for the exact model; with
   the token-conditional UNet (one cross-attention layer, trained once and cached) also Grad-CAM
   (guidance-combined) and attention relevance, for the trained and a weight-randomised copy. Scores
   against the token's region (pointing game, top-q IoU), agreement with the exact maps, the
   model-randomisation sanity test; insertion/deletion AUC with random floor and oracle ceiling; the
   correlation of attention relevance with the information rate over steps (network only).
5. **digits (unless ``digits=False``).** scikit-learn's 8x8 digits with attribute tokens (thickness, bar):
   the kernel-density conditional mixture of the training set (exact posteriors) and a token-conditional
   UNet (cached): emergence of class / thickness / bar on ``x0_hat``, saliency of the bar token against its
   known pixels, randomisation test and AUC table. **pointing_diagnosis** (with the UNet): the bar
   token's pointing per step for the exact model, the UNet and its randomised copy, and which of the
   estimator, the model or the step misses.

Each part's result dataclass, compute and checks live in a private module (parts 1-3:
``_concepts_toy``, part 4: ``_concepts_saliency``, part 5: ``_concepts_digits``, the bounded schedule:
``_concepts_bounded``, the pointing diagnosis: ``_concepts_pointing``); the figures in
``_figures/concepts.py``; the estimators and closed forms in :mod:`diffsim.analysis.concepts`,
:mod:`diffsim.analysis.probes` and :mod:`diffsim.analysis.saliency`.
"""

from __future__ import annotations

from typing import Any

from ._concepts_bounded import (
    BoundedSchedules as BoundedSchedules,
    checks_schedules_bounded,
    compute_schedules_bounded,
)
from ._concepts_config import Config as Config
from ._concepts_digits import Digits as Digits, checks_digits, compute_digits
from ._concepts_pointing import (
    PointingDiagnosis as PointingDiagnosis,
    checks_pointing_diagnosis,
    compute_pointing_diagnosis,
)
from ._concepts_saliency import Saliency as Saliency, checks_saliency_toy, compute_saliency_toy
from ._concepts_toy import (
    Emergence as Emergence,
    Information as Information,
    Schedules as Schedules,
    checks_emergence,
    checks_information,
    checks_schedules,
    compute_emergence,
    compute_information,
    compute_schedules,
)
from ._figures import concepts as figures, concepts_extra
from ._runner import Part, Study, register_study


__all__ = ["STUDY", "Config"]


def _parts(config: Config) -> list[Part]:
    parts = [
        Part("emergence", compute_emergence, checks_emergence, figures.emergence),
        Part("information", compute_information, checks_information, figures.information),
        Part("schedules", compute_schedules, checks_schedules, figures.schedules),
        Part(
            "schedules_bounded",
            compute_schedules_bounded,
            checks_schedules_bounded,
            concepts_extra.schedules_bounded,
        ),
        Part("saliency_toy", compute_saliency_toy, checks_saliency_toy, figures.saliency_toy),
    ]
    if config.digits:
        parts.append(Part("digits", compute_digits, checks_digits, figures.digits))
        if config.digits_network:
            parts.append(Part("pointing_diagnosis", compute_pointing_diagnosis, checks_pointing_diagnosis))
    return parts


def _answer(config: Config, results: dict[str, Any]) -> str:
    em, info, sal = results["emergence"], results["information"], results["saliency_toy"]
    emerge = ", ".join(
        f"{n} {d['emergence_probe']:.2f} (closed form {d['emergence_analytic']:.2f})"
        for n, d in em.tokens.items()
    )
    cmi = ", ".join(f"{n} {d['integral']:.3f} (exact {d['exact_cmi']:.3f})" for n, d in info.tokens.items())
    masking = sal.table["exact/masking"]
    return (
        f"Emergence log-SNR of each concept read by a probe on x0_hat: {emerge}, for separations "
        f"{list(config.separations)}. The tokens' information rates integrate to {cmi} nats. Masking "
        f"saliency of a token's effect on the exact model: pointing {masking['pointing']:.2f}, "
        f"top-q IoU {masking['iou']:.2f} (chance 0.25 and about 0.14)."
    )


STUDY = register_study(
    Study(
        name="concepts",
        config=Config,
        parts=_parts,
        quick=dict(
            n_particles=512,
            n_grid=50,
            n_probe_train=2000,
            probe_steps=200,
            n_info=256,
            n_info_logsnr=29,
            info_noise=8,
            n_schedule=4000,
            toy_network=False,
            digits=False,
            emergence_tolerance=0.5,
        ),
        description="What the sampler sees per step (Park et al. 2024): concept emergence on x0_hat, "
        "information rates, saliency and AUC against ground truth, step schedules.",
        question="When along the reverse process does each concept of the sample get decided, and do "
        "saliency maps and step schedules read that off correctly against known ground truth?",
        answer=_answer,
        headline="emergence_toy",
    )
)
