r"""A token-conditional denoiser as a score of a diffusion process.

A conditional denoiser of :mod:`diffsim.scores.conditional` lives in the variance-preserving log-SNR
channel ``x_lambda = a x + b eps`` (``a^2 = sigmoid(lambda)``); at time ``t`` of a process its input is
``x_lambda = (a / alpha_t) x_t`` and its noise prediction is ``E[eps | x_t]``. :class:`TokenConditionedScore`
wraps it so that every sampler of :mod:`diffsim.sampling` can run it; :meth:`TokenConditionedScore.guided`
is classifier-free guidance between two token masks.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Int

from ..processes import AbstractProcess
from ._base import AbstractScore
from ._conversions import v_from_score
from .conditional import AbstractConditionalDenoiser, channel_coefficients
from .guidance import ClassifierFreeGuidance


__all__ = ["TokenConditionedScore"]


def _check_process(process) -> AbstractProcess:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process


def _check_model(model) -> AbstractConditionalDenoiser:
    if not isinstance(model, AbstractConditionalDenoiser):
        raise TypeError(
            "`model` must be a conditional denoiser (ConditionalMixture, TokenNetworkDenoiser, ...), "
            f"got {type(model).__name__}."
        )
    return model


class TokenConditionedScore(AbstractScore):
    r"""A conditional denoiser of :mod:`diffsim.scores.conditional` as a score of ``process``, for the
    samplers:

        eps_hat(t, x_t) = eps(lambda_t, (a_t / alpha_t) x_t | y_S)                (S = mask)
        score(t, x_t)   = -eps_hat / sigma_t,   x0_hat = (x_t - sigma_t eps_hat) / alpha_t.

    :meth:`guided` gives classifier-free guidance between two masks, a
    :class:`~diffsim.scores.ClassifierFreeGuidance` that combines in noise space,
    ``eps_hat_w = eps_hat(. | y_U) + w (eps_hat(. | y_S) - eps_hat(. | y_U))``, and converts as above.

    Args:
        model: the conditional denoiser (:class:`~diffsim.scores.conditional.ConditionalMixture`, a token
            network, ...).
        process: the diffsim process whose time ``t`` is mapped to the log-SNR ``lambda_t``.
        tokens: the token tuple ``(n,)``; ``None`` is all zeros (only the masked slots matter).
        mask: which slots condition ``(n,)`` bool (the subset ``S``); ``None`` is no slot: the
            unconditional score.
    """

    model: AbstractConditionalDenoiser
    process: AbstractProcess
    tokens: Int[Array, " n"]
    mask: Bool[Array, " n"]

    def __init__(
        self,
        model: AbstractConditionalDenoiser,
        process: AbstractProcess,
        tokens: Int[ArrayLike, " n"] | None = None,
        mask: Bool[ArrayLike, " n"] | None = None,
    ):
        self.model = _check_model(model)
        self.process = _check_process(process)
        n = model.n_tokens
        tok = np.zeros(n, np.int32) if tokens is None else np.asarray(model.check_tokens(tokens))
        msk = np.zeros(n, bool) if mask is None else np.asarray(model.check_mask(mask))
        if tok.shape != (n,) or msk.shape != (n,):
            raise ValueError(f"`tokens` and masks must be single vectors of {n} slot(s).")
        model.check_condition(tok, msk)
        self.tokens = jnp.asarray(tok, jnp.int32)
        self.mask = jnp.asarray(msk)

    @property
    def dim(self) -> int:
        return self.model.dim

    def guided(
        self, scale: ArrayLike, unconditional_mask: Bool[ArrayLike, " n"] | None = None
    ) -> ClassifierFreeGuidance:
        """Classifier-free guidance ``eps_U + w (eps_S - eps_U)`` towards this score's condition (mask
        ``S``) from the same tokens under ``unconditional_mask`` (``U``, default: no slot), ``w = scale``
        (diffsim convention: 0 unconditional, 1 this score, ``>= 0``)."""
        n = self.model.n_tokens
        umsk = (
            np.zeros(n, bool)
            if unconditional_mask is None
            else np.asarray(self.model.check_mask(unconditional_mask, "unconditional_mask"))
        )
        if umsk.shape != (n,):
            raise ValueError(f"`tokens` and masks must be single vectors of {n} slot(s).")
        unconditional = TokenConditionedScore(self.model, self.process, self.tokens, umsk)
        return ClassifierFreeGuidance(unconditional, self, scale)

    def _eps(self, t, x, other=None):
        """``eps_hat`` of this score (and of ``other``, a token-conditioned score on the same process)."""
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        xl = x * (a / self.process.alpha(t)).astype(x.dtype)
        lam = lam.astype(x.dtype)
        e = self.model.eps(lam, xl, self.tokens, self.mask)
        if other is None:
            return e
        return e, other.model.eps(lam, xl, other.tokens, other.mask)

    def _from_eps(self, t, x, e, kind):
        """The prediction ``kind`` from the noise prediction ``e``."""
        if kind == "eps":
            return e
        sigma = self.process.sigma(t).astype(x.dtype)
        if kind == "x0":
            return (x - sigma * e) / self.process.alpha(t).astype(x.dtype)
        score = -e / sigma
        return score if kind == "score" else v_from_score(self.process, t, x, score)

    def eps(self, t, x):
        return self._eps(t, x)

    def score(self, t, x):
        return self._from_eps(t, x, self._eps(t, x), "score")

    def denoise(self, t, x):
        return self._from_eps(t, x, self._eps(t, x), "x0")

    # --- classifier-free guidance pair protocol (see diffsim.scores.guidance._joint) ----------------------
    def _pairs_with(self, unconditional) -> bool:
        """Two token-conditioned scores (one process, checked by the guidance): combined in noise space."""
        return isinstance(unconditional, TokenConditionedScore)

    def _guidance_pair(self, unconditional, scale, t, x, kind):
        """``eps_u + w (eps_c - eps_u)``, converted to the prediction ``kind``."""
        e, eu = self._eps(t, x, unconditional)
        return self._from_eps(t, x, eu + scale.astype(x.dtype) * (e - eu), kind)
