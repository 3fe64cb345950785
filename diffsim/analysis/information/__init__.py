r"""Pointwise and pixel-wise mutual information from denoisers (I-MMSE), and partial information
decomposition (PID) of what two tokens say about an image.

Sources: Kong, Brekelmans & Ver Steeg, "Information-theoretic diffusion" (ITD, ICLR 2023); Kong, Liu, Li,
Yogatama & Ver Steeg, "Interpretable diffusion via information decomposition" (ICLR 2024); Dewan, Zawar,
Saxena, Chang, Luo & Bisk, "DiffusionPID" (NeurIPS 2024); Williams & Beer (2010) for ``I_min``; Barrett
(2015) for the minimum-mutual-information PID. Guo, Shamai & Verdu (2005) for I-MMSE.

**Channel** (see :mod:`diffsim.scores.conditional`): ``x_lambda = a x + b eps`` with
``a^2 = sigmoid(lambda)``, ``b^2 = sigmoid(-lambda)``, ``eps ~ N(0, I_d)``; ``eps_hat(x_lambda | s)`` is the
noise predictor given the tokens in the subset ``s``. The pointwise MMSE of ``x`` under condition ``s`` is

    mmse_s(x, lambda) = E_eps | eps - eps_hat(a x + b eps | s) |^2.

**Pointwise log-likelihood** (ITD): with a Gaussian base ``N(0, diag(v))`` whose eps-MMSE is
``mmse_G(lambda) = sum_i sigmoid(lambda + log v_i)`` and entropy
``h_G = d/2 log(2 pi e) + 1/2 sum_i log v_i``,

    -log p(x | s) = h_G + 1/2 \int [ mmse_s(x, lambda) - mmse_G(lambda) ] d lambda.

**Pointwise mutual information** (Kong et al. 2024), context ``c``, tokens ``y``:

    standard:    i(x; y | c)   = 1/2 \int E_eps [ |eps - eps_hat(x_l | c)|^2
                                                   - |eps - eps_hat(x_l | y, c)|^2 ] d lambda
                                 = log p(x | y, c) - log p(x | c)            (exactly, for optimal denoisers)
    orthogonal:  i^o(x; y | c) = 1/2 \int E_eps | eps_hat(x_l | c) - eps_hat(x_l | y, c) |^2 d lambda  >= 0.

By the orthogonality principle (``eps - eps_hat(.|y,c)`` is orthogonal to every function of ``(x_l, y, c)``),
``E_{p(x|y,c)} i^o = E_{p(x|y,c)} i``: the orthogonal estimator is unbiased on average, not per sample.
Both split over coordinates (``|v|^2 = sum_j v_j^2``): ``i_j`` and ``i^o_j >= 0`` are the per-coordinate
(per-pixel) maps. All informations are in **nats**.

**Integration over log-SNR** (:class:`LogSNRScheme`): ``\int f d lambda ~ sum_l w_l f(lambda_l)``:

- ``"logistic"`` (ITD's ``logistic_integrate``): ``u ~ U(sigmoid(-c), sigmoid(c))``,
  ``lambda = loc + s logit(u)`` (support ``[loc - c s, loc + c s]``), importance weight
  ``w = s tanh(c/2) / (sigmoid(v) sigmoid(-v)) / L`` with ``v = (lambda - loc)/s`` (the inverse of the
  truncated-logistic density; truncated mass ``sigmoid(c) - sigmoid(-c) = tanh(c/2)``);
- ``"uniform"``: ``lambda ~ U[lo, hi]``, ``w = (hi - lo)/L``;
- ``"gauss_legendre"``: fixed Gauss-Legendre nodes and weights on ``[lo, hi]``;
- ``"fixed"``: given log-SNRs and weights (default: trapezoid rule).

Random schemes draw fresh log-SNRs per data point (unbiased per point, over the scheme's support); each
log-SNR gets ``n_noise`` noise draws. **Common random numbers**: the SAME ``(lambda, eps)`` are used for
every condition of a point (one noisy point, all token subsets), so noise cancels in differences, and
point ``i`` draws from ``fold_in(key, i)`` so results do not depend on chunking.

**PID** of the information two sources ``y_1, y_2`` (tokens) carry about the target ``x`` (the image),
optionally given context tokens ``c`` (conditional PID, CPID). Every measure here has the form

    R = min(i_1, i_2) (averaged one way or the other),  U_k = I_k - R,  S = I_12 - I_1 - I_2 + R,

and they differ only in WHAT is minimised (:data:`PID_MEASURES`):

- ``"pointwise_min"`` (DiffusionPID as reconstructed in the reference notes, section 3.2):
  the pointwise MIs of each sample ``(x, y_1, y_2)``: ``R = E[min(i(x;y_1), i(x;y_2))]``; per pixel with
  ``i^o_j`` (non-negative) for maps. Can be negative per sample.
- ``"mmi"`` (minimum mutual information, Barrett 2015): ``R = min(I(X;Y_1), I(X;Y_2))`` of the averaged MIs.
- ``"wb_imin"`` (Williams & Beer 2010, ``I_min``): the specific informations
  ``I(X=x; Y_k) = KL(p(y_k | x) || p(y_k)) = sum_{y} p(y | x) i(x; y)``, ``R = E_x min_k I(X=x; Y_k)``. The
  posterior comes from the model by Bayes over the token alphabet,
  ``p(y_1, y_2 | x, c) \propto p(y_1, y_2 | c) exp(i(x; y_1, y_2 | c))`` (standard estimator, one extra
  condition per token pair), and its marginals. Image level only.

The exact discrete counterparts (:func:`discrete_pid`) compute the same three measures on a table
``p(y_1, y_2, g)``; in the well-separated limit of a token mixture the image carries exactly the discrete
component code ``g`` (:func:`well_separated_joint`), so they are the ground truth of the estimators.
"""

