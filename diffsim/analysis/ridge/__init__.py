r"""The log-density ridge of ``p_t`` and the reach / align / slide decomposition of sampling.

He, Qiu & Tao (2026, arXiv 2602.06021) describe generation by a non-memorising model as motion around
the time-indexed *log-density ridge* of the smoothed empirical distribution
``\hat p_t = (1/M) sum_i N(alpha_t x_i, sigma_t^2 I)``. This module measures that geometry for any score.

**Ridge** (Genovese et al. 2014, Ann. Statist. 42:1511, applied to ``log p``; Ozertem & Erdogmus 2011,
JMLR 12:1249). Let ``g = \nabla log p_t(x)`` and ``H = \nabla^2 log p_t(x)`` with eigenvalues
``lambda_1 >= ... >= lambda_D`` and eigenvectors ``v_j``. For intrinsic dimension ``k`` (``1 <= k <= D-1``)
the *normal space* is spanned by ``V_perp = [v_{k+1}, ..., v_D]`` (the most negative curvatures),
``P_perp = V_perp V_perp^T``, and the ``k``-ridge is

    R_t = { x : P_perp(x) g(x) = 0,  lambda_{k+1}(x) < 0 }.

``jnp.linalg.eigh`` returns ascending eigenvalues; here they are flipped to descending order so that the
normal space is ``eigvecs[:, k:]``.

**Eigengap mask.** The normal space is defined only where ``gap = lambda_k - lambda_{k+1}`` is bounded
away from zero (Genovese's condition A1). For sparse data at small ``t`` the Hessian near a training point
is ``~ -I / sigma_t^2`` (isotropic: a mode, not a ``k``-ridge) and the normal space returned by ``eigh`` is
arbitrary. Every point with ``gap < gap_threshold * |lambda_D|`` (relative, the default) or
``gap < gap_threshold`` (absolute), or with ``lambda_{k+1} >= 0``, is **masked**: its residual and
distances are NaN and ``valid`` is False. Summaries must use the mask; nothing is silently scored.

**Residual vs distance.** The residual ``rho = |P_perp g|`` is not a distance: near the ridge
``P_perp g ~ H_perp r`` with ``r`` the normal displacement and ``|H_perp| ~ 1 / sigma_t^2``, so
``rho ~ dist / sigma_t^2``. Two distance estimates are provided:

- one-step Newton: ``dist_N = | Lambda_perp^{-1} V_perp^T g |`` (``Lambda_perp`` the normal eigenvalues);
- subspace-constrained mean shift (SCMS), iterated to convergence:
  ``x <- x + eta P_perp(x) g(x)``. With ``eta = c_t`` (the kernel variance) and the empirical score this is
  exactly the SCMS step ``x <- x + P_perp (alpha_t m_t(x) - x)`` (``m_t`` the posterior mean); the default
  ``eta = 1 / |lambda_D(x)|`` equals it where the normal posterior variance vanishes and is a safe
  gradient step for any score. Convergence: ``|P_perp g| / |lambda_D| < tol`` (the Newton step length,
  in data units), within ``max_iter`` iterations; the distance is ``|x - SCMS(x)|``.

**Matrix-free.** :func:`ridge_geometry_matrix_free`, :func:`hessian_spectrum_matrix_free`,
:func:`scms_project_matrix_free` and :func:`decompose_matrix_free` compute the same quantities from
Hessian-vector products (:func:`hessian_vector_product`) by block Lanczos, keeping only the top ``k + 1``
eigenpairs (the normal space is the complement of the tangent space): ``O(D k)`` memory, for ``D`` in the
thousands.

**Trajectories.** :func:`ridge_stats` builds a ``stats(t, x)`` function for :func:`diffsim.simulate` that
records, at each saved step, the residual, Newton distance, eigengap and mask, and the normal / tangent
norms of the score error (learned minus reference score) and of the reverse drift;
:func:`displacement_components` splits the displacement between saved steps. :func:`detect_phases`
labels each particle and step **outside** the tube, **align** (inside the tube, the normal drift
dominates: relaxation toward the ridge) or **slide** (inside, the tangent drift dominates), and finds the
**reach** time (entering the tube for good). :func:`inter_mode_fraction` counts samples far from every
training point.

**Estimators and closed forms.** :func:`signal_denoiser` (the denoiser a score implies),
:func:`directional_errors` (normal / tangent denoiser errors at :func:`ridge_evaluation_points`),
:func:`trace_ridge` (SCMS from a lattice), :func:`summarise_ridge_run` (per-step summaries of a run),
:func:`split_on_off_ridge` (samples near and far from the ridge at a time), and the two-point closed
forms (:func:`two_point_em_recursions`, :func:`two_point_ode_distance`, :func:`two_point_tube_entry_time`,
:func:`linearised_normal_offset`, :func:`linearised_ridge_distance`, :func:`ode_normal_relaxation_rate`).

**Intrinsic dimension.** :func:`two_nn_dimension` (Facco et al. 2017), :func:`mle_dimension`
(Levina & Bickel 2005) on data, :func:`eigengap_dimension` on a Hessian spectrum: the ``d*`` of the ridge.
"""

from ._estimators import (
    RidgeEvaluation as RidgeEvaluation,
    directional_errors as directional_errors,
    quiet_nan_warnings as quiet_nan_warnings,
    ridge_evaluation_points as ridge_evaluation_points,
    signal_denoiser as signal_denoiser,
    split_on_off_ridge as split_on_off_ridge,
    summarise_ridge_run as summarise_ridge_run,
    trace_ridge as trace_ridge,
)
from ._geometry import (
    RidgeGeometry as RidgeGeometry,
    SCMSResult as SCMSResult,
    decompose as decompose,
    hessian_spectrum as hessian_spectrum,
    log_density_hessian as log_density_hessian,
    ridge_geometry as ridge_geometry,
    scms_project as scms_project,
)
from ._intrinsic_dim import (
    eigengap_dimension as eigengap_dimension,
    mle_dimension as mle_dimension,
    two_nn_dimension as two_nn_dimension,
)
from ._matrix_free import (
    MatrixFreeRidgeGeometry as MatrixFreeRidgeGeometry,
    decompose_matrix_free as decompose_matrix_free,
    hessian_spectrum_matrix_free as hessian_spectrum_matrix_free,
    hessian_vector_product as hessian_vector_product,
    ridge_geometry_matrix_free as ridge_geometry_matrix_free,
    scms_project_matrix_free as scms_project_matrix_free,
)
from ._samples import (
    inter_mode_fraction as inter_mode_fraction,
    intermode_radius as intermode_radius,
    min_spacing as min_spacing,
    nearest_distance as nearest_distance,
)
from ._trajectories import (
    PHASE_ALIGN as PHASE_ALIGN,
    PHASE_NAMES as PHASE_NAMES,
    PHASE_OUTSIDE as PHASE_OUTSIDE,
    PHASE_SLIDE as PHASE_SLIDE,
    PHASE_UNRESOLVED as PHASE_UNRESOLVED,
    Phases as Phases,
    RidgeStats as RidgeStats,
    detect_phases as detect_phases,
    displacement_components as displacement_components,
    log_distance_rate as log_distance_rate,
    ridge_stats as ridge_stats,
    tube_radius as tube_radius,
)
from ._two_points import (
    linearised_normal_offset as linearised_normal_offset,
    linearised_ridge_distance as linearised_ridge_distance,
    ode_normal_relaxation_rate as ode_normal_relaxation_rate,
    two_point_em_recursions as two_point_em_recursions,
    two_point_ode_distance as two_point_ode_distance,
    two_point_tube_entry_time as two_point_tube_entry_time,
)
