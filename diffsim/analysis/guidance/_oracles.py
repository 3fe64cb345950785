r"""Exact predictions about guided mixture dynamics that the guidance study checks against.

- :func:`conditional_prior_translation_error`: with identity class covariances the unguided (``w = 1``,
  ``eta = 0``) probability-flow ODE started from the exact conditional prior ``p_T(. | y) = N(a_T mu_y, I)``
  is the translation ``x -> x + (a_end - a_T) mu_y`` (reference note 2.3), so it lands exactly on
  ``p_{t_min}(. | y) = N(a_end mu_y, I)``, particle by particle.
- :func:`narrow_neighbour_flags`: in 1-D, ``phi_t'' = -1/C_y + sum_k r_k / C_k - Var_r(s_k)``
  (docs/guidance.md section 2.6), so ``log p_t(y|x)`` can fail to be concave only if some non-target
  component is narrower than the target (the OU map ``var -> a^2 var + sigma^2`` keeps the order).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jaxtyping import ArrayLike

from ...sampling import flow
from ...scores.guidance import guided_mixture
from ...scores.mixture import GaussianMixture


def conditional_prior_translation_error(
    mixture: GaussianMixture, label: int, *, key: jax.Array, n: int
) -> float | None:
    r"""``max |x_out - x_T - (a_end - a_T) mu_y|`` over ``n`` particles of the unguided continuous DDIM
    (adaptive PF-ODE via :func:`diffsim.flow`) started from the exact conditional prior of class ``label``.

    Zero up to the solver tolerance when the class is one Gaussian ``N(mu_y, I)`` (the PF-ODE is then a
    translation, see the module docstring). ``None`` when the prediction does not apply: the class has
    several components, a non-identity covariance, or its mean is the origin (the map is the identity and
    there is nothing to check).

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        key: PRNG key for the ``n`` draws of the conditional prior at ``t_max``.
        n: number of particles.
    """
    cond = mixture.condition(label)
    ev = np.asarray(cond.eigvals, float)
    if len(cond.weights) != 1 or not np.allclose(ev, 1.0) or not np.any(np.asarray(cond.means)):
        return None
    p = mixture.process
    x_t, _ = cond.sample(key, n, p.t_max)
    out = flow(guided_mixture(mixture, label, 1.0), x_t, p.t_max, p.t_min)
    mu = np.asarray(cond.means[0], np.float64)
    shift = float(p.alpha(p.t_min)) - float(p.alpha(p.t_max))
    return float(np.max(np.abs(np.asarray(out, np.float64) - np.asarray(x_t, np.float64) - shift * mu)))


def narrow_neighbour_flags(means: ArrayLike, variances: ArrayLike, target: int) -> dict[str, bool]:
    r"""Whether a non-target component of a 1-D mixture is narrower than the target (``narrow``: the
    necessary condition for ``log p_t(y|x)`` to lose concavity, see the module docstring), and whether one
    such lies within two target standard deviations of the target mean (``narrow_near``).

    Args:
        means: the 1-D component means, shape ``(K,)``.
        variances: the component variances, shape ``(K,)``.
        target: the index of the target component.

    Returns:
        ``{"narrow": bool, "narrow_near": bool}``.
    """
    mu = np.asarray(means)
    var = np.asarray(variances)
    others = [k for k in range(len(mu)) if k != target]
    narrow = [k for k in others if var[k] < var[target]]
    near = [k for k in narrow if abs(mu[k] - mu[target]) < 2.0 * math.sqrt(var[target])]
    return {"narrow": bool(narrow), "narrow_near": bool(near)}
