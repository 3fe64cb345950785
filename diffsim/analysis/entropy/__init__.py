r"""Differential entropy by independent routes (all in nats).

Each route is usable on its own; the guidance study puts them side by side.

**1. Closed forms for Gaussians.** ``h(N(mu, Sigma)) = 1/2 log det(2 pi e Sigma)``; under a process of
:mod:`diffsim.processes` the marginal of ``N(mu, Sigma)`` is ``N(alpha_t mu, alpha_t^2 Sigma + sigma_t^2 I)``,
so ``h(p_t) = 1/2 sum_j log(2 pi e (alpha_t^2 lambda_j + sigma_t^2))`` (``lambda_j`` eigenvalues of Sigma).

**2. The model's own density along the probability-flow ODE** (instantaneous change of variables; Chen et
al. 2018, Song et al. 2021 eq. 39). For the PF-ODE ``dx/dt = v(t, x) = f(t) x - 1/2 g(t)^2 s(t, x)`` of
*any* score ``s`` (guided ones included), ``d/dt log q_t(x_t) = -div v(t, x_t)`` along each trajectory, so
a particle started at ``z ~ N(0, I)`` at ``T`` and carried to ``x`` at ``t_end`` has

    log q_{t_end}(x) = log p_prior(z) + \int_{t_end}^{T} div v(t, x_t) dt,

and the entropy of the DDIM (continuous-limit) output is ``h = -E log q_{t_end}(X) = h(prior) -
E \int_{t_end}^{T} div v dt`` (estimated in the second form: the prior's part is a closed form, so only the
log-determinant carries Monte Carlo noise, none for an affine flow). ``div v`` is exact
(``score.velocity_divergence``; closed form for mixtures and guided mixtures) for small ``d`` or
Hutchinson's estimator ``eps^T (dv/dx) eps`` with Rademacher probes for large ``d``. Built on
:func:`diffsim.log_likelihood` (integrated backwards from ``T``). :func:`sampler_map_entropy` does the
same for a *finite-step* deterministic sampler: ``log q(x) = log p_prior(z) - log|det dx/dz|`` with the
exact Jacobian of the discrete map (autodiff through the sampler; small ``d``).

**3. Entropy-rate identity along a path of marginals.** For ``dX = f(X, t) dt + g(t) dW`` with marginals
``p_t``, the Fokker-Planck equation and ``E[Delta log p] = -E|grad log p|^2`` give

    dH/dt = E[div f] + 1/2 g^2 J(p_t),       J(p_t) = E |grad log p_t(X_t)|^2   (Fisher information);

for VP (``f = -beta x / 2``): ``dH/dt = beta (J - d) / 2``; for VE: de Bruijn's ``dH/dt = g^2 J / 2``.
:func:`marginal_path_entropy` integrates it from ``T`` back to ``t_0`` with ``J`` by Monte Carlo from the
exact marginals. With zero diffusion (a deterministic flow ``dx/dt = v``, e.g. a guided DDIM) the identity
reads ``dH/dt = E[div v]`` (Liouville); :func:`flow_entropy_rate` integrates it along simulated particles.

**4. Kozachenko-Leonenko k-nearest-neighbour estimator** (Kozachenko & Leonenko 1987; Euclidean norm):

    H_k = psi(n) - psi(k) + log V_d + (d / n) sum_i log rho_{k,i},     V_d = pi^{d/2} / Gamma(d/2 + 1),

``rho_{k,i}`` the distance from ``x_i`` to its ``k``-th nearest neighbour. ``V_d`` is the volume of the
*unit* ball: using the radius-one ball volume with *diameters* ``2 rho`` (as ``entropy_estimators.get_h``
with ``norm='euclidean'`` does) adds a spurious ``d log 2``. The bias-corrected option is the weighted
estimator of Berrett, Samworth & Yuan (2019, Ann. Statist. 47(1)): ``H^w = sum_j w_j H_j`` with
``sum_j w_j = 1`` and ``sum_j w_j Gamma(j + 2l/d) / Gamma(j) = 0`` for ``l = 1..floor(d/4)``, which
cancels the leading ``n^{-2l/d}`` bias terms (for ``d <= 3`` it is the plain estimator). Distances are
computed in chunks (no ``n x n`` matrix) and refined exactly for the nearest candidates, so float32
cancellation in ``|x|^2 + |y|^2 - 2 x.y`` does not corrupt small distances.
"""

from __future__ import annotations

from ._closed_forms import (
    analytic_entropy as analytic_entropy,
    gaussian_entropy as gaussian_entropy,
    gaussian_marginal_entropy as gaussian_marginal_entropy,
    prior_entropy as prior_entropy,
)
from ._estimate import (
    EntropyEstimate as EntropyEstimate,
    PathEntropy as PathEntropy,
)
from ._knn import (
    knn_distances as knn_distances,
    knn_entropy as knn_entropy,
    knn_weights as knn_weights,
    unit_ball_log_volume as unit_ball_log_volume,
)
from ._pf_ode import (
    model_log_density as model_log_density,
    pf_ode_entropy as pf_ode_entropy,
    sampler_map_entropy as sampler_map_entropy,
)
from ._rate import (
    entropy_rate as entropy_rate,
    fisher_information as fisher_information,
    flow_entropy_rate as flow_entropy_rate,
    marginal_path_entropy as marginal_path_entropy,
)


__all__ = [
    "EntropyEstimate",
    "PathEntropy",
    "analytic_entropy",
    "entropy_rate",
    "fisher_information",
    "flow_entropy_rate",
    "gaussian_entropy",
    "gaussian_marginal_entropy",
    "knn_distances",
    "knn_entropy",
    "knn_weights",
    "marginal_path_entropy",
    "model_log_density",
    "pf_ode_entropy",
    "prior_entropy",
    "sampler_map_entropy",
    "unit_ball_log_volume",
]
