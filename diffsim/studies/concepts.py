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
   known pixels, randomisation test and AUC table.

Each part's result dataclass, compute and checks live in a private module (parts 1-3:
``_concepts_toy``, part 4: ``_concepts_saliency``, part 5: ``_concepts_digits``); the figures in
``_figures/concepts.py``; the estimators and closed forms in :mod:`diffsim.analysis.concepts`,
:mod:`diffsim.analysis.probes` and :mod:`diffsim.analysis.saliency`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._concepts_digits import Digits as Digits, checks_digits, compute_digits
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
from ._figures import concepts as figures
from ._runner import Part, Study, register_study


__all__ = ["STUDY", "Config"]

_PROCESSES = ("linear", "cosine", "ou")
_POSITIVE = (
    "n_particles n_grid n_probe_train probe_steps n_info n_info_logsnr info_noise schedule_steps n_schedule "
    "saliency_grid n_saliency n_masks mask_cells n_auc n_random_orders n_correlation toy_train_steps "
    "toy_train_size toy_base_channels n_energy digits_particles digits_grid digits_train_steps "
    "digits_base_channels digits_n_saliency digits_auc_stride"
).split()


@dataclass(frozen=True)
class Config:
    """Configuration of the ``concepts`` study (defaults: about 4-5 minutes on two CPU cores, of which about
    1.5 minutes train the two UNets; they are cached under ``cache_dir``, default ``out_dir/models``). The
    quick preset skips both networks and the digits (exact toy model only, ~30 s)."""

    seed: int = 0
    process: str = "linear"
    # toy mixture: one binary token per 2x2 region of a 4x4 image
    separations: tuple[float, ...] = (6.0, 3.0, 1.5)
    std: float = 0.5
    # 1. emergence
    n_particles: int = 2048
    n_grid: int = 100
    n_probe_train: int = 4000
    probe_steps: int = 400
    emergence_level: float = 0.5
    emergence_tolerance: float = 0.4
    # 2. information rates
    n_info: int = 1024
    info_lo: float = -12.0
    info_hi: float = 16.0
    n_info_logsnr: int = 57
    info_noise: int = 16
    n_se: float = 3.0
    # 3. schedules
    schedule_steps: int = 8
    schedule_lam: float = 60.0
    schedule_prior: float = 0.8
    schedule_method: str = "ddim"
    n_schedule: int = 20000
    n_energy: int = 2000
    # 4. saliency and AUC
    saliency_grid: int = 20
    saliency_steps: tuple[int, ...] = (6, 8, 10, 12)
    n_saliency: int = 6
    n_masks: int = 300
    mask_cells: int = 2
    guidance: float = 3.0
    auc_step: int = 10
    n_auc: int = 6
    n_random_orders: int = 16
    pointing_threshold: float = 0.8
    iou_threshold: float = 0.5
    randomisation_threshold: float = 0.5
    n_correlation: int = 6
    toy_network: bool = True
    toy_train_steps: int = 800
    toy_train_size: int = 8000
    toy_base_channels: int = 16
    # 5. digits
    digits: bool = True
    digits_network: bool = True
    digits_bandwidth: float = 0.3
    digits_particles: int = 256
    digits_grid: int = 60
    digits_train_steps: int = 1000
    digits_base_channels: int = 16
    digits_saliency_steps: tuple[int, ...] = (20, 26, 32, 38)
    digits_n_saliency: int = 6
    digits_auc_stride: int = 4
    cache_dir: str = ""

    def __post_init__(self):
        for name in _POSITIVE:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        if self.process not in _PROCESSES:
            raise ValueError(f"`process` must be one of {_PROCESSES}, got {self.process!r}.")
        if len(self.separations) < 2 or len(self.separations) > 4 or min(self.separations) <= 0:
            raise ValueError(
                f"`separations` must hold 2 to 4 positive values (4 regions), got {self.separations}."
            )
        if list(self.separations) != sorted(self.separations, reverse=True):
            raise ValueError("`separations` must be ordered from coarse (largest) to fine (smallest).")
        if not 0.0 < self.emergence_level < 1.0:
            raise ValueError(f"`emergence_level` must lie in (0, 1), got {self.emergence_level}.")
        if not 0.5 <= self.schedule_prior < 1.0:
            raise ValueError(f"`schedule_prior` must lie in [0.5, 1), got {self.schedule_prior}.")
        if not self.info_lo < self.info_hi:
            raise ValueError("Need info_lo < info_hi.")
        for name, grid_n in (
            ("saliency_steps", self.saliency_grid),
            ("digits_saliency_steps", self.digits_grid),
        ):
            steps = getattr(self, name)
            if not steps or any(not 0 <= s <= grid_n for s in steps):
                raise ValueError(f"`{name}` must be non-empty grid indices in 0..{grid_n}, got {steps}.")
        if not 0 <= self.auc_step <= self.saliency_grid:
            raise ValueError(
                f"`auc_step` must be a grid index in 0..{self.saliency_grid}, got {self.auc_step}."
            )


# =====================================================================================================
# the study
# =====================================================================================================
def _parts(config: Config) -> list[Part]:
    parts = [
        Part("emergence", compute_emergence, checks_emergence, figures.emergence),
        Part("information", compute_information, checks_information, figures.information),
        Part("schedules", compute_schedules, checks_schedules, figures.schedules),
        Part("saliency_toy", compute_saliency_toy, checks_saliency_toy, figures.saliency_toy),
    ]
    if config.digits:
        parts.append(Part("digits", compute_digits, checks_digits, figures.digits))
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
