r"""Study ``ridge``: reach, align and slide around the log-density ridge of the smoothed empirical
distribution (He, Qiu & Tao 2026, arXiv 2602.06021). See ``docs/ridge.md`` for the derivations.

1. **exact**: the exact empirical score on 2-D training sets (:mod:`diffsim.data.ridge`): reverse SDE with
   the ridge geometry recorded at saved steps (:func:`diffsim.analysis.ridge.ridge_stats`), phases, and the
   ridge traced by SCMS at several times.
2. **two_points**: the two-point set, whose ridge is the x-axis: the distance ``|y|`` follows closed forms
   along the SDE and the PF-ODE; a normal denoiser error shifts the distance (align), a tangent one (the
   denoiser clipped to the segment) the placement (slide). **scms**: Newton vs SCMS distance there.
3. **random_features** / **mlp**: closed-form gradient flow ``A(tau)`` (checked against gradient descent),
   normal / tangent errors and inter-mode fractions vs ``tau`` and width; the same for an MLP trained by DSM.
4. **latent**: an autoencoder latent of the 8x8 digits, a latent score network and the ridge of the latent
   training set for generated samples; decoded on-ridge vs off-ridge samples.
5. **paper_two_modes** / **paper_configs** / **latent32**: the experiments of the paper's public code at its
   stated settings: the 2-mode toy with its tangent / normal loss split, the code's toy configurations and
   the 13-point figure, and a 32-d latent with an estimated intrinsic dimension.
"""

from __future__ import annotations

from typing import Any

from ...analysis import ridge
from .._figures import ridge as figures, ridge_paper as paper_figures
from .._runner import Part, Study, register_study
from ._config import Config as Config
from ._exact import (
    ExactSets as ExactSets,
    FlatRidge as FlatRidge,
    TwoPoints as TwoPoints,
    checks_exact as checks_exact,
    checks_scms as checks_scms,
    checks_two_points as checks_two_points,
    compute_exact as compute_exact,
    compute_scms as compute_scms,
    compute_two_points as compute_two_points,
)
from ._latent import Latent as Latent, checks_latent as checks_latent, compute_latent as compute_latent
from ._latent32 import (
    Latent32 as Latent32,
    checks_latent32 as checks_latent32,
    compute_latent32 as compute_latent32,
)
from ._learned import (
    MLP as MLP,
    RandomFeatures as RandomFeatures,
    checks_mlp as checks_mlp,
    checks_random_features as checks_random_features,
    compute_mlp as compute_mlp,
    compute_random_features as compute_random_features,
)
from ._paper_toy import (
    PAPER_TOY_CONFIGS as PAPER_TOY_CONFIGS,
    PaperConfigs as PaperConfigs,
    PaperTwoModes as PaperTwoModes,
    checks_paper_configs as checks_paper_configs,
    checks_paper_two_modes as checks_paper_two_modes,
    compute_paper_configs as compute_paper_configs,
    compute_paper_two_modes as compute_paper_two_modes,
)


# --- the study ---------------------------------------------------------------------------------------
def _parts(config: Config) -> list[Part]:
    parts = [
        Part("exact", compute_exact, checks_exact, figures.exact),
        Part("two_points", compute_two_points, checks_two_points, figures.two_points),
        Part("scms", compute_scms, checks_scms),
        # the learned-score figures are drawn by the last of the random-feature and MLP parts
        Part(
            "random_features",
            compute_random_features,
            checks_random_features,
            None if config.mlp else figures.random_features,
        ),
    ]
    if config.mlp:
        parts.append(Part("mlp", compute_mlp, checks_mlp, figures.mlp))
    if config.latent:
        parts.append(Part("latent", compute_latent, checks_latent, figures.latent))
    if config.paper_toy:
        parts.append(
            Part(
                "paper_two_modes",
                compute_paper_two_modes,
                checks_paper_two_modes,
                paper_figures.paper_two_modes,
            )
        )
        parts.append(
            Part("paper_configs", compute_paper_configs, checks_paper_configs, paper_figures.paper_configs)
        )
    if config.latent32:
        parts.append(Part("latent32", compute_latent32, checks_latent32, paper_figures.latent32))
    return parts


def _answer(config: Config, results: dict[str, Any]) -> str:
    two, rf = results["two_points"], results["random_features"]
    f = two.intermode
    text = (
        f"The exact score memorises (two points: inter-mode fraction {f['exact']:.3f}); a normal denoiser "
        f"error c = {two.shift} shifts the terminal distance to the ridge to "
        f"{two.sde['terminal_offset']:.4f} "
        f"(theory {ridge.linearised_normal_offset(two.shift, two.h_min):.4f}) and leaves placement alone, "
        f"while a tangent error (the denoiser clipped to the segment) slides samples between the modes "
        f"(inter-mode fraction {f['tangent']:.3f})."
    )
    for name, rows in rf.rows.items():
        f_rf = rows[max(rows)]["samples"][-1]["intermode_fraction"]
        text += f" {name}: random features at tau = inf generate between the modes ({f_rf:.3f}"
        text += f" vs exact {rf.exact_intermode[name]:.3f})"
        if "mlp" in results:
            text += f", the trained MLP {results['mlp'].rows[name]['intermode_fraction']:.3f}"
        text += "."
    return text


STUDY = register_study(
    Study(
        name="ridge",
        config=Config,
        parts=_parts,
        quick=dict(
            sets=("square_centre",),
            n_particles=1000,
            n_steps=200,
            n_saved=20,
            ridge_grid=20,
            ridge_times=(1.0, 0.1),
            n_plot_trajectories=20,
            ode_particles=64,
            rf_sets=("two_points",),
            rf_widths=(128,),
            rf_n_times=101,
            rf_n_noise=32,
            rf_taus=(1.0, 100.0, 1e4),
            rf_n_eval=200,
            rf_particles=400,
            rf_steps=100,
            rf_gd_steps=200,
            mlp_steps=600,
            mlp_width=64,
            latent_dim=6,
            ae_steps=200,
            latent_net_steps=400,
            latent_net_width=64,
            latent_particles=128,
            latent_steps=60,
            toy_width=256,
            toy_n_freqs=16,
            toy_n_times=41,
            toy_n_noise=16,
            toy_particles=300,
            toy_steps=150,
            toy_configs=("fig1_thirteen",),
            toy_config_width=128,
            toy_config_particles=200,
            toy_config_steps=60,
            toy_snapshot_times=(1.0, 0.1),
            latent32_ae_steps=150,
            latent32_net_steps=200,
            latent32_net_width=64,
            latent32_particles=200,
            latent32_steps=50,
        ),  # fmt: skip
        description="Reach, align and slide around the log-density ridge (He, Qiu & Tao 2026): exact, "
        "random-feature and trained scores on 2-D training sets and latent digits.",
        question="Do samples reach the log-density ridge of the smoothed training set, with normal score "
        "errors setting their distance to it (align) and tangent errors their placement along it (slide)?",
        answer=_answer,
        headline="align_slide_two_points",
    )
)
