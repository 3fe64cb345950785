r"""Classification confidence and output diversity versus guidance strength, for DDPM and DDIM.

Reproduces the quantities of Wu, Chen, Li, Wang & Wei (ICML 2024, "Theoretical insights for diffusion
guidance: a case study for Gaussian mixture models"): for a Gaussian mixture with labels, the exact noisy
classifier ``p_t(y|x)`` and the guided score

    s_w(t, x) = \nabla log p_t(x) + w \nabla log p_t(y | x)        (diffsim guidance scale w; eta = w - 1),

the output ``X`` of DDPM (reverse SDE) and DDIM (probability-flow ODE) is summarised by

- the confidence ``E[p_0(y | X)]`` and its reciprocal moment ``E[1 / p_0(y | X)]`` (Li & Jiao 2025 show the
  latter decreases with guidance for general data);
- the mean and variance of ``<X, u>`` along the class-separating direction ``u`` (:func:`class_direction`);
- the differential entropy ``h(X)`` by every applicable route of :mod:`diffsim.analysis.entropy` and
  :mod:`diffsim.analysis.fokker_planck`.

**Laws compared** (keys of :attr:`GuidanceSweep.laws`):

- ``"ddim@N"`` / ``"ddpm@N"``: the finite-step samplers (``N`` steps on a log-SNR-uniform grid);
- ``"ddim"``: the continuous-limit DDIM (PF-ODE, adaptive Runge-Kutta), with per-sample densities;
- ``"ddpm"``: the continuous-limit DDPM (reverse SDE) through its Fokker-Planck equation (``d <= 2`` or a
  projectable mixture).

**Entropy routes** (``entropy/<route>`` entries): ``knn`` (Kozachenko-Leonenko on the particles),
``map`` (exact change of variables through the finite-step DDIM map), ``pf_ode`` (instantaneous change of
variables along the PF-ODE; Hutchinson above ``hutchinson_dim``), ``quadrature`` (the same with
Gauss-Hermite nodes on the projected 1-D problem: essentially exact), ``flow_rate`` (Liouville's
``dH/dt = E[div v]`` along fine-step DDIM particles), ``fokker_planck`` (grid density of the PDE).

**Projection.** When all components share one spherical covariance ``sigma^2 I`` and the means are
``c + m_k u`` (collinear along ``u``), the guided dynamics decouple: ``<x, u>`` follows the 1-D guided
problem with means ``m_k`` and the orthogonal coordinates follow the unguided dynamics of
``N(c_perp, sigma^2 I_{d-1})``, whose output entropy is the Gaussian closed form. Then Fokker-Planck and
quadrature run in 1-D for any ``d`` (:func:`projected_problem`).

Common random numbers: every strength uses the same key, hence the same prior draws and the same
per-particle noise, so confidence can be compared *pathwise* (:func:`pathwise_monotone_fraction`), the
mechanism of Wu et al.'s comparison theorem.
"""

from __future__ import annotations

from ._any_model import (
    ModelGuidanceSweep as ModelGuidanceSweep,
    model_guidance_sweep as model_guidance_sweep,
)
from ._bimodality import (
    DipTest as DipTest,
    dip_null_quantile as dip_null_quantile,
    dip_statistic as dip_statistic,
    dip_test as dip_test,
)
from ._modes import (
    count_modes as count_modes,
    count_modes_2d as count_modes_2d,
    output_modes_1d as output_modes_1d,
)
from ._oracles import (
    conditional_prior_translation_error as conditional_prior_translation_error,
    narrow_neighbour_flags as narrow_neighbour_flags,
)
from ._quantities import (
    ProjectedProblem as ProjectedProblem,
    class_direction as class_direction,
    clean_confidence as clean_confidence,
    pathwise_monotone_fraction as pathwise_monotone_fraction,
    projected_problem as projected_problem,
    sample_statistics as sample_statistics,
)
from ._split import (
    SplitMap as SplitMap,
    centre_step_slopes as centre_step_slopes,
    split_map as split_map,
)
from ._sweep import (
    GuidanceSweep as GuidanceSweep,
    fokker_planck_summary as fokker_planck_summary,
    guidance_sweep as guidance_sweep,
    guided_samples as guided_samples,
    step_sweep as step_sweep,
)


__all__ = [
    "DipTest",
    "GuidanceSweep",
    "ModelGuidanceSweep",
    "ProjectedProblem",
    "SplitMap",
    "centre_step_slopes",
    "class_direction",
    "clean_confidence",
    "conditional_prior_translation_error",
    "count_modes",
    "count_modes_2d",
    "dip_null_quantile",
    "dip_statistic",
    "dip_test",
    "fokker_planck_summary",
    "guidance_sweep",
    "guided_samples",
    "model_guidance_sweep",
    "narrow_neighbour_flags",
    "output_modes_1d",
    "pathwise_monotone_fraction",
    "projected_problem",
    "sample_statistics",
    "split_map",
    "step_sweep",
]
