r"""Saliency at one step of the sampler, scored against ground truth, and insertion/deletion games.

Source: Park, Ju & Lee, "Explaining generative diffusion models via visual analysis for interpretable
decision-making process" (ESWA 248, 2024; code ``ian-jihoonpark/X-Diffusion``): DF-RISE (masking
saliency), DF-CAM (layer-wise Grad-CAM with guidance-combined gradients), cross-attention relevance
(Chefer et al. 2021 rules) and an insertion/deletion "AUC". Here every tool is transplanted to models with
known ground truth so that its maps and curves can be scored; the changes against the released code are
listed in ``docs/concepts.md``.

1. **What is explained**: any function ``f(x_t)``, e.g. ``x0_hat`` (:func:`conditional_fn`,
   :func:`conditional_tokens_fn`) or token ``k``'s effect ``g_k = eps_hat(.|y) - eps_hat(.|y \ k)``
   (:func:`token_effect_fn`; :func:`token_effect_energy` is ``|g_k|^2 / 2`` along a path).
2. **Maps**:

   - masking (DF-RISE done right, :func:`masking_saliency`): masks ``M_i`` (Bernoulli or RISE-style smooth,
     mean ``p``), inputs ``M_i * x + (1 - M_i) * baseline``, scores between LIKE quantities
     ``s_i = -mean (f(M_i x) - f(x))^2`` (or a local SSIM map of ``f(M_i x)`` against ``f(x)``), and
     ``S = 1/(N p) sum_i M_i s_i`` (returned centred: ``1/(N p) sum_i M_i (s_i - s_bar)``);
   - Jacobian influence ``S_j = sum_i |df_i/dx_j|`` (:func:`jacobian_saliency`);
   - occlusion ``S_j = |f(x) - f(x with patch(j) -> baseline)|^2`` (:func:`occlusion_saliency`);
   - Grad-CAM on the UNet's feature maps with guidance-combined gradients and activations
     ``g = g_u + w (g_c - g_u)``, ``A = A_u + w (A_c - A_u)`` (:func:`grad_cam`, Selvaraju et al. 2017);
   - attention relevance of the UNet's token cross-attention, ``A_bar = mean_heads (grad A * A)^+``
     (Chefer et al. 2021; one cross-attention layer, so the relevance is ``A_bar`` itself,
     :func:`attention_relevance`, :func:`attention_relevance_path`).
3. **Scores against ground truth**: pointing game, top-q IoU, mass fraction (:func:`saliency_scores`) and
   rank correlation (:func:`spearman`) for the model-randomisation sanity test (Adebayo et al. 2018,
   :func:`randomise_weights`).
4. **Insertion/deletion** (:func:`insertion_deletion`): reveal (insertion) or remove (deletion) input pixels
   in saliency order, score ``fidelity = 1 - |f(x') - f(x)|^2 / |f(baseline) - f(x)|^2`` (0 at the
   baseline, 1 at ``x``), per-sample normalised trapezoid AUC (:func:`normalised_auc`), a random-order
   floor and a greedy oracle-order ceiling, reported as ``(AUC - random) / (oracle - random)`` per sample
   (the released code min-max normalises the dataset-mean curve instead).
5. **Any conditional model** (a diffsim score per condition: ``pipe.score(prompt)``, a guided pair):
   masking, gradient (one ``jax.vjp``) and insertion/deletion on its latent grid, of its prediction or of
   the conditioning's effect (:func:`model_masking_saliency`, :func:`gradient_saliency`,
   :func:`model_insertion_deletion`, :func:`prediction_fn`).
"""

from .._ranks import spearman as spearman
from ._any_model import (
    ConditionEffectFn as ConditionEffectFn,
    GradientSaliency as GradientSaliency,
    gradient_saliency as gradient_saliency,
    latent_grid as latent_grid,
    model_insertion_deletion as model_insertion_deletion,
    model_masking_saliency as model_masking_saliency,
    prediction_fn as prediction_fn,
)
from ._fns import (
    ConditionalFn as ConditionalFn,
    ConditionalTokensFn as ConditionalTokensFn,
    TokenEffectFn as TokenEffectFn,
    conditional_fn as conditional_fn,
    conditional_tokens_fn as conditional_tokens_fn,
    token_effect_energy as token_effect_energy,
    token_effect_fn as token_effect_fn,
)
from ._insertion_deletion import (
    InsertionDeletion as InsertionDeletion,
    insertion_deletion as insertion_deletion,
    normalised_auc as normalised_auc,
)
from ._maps import (
    bernoulli_masks as bernoulli_masks,
    jacobian_saliency as jacobian_saliency,
    masking_saliency as masking_saliency,
    occlusion_saliency as occlusion_saliency,
    smooth_masks as smooth_masks,
    ssim_map as ssim_map,
)
from ._network import (
    GRAD_CAM_TARGETS as GRAD_CAM_TARGETS,
    AttentionRelevance as AttentionRelevance,
    GradCAM as GradCAM,
    attention_relevance as attention_relevance,
    attention_relevance_path as attention_relevance_path,
    grad_cam as grad_cam,
)
from ._scores import randomise_weights as randomise_weights, saliency_scores as saliency_scores
