r"""Critical windows of Gaussian mixtures: exact windows, theorem-side bounds, mixture trees and cloning.

Setting (Li & Chen, "Critical windows: non-asymptotic theory for feature emergence in diffusion models",
ICML 2024). Data ``p = sum_k w_k N(mu_k, Sigma_k)``; for a group ``S`` of components ``W_S = sum_{k in S}
w_k`` and the sub-mixture ``p^S = W_S^{-1} sum_{k in S} w_k N(mu_k, Sigma_k)``, with forward marginal
``p^S_t`` under the mixture's process (``x_t = alpha_t x_0 + sigma_t z``; OU: ``alpha_t = e^{-t}``).

**Noising-denoising.** Draw ``X_0 ~ p^{S_init}``, noise it to ``T_hat``, run the reverse process (SDE or
probability-flow ODE) with the score of the *full* mixture back to time 0. The output law is
``p^{S_init, T_hat}``. A critical window for ``S_init ⊆ S_targ`` is a range of ``T_hat`` where
``TV(p^{S_init, T_hat}, p^{S_targ}) <= eps``.

**Exact reweighting identity** (derived in ``docs/critical-windows.md``). The exact reverse SDE reproduces
the forward path measure, so starting it from ``p^{S}_{T_hat}`` instead of ``p_{T_hat}`` reweights every
path by ``p^S_{T_hat}(X_{T_hat}) / p_{T_hat}(X_{T_hat}) = P(S | X_{T_hat}) / W_S``. Hence, at any output time
``t_out`` (0 by default),

    SDE:  q(x) = p_{t_out}(x) g(x) / W_init,    g(x) = E[ P_{T_hat}(S_init | X_{T_hat}) | X_{t_out} = x ],
    ODE:  q(x) = p_{t_out}(x) P_{T_hat}(S_init | Phi_{t_out -> T_hat}(x)) / W_init,

and since ``p^{S_targ}_{t_out} = p_{t_out} P_{t_out}(S_targ | .) / W_targ``,

    TV(q, p^{S_targ}_{t_out}) = 1/2 E_{x ~ p_{t_out}} | g(x)/W_init - P_{t_out}(S_targ | x)/W_targ |.

Route (a) (:func:`window_curve`) evaluates this with exact samples of ``p`` (stratified over components),
the inner expectation of ``g`` by Gauss-Hermite quadrature (dimension <= 2) or antithetic Monte Carlo with a
split-half bias correction, and the flow map with :func:`diffsim.flow`. Route (b)
(:func:`simulated_window_curve`) simulates the protocol with :func:`diffsim.noise_denoise` and measures
``q(A) - p^{S_targ}(A)`` for the witness set ``A = {g/W_init > P(S_targ|.)/W_targ}`` (a lower bound on the
TV of the *simulated* law for any ``A``, equal to the TV when ``A`` is the optimal set).

**Dimension reduction.** When every component has the same spherical covariance ``s^2 I``, everything in the
protocol (forward noise, posteriors, reverse SDE/ODE) factorises into the linear span of the means and an
independent, component-independent ``N(0, s^2 I)`` part; TVs and retentions are exactly those of the
mixture projected onto the span (:func:`spherical_reduction`). Quadrature then applies in the reduced space.

**Theorem-side bounds** (:func:`theorem_bounds`; constants derived in ``docs/critical-windows.md``):

- ``T_lower`` (fine feature forgotten): data processing gives ``TV(p^{S_init,T}, p^{S_targ,T}) <=
  TV(p^{S_init}_T, p^{S_targ}_T)`` for any Markov reverse map (SDE or ODE); ``T_lower`` is the first time the
  exact forward TV drops to ``eps_lower``. Closed-form upper estimate: ``TV(p^{S_init}_t, p^{S_targ}_t) <=
  alpha_t Delta_intra / (2 sigma_t)`` (KL of the Gaussian noise kernel along a coupling + Pinsker), so
  ``T_lower^{W2} = t(log-SNR = 2 log(2 eps_lower / Delta_intra))``; OU: ``1/2 log(1 + Delta_intra^2 /
  (4 eps_lower^2))``.
- ``T_upper`` (coarse feature kept), SDE: Girsanov + Pinsker, ``TV(p^{S,T}, p^S) <= sqrt(KL/2)``, ``KL = 1/2
  int_0^T g(t)^2 E_{p^S_t} |s^S_t - s_t|^2 dt``, bounded in closed form through Bhattacharyya overlaps of
  the noised components in ``S`` and outside. ODE: the posterior of ``S`` is transported along the flow;
  ``TV <= 1/(2 W_S) int_0^T E_{p_t}[P(1-P) |dL/dt|] dt``, bounded the same way.

**Follow-up bound** (Li, Karan & Chen 2025, Theorem 2; :func:`follow_up_bound`): the dimension-free window
``[T_end, T_start]`` from exact forward TVs, error ``eps (1 + max(1, W) / sqrt 2)``; closed forms for one
shared spherical covariance (:func:`spherical_follow_up_bound`) and the eps-mixture tree
(:func:`eps_mixture_tree`, :func:`eps_tree_decisions`).

**Mixture trees** (:func:`mixture_tree`, :func:`tree_windows`) apply the windows per node; **cloning**
(:func:`cloning_overlap`, :func:`cloning_theory`) follows Biroli, Bonnaire, de Bortoli & Mézard (2024).
**Oracles** for the symmetric two-Gaussian mixture (:func:`symmetric_retention_oracle`,
:func:`symmetric_window_asymptotes`) are independent NumPy quadratures; ``*_record`` functions turn
results into plain JSON-ready dicts.

**Any model** (:func:`feature_retention`): the noising-denoising protocol on any score with a classifier on
the outputs (feature-retention curve, class-level keep/forget TVs, ``[keep, forget]``), and membership
inference from it (:func:`membership_scores`, :func:`membership_auc`); the Stable Diffusion protocol's
structure on a discrete DDPM schedule (:func:`add_noise`, :func:`renoise_denoise`, :func:`renoise_retention`).

Time is the process's forward time (OU time for ``VP.ou()``). Everything runs in the mixture's dtype
(float32 by default); the closed-form bounds run in NumPy float64.
"""

