r"""A token-conditional denoiser as a score of a diffusion process.

A conditional denoiser of :mod:`diffsim.scores.conditional` lives in the variance-preserving log-SNR
channel ``x_lambda = a x + b eps`` (``a^2 = sigmoid(lambda)``); at time ``t`` of a process its input is
``x_lambda = (a / alpha_t) x_t`` and its noise prediction is ``E[eps | x_t]``. :class:`TokenConditionedScore`
wraps it (with optional classifier-free guidance between two token masks) so that every sampler of
:mod:`diffsim.sampling` can run it.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Int

from ..processes import AbstractProcess
from ._base import AbstractScore
from .conditional import AbstractConditionalDenoiser, channel_coefficients


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
        eps_hat_w       = eps_hat(. | y_U) + w (eps_hat(. | y_S) - eps_hat(. | y_U))
                          (guidance, U = unconditional_mask)
        score(t, x_t)   = -eps_hat / sigma_t,   x0_hat = (x_t - sigma_t eps_hat) / alpha_t.

    ``guidance=None`` evaluates the condition only (``w = 1``); ``unconditional_mask`` defaults to no slot.
    """

    model: AbstractConditionalDenoiser
    process: AbstractProcess
    tokens: Int[Array, " n"]
    mask: Bool[Array, " n"]
    unconditional_mask: Bool[Array, " n"]
    strength: Array | None

    def __init__(
        self,
        model: AbstractConditionalDenoiser,
        process: AbstractProcess,
        tokens: Int[ArrayLike, " n"] | None = None,
        mask: Bool[ArrayLike, " n"] | None = None,
        *,
        guidance: float | None = None,
        unconditional_mask: Bool[ArrayLike, " n"] | None = None,
    ):
        self.model = _check_model(model)
        self.process = _check_process(process)
        n = model.n_tokens
        tok = np.zeros(n, np.int32) if tokens is None else np.asarray(model.check_tokens(tokens))
        msk = np.zeros(n, bool) if mask is None else np.asarray(model.check_mask(mask))
        umsk = (
            np.zeros(n, bool)
            if unconditional_mask is None
            else np.asarray(model.check_mask(unconditional_mask, "unconditional_mask"))
        )
        if tok.shape != (n,) or msk.shape != (n,) or umsk.shape != (n,):
            raise ValueError(f"`tokens` and masks must be single vectors of {n} slot(s).")
        model.check_condition(tok, msk)
        if guidance is not None:
            model.check_condition(tok, umsk)
            g = float(guidance)
            if not math.isfinite(g):
                raise ValueError(f"`guidance` must be finite, got {guidance}.")
        self.tokens = jnp.asarray(tok, jnp.int32)
        self.mask = jnp.asarray(msk)
        self.unconditional_mask = jnp.asarray(umsk)
        self.strength = None if guidance is None else jnp.asarray(float(guidance))

    @property
    def dim(self) -> int:
        return self.model.dim

    def eps(self, t, x):
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        xl = x * (a / self.process.alpha(t)).astype(x.dtype)
        lam = lam.astype(x.dtype)
        e = self.model.eps(lam, xl, self.tokens, self.mask)
        if self.strength is not None:
            eu = self.model.eps(lam, xl, self.tokens, self.unconditional_mask)
            e = eu + self.strength.astype(x.dtype) * (e - eu)
        return e

    def score(self, t, x):
        return -self.eps(t, x) / self.process.sigma(t).astype(x.dtype)

    def denoise(self, t, x):
        return (x - self.process.sigma(t).astype(x.dtype) * self.eps(t, x)) / self.process.alpha(t).astype(
            x.dtype
        )
