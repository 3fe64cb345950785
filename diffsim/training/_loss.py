r"""Denoising score matching: the per-sample loss in five weightings, its irreducible minimum, and the
training times.

**Loss.** For data ``x_0``, noise ``eps ~ N(0, I)``, ``x_t = alpha_t x_0 + sigma_t eps`` and a model
score ``s_theta``, the per-sample loss is a weighted score error (Vincent 2011; Song et al. 2021, eq. 7),
averaged over the ``d`` coordinates:

    l(t, x_0, eps) = lambda(t) / d * | s_theta(t, x_t) - (-eps / sigma_t) |^2.

Because every parametrisation is affine in the score, each weighting is the plain MSE of one prediction
(the conversions of :mod:`diffsim.scores._conversions`):

    ===============  ======================================  =============================================
    ``weighting``    loss                                    ``lambda(t)``
    ===============  ======================================  =============================================
    ``"eps"``        |eps_hat - eps|^2 / d  (Ho et al. 2020)  sigma_t^2
    ``"score"``      |s_hat + eps/sigma_t|^2 / d              1
    ``"x0"``         |x0_hat - x_0|^2 / d                     sigma_t^4 / alpha_t^2
    ``"v"``          |v_hat - v|^2 / d  (Salimans & Ho 2022)  sigma_t^2 (alpha_t^2 + sigma_t^2)^2 / alpha_t^2
    ``"likelihood"`` g(t)^2 |s_hat + eps/sigma_t|^2 / d       g(t)^2  (Song et al. 2021b: likelihood)
    ===============  ======================================  =============================================

with ``v = alpha_t eps - sigma_t x_0``. The minimiser over all functions is the true score whatever the
weighting, and the loss of the true score ``s*`` is the *irreducible minimum*

    L_min(t) = lambda(t) / d * ( E|eps|^2 / sigma_t^2 - E|s*(t, x_t)|^2 ) = lambda(t) (1/sigma_t^2 - J_t / d),

``J_t = E|grad log p_t|^2`` the Fisher information of ``p_t`` (by Tweedie, ``E[eps | x_t] = -sigma_t s*``
is orthogonal to ``eps - E[eps | x_t]``).

**Times.** ``time_sampling="uniform"`` draws ``t`` uniformly on ``[t_min, t_max]``; ``"logsnr"`` draws the
log-SNR uniformly and maps it back with the process's closed-form inverse. Draws are stratified over the
batch (``u_i = (u + i) / B``, Kingma et al. 2021) to reduce variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Int

from .._validation import as_float_array, check_key, check_positive_int
from ..processes import AbstractProcess
from ..scores._base import AbstractScore
from ..scores._conversions import PARAMETRISATIONS, convert_parametrisation
from ..scores.nn import AbstractTokenScore, check_tokens


__all__ = [
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "dsm_loss",
    "dsm_loss_terms",
    "irreducible_loss",
    "loss_weight",
    "sample_times",
]

WEIGHTINGS = ("eps", "score", "x0", "v", "likelihood")
TIME_SAMPLINGS = ("uniform", "logsnr")


def loss_weight(process: AbstractProcess, t: ArrayLike, weighting: str) -> Array:
    """``lambda(t)``: the weight of the per-coordinate squared score error in each weighting (see above).

    Args:
        process: the diffusion process (``alpha``, ``sigma`` and ``beta = g^2``).
        t: time(s), any shape.
        weighting: one of ``"eps"``, ``"score"``, ``"x0"``, ``"v"``, ``"likelihood"`` (table above).

    Returns:
        ``lambda(t)``, shaped like ``t``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {weighting!r}.")
    a, s2 = process.alpha(t), process.sigma2(t)
    return {
        "eps": s2,
        "score": jnp.ones_like(s2),
        "x0": s2**2 / a**2,
        "v": s2 * (a**2 + s2) ** 2 / a**2,
        "likelihood": process.beta(t),
    }[weighting]


def _prediction(model: AbstractScore, t, x, tokens, kind):
    if isinstance(model, AbstractTokenScore):
        return model.predict(t, x, tokens, kind)
    return convert_parametrisation(model.process, t, x, model.score(t, x), "score", kind)