from ._any_model import (
    VARIANT_PID_MEASURES as VARIANT_PID_MEASURES,
    PixelPID as PixelPID,
    pixel_pid as pixel_pid,
    variant_curves as variant_curves,
    variant_information as variant_information,
    variant_pid as variant_pid,
    variant_pid_information as variant_pid_information,
)
from ._discrete import (
    discrete_pid as discrete_pid,
    dit_pid_values as dit_pid_values,
    well_separated_joint as well_separated_joint,
)
from ._logsnr import (
    LOGSNR_SCHEMES as LOGSNR_SCHEMES,
    LogSNRScheme as LogSNRScheme,
    gaussian_mmse as gaussian_mmse,
    logsnr_samples as logsnr_samples,
)
from ._mmse import InformationCurves as InformationCurves, mmse_curves as mmse_curves
from ._pid import (
    ESTIMATORS as ESTIMATORS,
    NATS_PER_BIT as NATS_PER_BIT,
    PID_MEASURES as PID_MEASURES,
    PIDInformation as PIDInformation,
    PIDResult as PIDResult,
    PIDTerms as PIDTerms,
    decompose as decompose,
    exact_pid_information as exact_pid_information,
    pid as pid,
    pid_information as pid_information,
    pid_terms as pid_terms,
    pid_tolerances as pid_tolerances,
)
from ._pointwise import (
    NegLogLikelihood as NegLogLikelihood,
    PointwiseInformation as PointwiseInformation,
    exact_pointwise_information as exact_pointwise_information,
    neg_log_likelihood as neg_log_likelihood,
    pixel_map as pixel_map,
    pointwise_information as pointwise_information,
)
from ._variants import ConditionVariants as ConditionVariants


__all__ = [
    "ESTIMATORS",
    "LOGSNR_SCHEMES",
    "NATS_PER_BIT",
    "PID_MEASURES",
    "InformationCurves",
    "LogSNRScheme",
    "NegLogLikelihood",
    "PIDInformation",
    "PIDResult",
    "PIDTerms",
    "PointwiseInformation",
    "decompose",
    "discrete_pid",
    "dit_pid_values",
    "exact_pid_information",
    "exact_pointwise_information",
    "gaussian_mmse",
    "logsnr_samples",
    "mmse_curves",
    "neg_log_likelihood",
    "pid",
    "pid_information",
    "pid_terms",
    "pid_tolerances",
    "pixel_map",
    "pointwise_information",
    "well_separated_joint",
    "ConditionVariants",
    "PixelPID",
    "VARIANT_PID_MEASURES",
    "pixel_pid",
    "variant_curves",
    "variant_information",
    "variant_pid",
    "variant_pid_information",
]
