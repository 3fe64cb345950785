r"""Trained score networks: token-conditional MLP and conv UNet, and a Flax adapter.

Modules: ``_token`` (the token-conditional interface), ``_layers`` and ``_embeddings`` (building blocks),
``_mlp`` (:class:`MLPScore`), ``_unet`` (:class:`UNetScore`), ``_flax`` (:class:`FlaxScore`, Flax imported
lazily), ``_checks`` (argument checks). The parametrisation conversions live in
:mod:`diffsim.scores._conversions`.

Every network here is an :class:`~diffsim.scores.AbstractScore`, so :func:`diffsim.simulate` runs it
like any analytic score. A network outputs one of four **parametrisations** of the same quantity,
converted exactly through the process ``x_t = alpha_t x_0 + sigma_t eps`` (Tweedie; Salimans & Ho 2022
for ``v``) with the functions of :mod:`diffsim.scores._conversions`:

    "eps":   eps_hat = -sigma_t s,
    "x0":    x0_hat  = (x + sigma_t^2 s) / alpha_t,
    "score": s,
    "v":     v_hat   = alpha_t eps_hat - sigma_t x0_hat.

**Tokens.** A network may condition on ``n`` discrete tokens (slot ``j`` takes values ``0 .. A_j - 1``,
``A = alphabet_sizes``). Each slot has one extra *null* id ``A_j`` meaning "this token is not given".
Trained with independent per-slot dropout to the null id (classifier-free guidance, Ho & Salimans 2022),
ONE network then provides the score conditioned on every subset of its tokens:

    net.score(t, x, tokens)           # tokens[j] == net.null_tokens[j]  ->  slot j unconditioned
    net.score(t, x)                   # all slots null: the unconditional score
    net.bind(tokens)                  # an AbstractScore of the conditional, for diffsim.simulate
    net.guided(tokens, w)             # ClassifierFreeGuidance  s_u + w (s_c - s_u), one batched call
    net.mask_tokens(tokens, keep)     # null the slots where keep is False (subset conditioning)

The guidance convention is the one of :mod:`diffsim.scores.guidance`: ``w = 0`` is unconditional,
``w = 1`` conditional, ``w > 1`` guided; Ho & Salimans' ``w_HS = w - 1``.

**Time input.** Networks see the noise level through Fourier features of the log-SNR
``lambda_t = log(alpha_t^2 / sigma_t^2)`` (process independent), and their input is rescaled by
``c_in = 1 / sqrt(alpha_t^2 sigma_data^2 + sigma_t^2)`` (Karras et al. 2022, Table 1) so that it has unit
scale at every noise level.

**Interpretability hooks** (for Grad-CAM and attention relevance): :meth:`UNetScore.features` returns the
intermediate feature maps (by name) and the cross-attention weights over the token slots; the keyword
``feature_offsets`` of :meth:`UNetScore.raw` adds arrays to named feature maps, so the gradient of any
output with respect to an activation is ``jax.grad`` with respect to a zero offset (Selvaraju et al. 2017).
"""

from .._conversions import (
    PARAMETRISATIONS as PARAMETRISATIONS,
    convert_parametrisation as convert_parametrisation,
)
from ._checks import check_tokens as check_tokens
from ._embeddings import fourier_time_features as fourier_time_features, input_scale as input_scale
from ._flax import FlaxScore as FlaxScore
from ._layers import Dense as Dense, init_rng as init_rng
from ._mlp import MLPScore as MLPScore
from ._token import (
    AbstractTokenScore as AbstractTokenScore,
    TokenBoundScore as TokenBoundScore,
)
from ._unet import UNetScore as UNetScore


__all__ = [
    "PARAMETRISATIONS",
    "AbstractTokenScore",
    "Dense",
    "FlaxScore",
    "MLPScore",
    "TokenBoundScore",
    "UNetScore",
    "check_tokens",
    "convert_parametrisation",
    "fourier_time_features",
    "init_rng",
    "input_scale",
]
