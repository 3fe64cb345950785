r"""Exact conversions between the four parametrisations of a score model.

For ``x_t = alpha_t x_0 + sigma_t eps`` (any process of :mod:`diffsim.processes`) and the score
``s = \nabla_x log p_t(x)``, Tweedie's formula (Efron 2011; Robbins 1956) gives the posterior mean
``x0_hat = (x + sigma_t^2 s) / alpha_t``, the noise prediction ``eps_hat = -sigma_t s`` and the
v-prediction of Salimans & Ho (2022), ``v = alpha_t eps - sigma_t x_0``:

    "eps":   eps_hat = -sigma_t s,
    "x0":    x0_hat  = (x + sigma_t^2 s) / alpha_t,
    "score": s,
    "v":     v_hat   = alpha_t eps_hat - sigma_t x0_hat.

Every function acts on *one* point ``x`` of shape ``(d,)``; batching is ``jax.vmap``'s job. The
arithmetic runs in the common dtype of the coefficients, ``x`` and the prediction (JAX's standard
promotion, written out so that it also holds under strict dtype promotion).
"""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from .._promotion import promote
from ..processes import AbstractProcess


__all__ = [
    "PARAMETRISATIONS",
    "check_parametrisation",
    "convert_parametrisation",
    "eps_from_score",
    "score_from_eps",
    "score_from_v",
    "score_from_x0",
    "v_from_score",
    "x0_from_score",
]

PARAMETRISATIONS = ("eps", "x0", "score", "v")


def score_from_x0(process: AbstractProcess, t: ArrayLike, x: Array, x0: Array) -> Array:
    """``s = (alpha_t x0 - x) / sigma_t^2``.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)``.
        x0: the predicted clean point ``x0_hat``, shape ``(d,)``.
    """
    a, s2, x, x0 = promote(process.alpha(t), process.sigma2(t), x, x0)
    return (a * x0 - x) / s2


def x0_from_score(process: AbstractProcess, t: ArrayLike, x: Array, score: Array) -> Array:
    """Tweedie: ``x0 = (x + sigma_t^2 s) / alpha_t``.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)``.
        score: the score ``s`` at ``(t, x)``, shape ``(d,)``.
    """
    a, s2, x, score = promote(process.alpha(t), process.sigma2(t), x, score)
    return (x + s2 * score) / a


def score_from_eps(process: AbstractProcess, t: ArrayLike, x: Array, eps: Array) -> Array:
    """``s = -eps / sigma_t``.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)`` (unused).
        eps: the predicted noise ``eps_hat``, shape ``(d,)``.
    """
    del x
    s, eps = promote(process.sigma(t), eps)
    return -eps / s


def eps_from_score(process: AbstractProcess, t: ArrayLike, x: Array, score: Array) -> Array:
    """``eps = -sigma_t s``.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)`` (unused).
        score: the score ``s`` at ``(t, x)``, shape ``(d,)``.
    """
    del x
    s, score = promote(process.sigma(t), score)
    return -s * score


def score_from_v(process: AbstractProcess, t: ArrayLike, x: Array, v: Array) -> Array:
    r"""Score from a v-prediction ``v = alpha eps - sigma x0``.

    Inverting ``[x; v] = [[alpha, sigma], [-sigma, alpha]] [x0; eps]`` gives
    ``eps = (sigma x + alpha v) / (alpha^2 + sigma^2)`` (for VP the denominator is 1).

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)``.
        v: the v-prediction at ``(t, x)``, shape ``(d,)``.
    """
    a, s, x, v = promote(process.alpha(t), process.sigma(t), x, v)
    eps = (s * x + a * v) / (a**2 + s**2)
    return -eps / s


def v_from_score(process: AbstractProcess, t: ArrayLike, x: Array, score: Array) -> Array:
    """``v = alpha eps - sigma x0`` with ``eps``, ``x0`` from the score.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)``.
        score: the score ``s`` at ``(t, x)``, shape ``(d,)``.
    """
    a, s, x, score = promote(process.alpha(t), process.sigma(t), x, score)
    eps = -s * score
    x0 = (x + s**2 * score) / a
    return a * eps - s * x0


_TO_SCORE = {"eps": score_from_eps, "x0": score_from_x0, "score": lambda p, t, x, s: s, "v": score_from_v}
_FROM_SCORE = {"eps": eps_from_score, "x0": x0_from_score, "score": lambda p, t, x, s: s, "v": v_from_score}


def check_parametrisation(kind: str, name: str = "parametrisation") -> str:
    """Return ``kind`` if it is one of :data:`PARAMETRISATIONS`, else raise ``ValueError`` naming ``name``."""
    if kind not in PARAMETRISATIONS:
        raise ValueError(f"`{name}` must be one of {PARAMETRISATIONS}, got {kind!r}.")
    return kind


def convert_parametrisation(
    process: AbstractProcess,
    t: ArrayLike,
    x: Float[Array, " d"],
    value: Float[Array, " d"],
    from_kind: str,
    to_kind: str,
) -> Float[Array, " d"]:
    r"""Convert a prediction between ``"eps"``, ``"x0"``, ``"score"`` and ``"v"`` at ``(t, x)``.

    Exact (linear, through the score): ``to(from^{-1}(value))`` with the conversions above; the identity
    when ``from_kind == to_kind``.

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        t: the time.
        x: the noisy point ``x_t``, shape ``(d,)``.
        value: the prediction to convert, shape ``(d,)``.
        from_kind: what ``value`` is: ``"eps"``, ``"x0"``, ``"score"`` or ``"v"`` (anything else raises
            ``ValueError``).
        to_kind: the parametrisation wanted, from the same four.

    Returns:
        The prediction in ``to_kind``, shape ``(d,)``.
    """
    check_parametrisation(from_kind, "from_kind")
    check_parametrisation(to_kind, "to_kind")
    if from_kind == to_kind:
        return value
    s = _TO_SCORE[from_kind](process, t, x, value)
    return _FROM_SCORE[to_kind](process, t, x, s)