def _point_loss(model, t, x0, eps, tokens, weighting):
    p = model.process
    a, s = p.alpha(t), p.sigma(t)
    xt = a * x0 + s * eps
    kind = weighting if weighting in PARAMETRISATIONS else "score"
    pred = _prediction(model, t, xt, tokens, kind)
    target = {"eps": eps, "x0": x0, "score": -eps / s, "v": a * eps - s * x0}[kind]
    err = jnp.mean((pred - target) ** 2)
    if weighting == "likelihood":
        err = err * p.beta(t)
    return err


def dsm_loss_terms(
    model: AbstractScore,
    t: Float[Array, " N"],
    x0: Float[Array, "N d"],
    eps: Float[Array, "N d"],
    tokens: Int[Array, "N n"] | None = None,
    *,
    weighting: str = "eps",
) -> Float[Array, " N"]:
    """Per-sample DSM losses ``l(t_i, x0_i, eps_i)`` (module docstring) for any score ``model``.

    ``tokens`` (token-conditional networks only) may contain null ids; ``None`` means unconditional.

    Args:
        model: the score model being trained (any :class:`~diffsim.scores.AbstractScore`; a token network
            predicts in the weighting's parametrisation directly).
        t: one time per sample, shape ``(N,)``.
        x0: clean data, shape ``(N, d)``.
        eps: the standard normal noise, shape ``(N, d)``; ``x_t = alpha_t x0 + sigma_t eps``.
        tokens: conditioning tokens, shape ``(N, n)`` (token networks only); ``None`` (default):
            unconditional.
        weighting: the DSM weighting, one of ``"eps"`` (default), ``"score"``, ``"x0"``, ``"v"``,
            ``"likelihood"`` (table above).

    Returns:
        The per-sample losses, shape ``(N,)``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {WEIGHTINGS}, got {weighting!r}.")
    if tokens is None:
        tok = None
        return jax.vmap(lambda ti, xi, ei: _point_loss(model, ti, xi, ei, tok, weighting))(t, x0, eps)
    return jax.vmap(lambda ti, xi, ei, ki: _point_loss(model, ti, xi, ei, ki, weighting))(t, x0, eps, tokens)


def sample_times(
    key: jax.Array,
    n: int,
    process: AbstractProcess,
    *,
    scheme: str = "uniform",
    t_min: float | None = None,
    t_max: float | None = None,
    stratified: bool = True,
    dtype=None,
) -> Float[Array, " n"]:
    """``n`` training times on ``[t_min, t_max]`` (default the process's), uniform in ``t`` or in log-SNR,
    optionally stratified (``u_i = (u + i) / n``, a random permutation of strata).

    Args:
        key: PRNG key.
        n: number of times.
        process: the diffusion process (its time range and log-SNR inverse).
        scheme: ``"uniform"`` (default, uniform in ``t``) or ``"logsnr"`` (uniform in log-SNR).
        t_min: lower end; ``None`` (default): ``process.t_min``.
        t_max: upper end; ``None`` (default): ``process.t_max``.
        stratified: one draw per stratum ``[i/n, (i+1)/n)`` in random order (default ``True``); ``False``
            draws ``n`` independent uniforms.
        dtype (jnp.dtype | None): the times' dtype; ``None`` (default): JAX's default float.

    Returns:
        The times, shape ``(n,)``.
    """
    if scheme not in TIME_SAMPLINGS:
        raise ValueError(f"`scheme` must be one of {TIME_SAMPLINGS}, got {scheme!r}.")
    lo = process.t_min if t_min is None else t_min
    hi = process.t_max if t_max is None else t_max
    dtype = dtype or jnp.result_type(float)
    k1, k2 = jr.split(key)
    if stratified:
        u = (jr.uniform(k1, (), dtype) + jnp.arange(n, dtype=dtype)) / n
        u = jr.permutation(k2, u)
    else:
        u = jr.uniform(k1, (n,), dtype)
    if scheme == "uniform":
        return lo + (hi - lo) * u
    lam_hi, lam_lo = process.log_snr(jnp.asarray(lo, dtype)), process.log_snr(jnp.asarray(hi, dtype))
    t = process.t_from_log_snr(lam_lo + (lam_hi - lam_lo) * u)
    return jnp.clip(t, lo, hi)


def dsm_loss(
    model: AbstractScore,
    x0: Float[ArrayLike, "N d"],
    key: jax.Array,
    *,
    weighting: str = "eps",
    tokens: Int[ArrayLike, "N n"] | None = None,
    t: ArrayLike | None = None,
    time_sampling: str = "uniform",
    n_noise: int = 1,
) -> Float[Array, ""]:
    """Monte-Carlo DSM loss of ``model`` on data ``x0``: the mean of :func:`dsm_loss_terms` over the data,
    ``n_noise`` noise draws per point, and times ``t`` (a scalar or one per point) or, when ``t`` is None,
    times drawn with ``time_sampling``.

    Args:
        model: the score model (its ``dim`` must match ``x0``).
        x0: clean data, shape ``(N, d)``.
        key: PRNG key for the times and the noise.
        weighting: the DSM weighting, one of ``"eps"`` (default), ``"score"``, ``"x0"``, ``"v"``,
            ``"likelihood"`` (table above).
        tokens: conditioning tokens, shape ``(N, n)``, accepted by token-conditional networks only;
            ``None`` (default): unconditional.
        t: a scalar time or one per data point ``(N,)``; ``None`` (default) draws stratified times.
        time_sampling: ``"uniform"`` (default) or ``"logsnr"``, used when ``t`` is ``None``.
        n_noise: noise draws per data point (default 1).

    Returns:
        The mean loss, a scalar.
    """
    key = check_key(key)
    x = as_float_array(x0, "x0", ndim=2)
    if x.shape[1] != model.dim:
        raise ValueError(f"`x0` must have shape (N, {model.dim}) to match the model, got {x.shape}.")
    n_noise = check_positive_int(n_noise, "n_noise")
    x = jnp.tile(x, (n_noise, 1))
    tok = None
    if tokens is not None:
        tok = check_tokens(tokens, model.alphabet_sizes) if isinstance(model, AbstractTokenScore) else None
        if tok is None:
            raise TypeError("`tokens` are only accepted by token-conditional networks.")
        tok = jnp.tile(tok, (n_noise, 1))
    kt, ke = jr.split(key)
    if t is None:
        ts = sample_times(kt, x.shape[0], model.process, scheme=time_sampling, dtype=x.dtype)
    else:
        model.process.check_time(t, allow_zero=False)
        t_arr = jnp.asarray(t, x.dtype)
        if t_arr.ndim == 0:
            ts = jnp.full((x.shape[0],), t_arr)
        elif t_arr.shape == (x.shape[0] // n_noise,):
            ts = jnp.tile(t_arr, n_noise)
        else:
            raise ValueError(
                f"`t` must be a scalar or have one time per data point ({x.shape[0] // n_noise},), "
                f"got shape {t_arr.shape}."
            )
    eps = jr.normal(ke, x.shape, x.dtype)
    return jnp.mean(dsm_loss_terms(model, ts, x, eps, tok, weighting=weighting))


def irreducible_loss(
    score: AbstractScore, t: ArrayLike, xt: Float[ArrayLike, "N d"], *, weighting: str = "eps"
) -> Float[Array, ""]:
    r"""Irreducible DSM minimum at time ``t`` from samples ``xt ~ p_t``:
    ``lambda(t) (1/sigma_t^2 - mean_i |s(t, xt_i)|^2 / d)`` (module docstring), with ``s`` the exact score.

    Args:
        score: the exact score of ``p_t`` (e.g. a :class:`~diffsim.scores.GaussianMixture`).
        t: the time (scalar).
        xt: samples of ``p_t``, shape ``(N, d)``.
        weighting: the DSM weighting, one of ``"eps"`` (default), ``"score"``, ``"x0"``, ``"v"``,
            ``"likelihood"`` (table above).

    Returns:
        The Monte-Carlo estimate of ``L_min(t)``, a scalar.
    """
    x = as_float_array(xt, "xt", ndim=2)
    s = jax.vmap(lambda xi: score.score(t, xi))(x)
    fisher = jnp.mean(jnp.sum(s**2, axis=-1)) / score.dim
    return loss_weight(score.process, t, weighting) * (1.0 / score.process.sigma2(t) - fisher)
