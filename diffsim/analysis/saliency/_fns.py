r"""Functions of ``x_t`` whose saliency is mapped: ``x0_hat`` or ``eps_hat`` of a (token-conditioned)
score at a fixed time, a token's effect ``g_k = eps_hat(.|y) - eps_hat(.|y \ k)``, and its energy along a
path."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._validation import as_float_array
from ...processes import AbstractProcess
from ...scores._base import AbstractScore
from ...scores.conditional import AbstractConditionalDenoiser, channel_coefficients
from ...scores.token_conditioned import TokenConditionedScore
from .._concept_checks import _check_model, _check_process, _check_time


class ConditionalFn(eqx.Module):
    """``x_t -> x0_hat(t, x_t)`` or ``eps_hat(t, x_t)`` of a score at a fixed time (a pytree: changing the
    time or the tokens does not recompile the saliency methods). Build it with :func:`conditional_fn`.

    Attributes:
        score: the (possibly token-conditioned or guided) score.
        t: the fixed time, a scalar array.
        output: ``"x0"`` for ``x0_hat``, anything else for ``eps_hat``.
    """

    score: AbstractScore
    t: Array
    output: str = eqx.field(static=True)

    def __call__(self, x):
        t = self.t.astype(x.dtype)
        return self.score.denoise(t, x) if self.output == "x0" else self.score.eps(t, x)


class TokenEffectFn(eqx.Module):
    r"""``x_t -> eps_hat(t, x_t | y_S) - eps_hat(t, x_t | y_{S \ k})`` (see :func:`token_effect_fn`).

    Attributes:
        full: the score conditioned on ``y_S``.
        less: the score conditioned on ``y_{S \ k}``.
        t: the fixed time, a scalar array.
    """

    full: TokenConditionedScore
    less: TokenConditionedScore
    t: Array

    def __call__(self, x):
        t = self.t.astype(x.dtype)
        return self.full.eps(t, x) - self.less.eps(t, x)


class ConditionalTokensFn(eqx.Module):
    """``(x_t, tokens) -> x0_hat(t, x_t | y_S)`` (or ``eps_hat``) with the tokens as an argument, for games
    over samples with different tokens (``insertion_deletion(..., context=tokens)``). Build it with
    :func:`conditional_tokens_fn`.

    Attributes:
        model: the conditional denoiser.
        process: the process of ``x_t`` (maps ``t`` to log-SNR and rescales ``x_t``).
        t: the fixed time, a scalar array.
        mask: ``(n,)`` the conditioned slots ``S``.
        output: ``"eps"`` for ``eps_hat``, anything else for ``x0_hat``.
    """

    model: AbstractConditionalDenoiser
    process: AbstractProcess
    t: Array
    mask: Array
    output: str = eqx.field(static=True)

    def __call__(self, x, tokens):
        t = self.t.astype(x.dtype)
        lam = self.process.log_snr(t)
        a, _ = channel_coefficients(lam)
        alpha, sigma = self.process.alpha(t).astype(x.dtype), self.process.sigma(t).astype(x.dtype)
        e = self.model.eps(lam.astype(x.dtype), x * (a / alpha).astype(x.dtype), tokens, self.mask)
        return e if self.output == "eps" else (x - sigma * e) / alpha


def conditional_tokens_fn(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    t: float,
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    output: str = "x0",
) -> ConditionalTokensFn:
    """:class:`ConditionalTokensFn` at time ``t`` (validated) conditioning on the slots in ``mask``
    (default: every slot).

    Args:
        model: the conditional denoiser.
        process: the process of ``x_t``.
        t: the fixed time, in ``(0, t_max]`` of ``process``.
        mask: ``(n,)`` the conditioned slots; ``None`` (default) for every slot.
        output: ``"x0"`` (default) or ``"eps"``.
    """
    model = _check_model(model)
    process = _check_process(process)
    if output not in ("x0", "eps"):
        raise ValueError(f"`output` must be 'x0' or 'eps', got {output!r}.")
    msk = jnp.ones(model.n_tokens, bool) if mask is None else model.check_mask(mask)
    if msk.shape != (model.n_tokens,):
        raise ValueError(f"`mask` must be one vector of {model.n_tokens} slot(s), got shape {msk.shape}.")
    tt = _check_time(process, t)
    return ConditionalTokensFn(model, process, jnp.asarray(tt, jnp.result_type(float)), msk, output)


def conditional_fn(
    model: AbstractConditionalDenoiser | AbstractScore,
    process: AbstractProcess | None,
    t: float,
    tokens: Int[ArrayLike, " n"] | None = None,
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    output: str = "x0",
    scale: float | None = None,
    unconditional_mask: Bool[ArrayLike, " n"] | None = None,
) -> ConditionalFn:
    """``x_t -> x0_hat(t, x_t | y_S)`` (``output="x0"``) or ``eps_hat`` (``"eps"``) at a fixed time ``t``
    (validated against the process: a time outside ``(0, t_max]`` raises), optionally guided with scale
    ``w = scale`` from ``unconditional_mask`` (:meth:`TokenConditionedScore.guided`). ``model`` may also be
    a plain :class:`AbstractScore` (its own process; tokens and guidance ignored).

    Args:
        model: a conditional denoiser, or any :class:`AbstractScore`.
        process: the process of ``x_t`` (ignored, may be ``None``, for a plain score).
        t: the fixed time, in ``(0, t_max]``.
        tokens: ``(n,)`` token values (default zeros).
        mask: ``(n,)`` the conditioned slots ``S`` (default none: unconditional).
        output: ``"x0"`` (default) or ``"eps"``.
        scale: classifier-free guidance scale ``w`` (0 unconditional, 1 unguided); ``None`` (default) for
            no guidance.
        unconditional_mask: ``(n,)`` the slots of the unconditional branch of the guidance (default none).
    """
    if output not in ("x0", "eps"):
        raise ValueError(f"`output` must be 'x0' or 'eps', got {output!r}.")
    if isinstance(model, AbstractScore):
        score = model
    else:
        score = TokenConditionedScore(model, process, tokens, mask)
        if scale is not None:
            score = score.guided(scale, unconditional_mask)
    tt = _check_time(score.process, t)
    return ConditionalFn(score, jnp.asarray(tt, jnp.result_type(float)), output)


def token_effect_fn(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    t: float,
    tokens: Int[ArrayLike, " n"],
    slot: int,
    *,
    given: Sequence[int] | None = None,
) -> TokenEffectFn:
    r"""Token ``slot``'s effect on the noise prediction at time ``t``:
    ``g_k(x_t) = eps_hat(x_t | y_S) - eps_hat(x_t | y_{S \ k})`` with ``S = given + {slot}`` (``given``
    defaults to every other slot); ``|g_k|^2 / 2`` is the pointwise integrand of
    :func:`diffsim.analysis.concepts.token_information_rate`.

    Args:
        model: the conditional denoiser.
        process: the process of ``x_t``.
        t: the fixed time, in ``(0, t_max]``.
        tokens: ``(n,)`` the token values.
        slot: the token slot ``k``.
        given: the other conditioned slots (without ``slot``); ``None`` (default) for all others.
    """
    model = _check_model(model)
    n = model.n_tokens
    if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= int(slot) < n:
        raise ValueError(f"`slot` must be a token slot in 0..{n - 1}, got {slot!r}.")
    given_t = tuple(j for j in range(n) if j != slot) if given is None else tuple(int(g) for g in given)
    if int(slot) in given_t or any(not 0 <= g < n for g in given_t):
        raise ValueError(f"`given` {given_t} must be token slots other than `slot` {slot}.")
    full = np.zeros(n, bool)
    full[list(given_t) + [int(slot)]] = True
    less = full.copy()
    less[int(slot)] = False
    s_full = TokenConditionedScore(model, process, tokens, full)
    s_less = TokenConditionedScore(model, process, tokens, less)
    tt = _check_time(s_full.process, t)
    return TokenEffectFn(s_full, s_less, jnp.asarray(tt, jnp.result_type(float)))


def token_effect_energy(
    model: AbstractConditionalDenoiser,
    process: AbstractProcess,
    ts: Float[ArrayLike, " S"],
    xs: Float[ArrayLike, "S d"],
    tokens: Int[ArrayLike, " n"],
    slot: int,
    *,
    given: Sequence[int] | None = None,
) -> Float[Array, " S"]:
    r"""The pathwise information rate ``1/2 |eps_hat(x_s | y_S) - eps_hat(x_s | y_{S \ k})|^2`` at every step
    ``(t_s, x_s)`` of a path (the integrand of :func:`token_information_rate` at the path's own states
    instead of an average over fresh noise), vectorised: ``(S,)``.

    Args:
        model: the conditional denoiser.
        process: the process of the path.
        ts: ``(S,)`` the path's times (in ``(0, t_max]``).
        xs: ``(S, d)`` the path's states, one per time.
        tokens: ``(n,)`` the token values.
        slot: the token slot ``k``.
        given: the other conditioned slots (without ``slot``); ``None`` (default) for all others.
    """
    tv = as_float_array(ts, "ts", ndim=1)
    process.check_time(tv, "ts", allow_zero=False)
    xv = as_float_array(xs, "xs", ndim=2)
    if xv.shape[0] != tv.shape[0]:
        raise ValueError(f"`xs` must hold one state per time: {tv.shape[0]} rows, got {xv.shape}.")
    fn = token_effect_fn(model, process, float(tv[0]), tokens, slot, given=given)
    if xv.shape[1] != fn.full.dim:
        raise ValueError(f"`xs` must have {fn.full.dim} columns (the model's dimension), got {xv.shape[1]}.")
    return _effect_path_jit(fn, tv, xv)


@eqx.filter_jit
def _effect_path_jit(fn, ts, xs):
    def one(t, x):
        g = eqx.tree_at(lambda f: f.t, fn, t.astype(fn.t.dtype))(x)
        return 0.5 * jnp.sum(g**2)

    return jax.vmap(one)(ts, xs)