from ._any_model import FeatureRetention as FeatureRetention, feature_retention as feature_retention
from ._bounds import (
    TheoremBounds as TheoremBounds,
    girsanov_tv_bound as girsanov_tv_bound,
    inter_separation as inter_separation,
    intra_separation as intra_separation,
    t_lower as t_lower,
    t_lower_w2 as t_lower_w2,
    t_upper as t_upper,
    t_upper_numerical as t_upper_numerical,
    theorem_bounds as theorem_bounds,
)
from ._cloning import (
    cloning_overlap as cloning_overlap,
    cloning_theory as cloning_theory,
    speciation_time as speciation_time,
    two_gaussian_cloning as two_gaussian_cloning,
)
from ._curves import (
    WindowCurve as WindowCurve,
    compare_routes as compare_routes,
    simulated_window_curve as simulated_window_curve,
    simulated_window_curves as simulated_window_curves,
    window_curve as window_curve,
)
from ._eps_tree import (
    EpsMixtureTree as EpsMixtureTree,
    EpsTreeDecision as EpsTreeDecision,
    EpsTreeNode as EpsTreeNode,
    eps_mixture_tree as eps_mixture_tree,
    eps_tree_decisions as eps_tree_decisions,
    eps_tree_record as eps_tree_record,
)
from ._follow_up import (
    FollowUpBound as FollowUpBound,
    closeness_time as closeness_time,
    follow_up_bound as follow_up_bound,
    follow_up_eps as follow_up_eps,
    follow_up_error as follow_up_error,
    follow_up_record as follow_up_record,
    group_odds as group_odds,
    separation_time as separation_time,
)
from ._follow_up_closed import (
    spherical_crossing_time as spherical_crossing_time,
    spherical_follow_up_bound as spherical_follow_up_bound,
)
from ._groups import spherical_reduction as spherical_reduction
from ._membership import membership_auc as membership_auc, membership_scores as membership_scores
from ._oracles import (
    symmetric_retention_oracle as symmetric_retention_oracle,
    symmetric_window_asymptotes as symmetric_window_asymptotes,
)
from ._reading import (
    CriticalWindow as CriticalWindow,
    Window as Window,
    critical_window as critical_window,
    read_window as read_window,
)
from ._records import (
    bounds_record as bounds_record,
    critical_window_record as critical_window_record,
    curve_record as curve_record,
    tree_nested as tree_nested,
    tree_windows_record as tree_windows_record,
    window_record as window_record,
)
from ._renoise import (
    BETA_SCHEDULES as BETA_SCHEDULES,
    RenoiseRetention as RenoiseRetention,
    add_noise as add_noise,
    ddpm_alphas_cumprod as ddpm_alphas_cumprod,
    renoise_denoise as renoise_denoise,
    renoise_retention as renoise_retention,
)
from ._trees import (
    NodeWindows as NodeWindows,
    TreeNode as TreeNode,
    TreeWindows as TreeWindows,
    mixture_tree as mixture_tree,
    tree_windows as tree_windows,
)
from ._tv import (
    TVEstimate as TVEstimate,
    gaussian_tv_equal_cov as gaussian_tv_equal_cov,
    submixture_tv as submixture_tv,
)


__all__ = [
    "BETA_SCHEDULES",
    "RenoiseRetention",
    "add_noise",
    "ddpm_alphas_cumprod",
    "renoise_denoise",
    "renoise_retention",
    "EpsMixtureTree",
    "EpsTreeDecision",
    "EpsTreeNode",
    "eps_mixture_tree",
    "eps_tree_decisions",
    "eps_tree_record",
    "FollowUpBound",
    "closeness_time",
    "follow_up_bound",
    "follow_up_eps",
    "follow_up_error",
    "follow_up_record",
    "group_odds",
    "separation_time",
    "spherical_crossing_time",
    "spherical_follow_up_bound",
    "CriticalWindow",
    "FeatureRetention",
    "NodeWindows",
    "TVEstimate",
    "TheoremBounds",
    "TreeNode",
    "TreeWindows",
    "Window",
    "WindowCurve",
    "bounds_record",
    "cloning_overlap",
    "cloning_theory",
    "compare_routes",
    "critical_window",
    "critical_window_record",
    "curve_record",
    "feature_retention",
    "gaussian_tv_equal_cov",
    "girsanov_tv_bound",
    "inter_separation",
    "intra_separation",
    "membership_auc",
    "membership_scores",
    "mixture_tree",
    "read_window",
    "simulated_window_curve",
    "simulated_window_curves",
    "speciation_time",
    "spherical_reduction",
    "submixture_tv",
    "symmetric_retention_oracle",
    "symmetric_window_asymptotes",
    "t_lower",
    "t_lower_w2",
    "t_upper",
    "t_upper_numerical",
    "theorem_bounds",
    "tree_nested",
    "tree_windows",
    "tree_windows_record",
    "two_gaussian_cloning",
    "window_curve",
    "window_record",
]
