r"""Forward noising processes.

Every process is a linear SDE with additive noise,

    dx = f(t) x dt + g(t) dW,       x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I),

and everything about it is a closed form. Time ``t`` is forward diffusion time: ``t = 0`` is data,
``t = t_max`` is (approximately) the prior. Reverse samplers integrate from ``t_max`` down to ``t_min``.

Two families are provided.

**Variance preserving** (:class:`VP`; Ho et al. 2020, Song et al. 2021): ``f = -beta(t)/2``,
``g = sqrt(beta(t))``, so with the integrated rate ``B(t) = \int_0^t beta``,

    alpha(t) = exp(-B(t)/2),     sigma(t)^2 = 1 - exp(-B(t)).

Constructors: :meth:`VP.ou` (beta = 2: ``dx = -x dt + sqrt(2) dW``, ``alpha = e^{-t}``, the convention of
Li & Chen 2024 and Biroli et al. 2024), :meth:`VP.linear` (DDPM / score_sde, ``beta(t) = beta_min +
t (beta_max - beta_min)``), :meth:`VP.cosine` (Nichol & Dhariwal 2021), and :meth:`VP.from_betas` /
:meth:`VP.from_alpha_bar` for a discrete DDPM schedule (DPM-Solver's convention: step ``n`` of ``N`` sits at
``t_n = (n+1)/N`` and ``log alpha`` is interpolated linearly in ``t``).

**Variance exploding** (:class:`VE`; Song & Ermon 2019): ``f = 0``, ``g(t)^2 = d sigma(t)^2 / dt`` with

    sigma(t)^2 = sigma_min^2 ((sigma_max / sigma_min)^{2t} - 1).

The diffusion coefficient is exactly score_sde's ``VESDE``. score_sde takes ``sigma(t) = sigma_min
(sigma_max/sigma_min)^t`` as the marginal std, which assumes the data already carry ``sigma_min`` of noise;
here the marginal is exact for noise-free data at ``t = 0``, and the default ``t_min`` is the time at which
``sigma(t_min) = sigma_min``.

Quantities shared by all processes:

- ``beta(t) := g(t)^2`` (for VP the usual beta);
- ``log_snr(t) = log(alpha^2 / sigma^2)``; DPM-Solver's ``lambda`` is half of it;
- ``t_from_log_snr`` inverts ``log_snr`` in closed form;
- ``transition(s, t)`` gives the exact kernel ``x_t | x_s ~ N(a x_s, b^2 I)`` for ``s <= t``.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks
from ._promotion import promote
from ._types import ArrayOrSequence
from ._validation import as_float_array, is_concrete


__all__ = [
    "AbstractProcess",
    "AbstractSchedule",
    "ConstantSchedule",
    "CosineSchedule",
    "DiscreteSchedule",
    "LinearSchedule",
    "VE",
    "VP",
    "alpha_bar_to_time",
    "time_to_alpha_bar",
    "to_betas",
]

_TIME_SLACK = 1e-6


def _check_real(value: float, name: str, *, positive: bool = False) -> float:
    """``value`` as a finite Python float (positive when asked), or a ``ValueError`` naming ``name``."""
    if isinstance(value, (str, bytes)) or value is None or np.iscomplexobj(value):
        raise TypeError(f"`{name}` must be a real number, got {value!r}.")
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a real number, got {value!r}.") from err
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite, got {out}.")
    if positive and not out > 0:
        raise ValueError(f"`{name}` must be positive, got {out}.")
    return out


def _check_interval(t_min: float, t_max: float) -> None:
    _check_real(t_min, "t_min")
    _check_real(t_max, "t_max")
    if not (0.0 < t_min < t_max):
        raise ValueError(f"Need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}.")


def _as_time(t: ArrayLike) -> Array:
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


class AbstractProcess(eqx.Module):
    """A forward noising process ``dx = f(t) x dt + g(t) dW`` with Gaussian transition kernels.

    Subclasses implement :meth:`log_alpha`, :meth:`sigma2`, :meth:`beta`, :meth:`t_from_log_snr`,
    :meth:`transition_var`, :meth:`prior_std`. Everything else derives from these.

    Attributes:
        t_min: the smallest time reverse samplers integrate down to (``t_min > 0``).
        t_max: the time at which reverse samplers start from the prior (``t_min < t_max``).
        name: short class-level name of the process family (``"vp"``, ``"ve"``), used in ``repr``.
    """

    t_min: eqx.AbstractVar[float]
    t_max: eqx.AbstractVar[float]
    name: eqx.AbstractClassVar[str]

    # --- primitives ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def log_alpha(self, t: ArrayLike) -> Array:
        """``log alpha(t)``."""

    @abc.abstractmethod
    def sigma2(self, t: ArrayLike) -> Array:
        """``sigma(t)^2``, computed without cancellation at small ``t``."""

    @abc.abstractmethod
    def beta(self, t: ArrayLike) -> Array:
        """``g(t)^2``, the squared diffusion coefficient (the usual ``beta(t)`` for VP)."""

    @abc.abstractmethod
    def drift_coefficient(self, t: ArrayLike) -> Array:
        """``f(t)`` in ``dx = f(t) x dt + g(t) dW``."""

    @abc.abstractmethod
    def t_from_log_snr(self, log_snr: ArrayLike) -> Array:
        """Inverse of :meth:`log_snr` (closed form)."""

    @abc.abstractmethod
    def transition_var(self, s: ArrayLike, t: ArrayLike) -> Array:
        """Variance ``b^2`` of the kernel ``x_t | x_s ~ N(a x_s, b^2 I)`` for ``s <= t``."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the (isotropic, zero-mean) prior used to start reverse samplers."""

    # --- derived ------------------------------------------------------------------------------------
    def alpha(self, t: ArrayLike) -> Array:
        """Signal coefficient ``alpha(t)`` of the marginal ``x_t = alpha(t) x_0 + sigma(t) z``."""
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t: ArrayLike) -> Array:
        """Noise standard deviation ``sigma(t)``."""
        return jnp.sqrt(self.sigma2(t))

    def alpha_bar(self, t: ArrayLike) -> Array:
        """``alpha(t)^2``, the DDPM ``alpha-bar``."""
        return jnp.exp(2.0 * self.log_alpha(t))

    def log_snr(self, t: ArrayLike) -> Array:
        """``log(alpha^2 / sigma^2)``; decreasing in ``t``."""
        return 2.0 * self.log_alpha(t) - jnp.log(self.sigma2(t))

    def diffusion(self, t: ArrayLike) -> Array:
        """``g(t)``."""
        return jnp.sqrt(self.beta(t))

    def drift(self, t: ArrayLike, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """Forward drift ``f(t) x``."""
        f, x = promote(self.drift_coefficient(t), x)
        return f * x

    def transition(self, s: ArrayLike, t: ArrayLike) -> tuple[Array, Array]:
        """Exact kernel ``x_t | x_s ~ N(a x_s, b^2 I)`` for ``s <= t``: returns ``(a, b)``."""
        return jnp.exp(self.log_alpha(t) - self.log_alpha(s)), jnp.sqrt(self.transition_var(s, t))

    def marginal(self, x0: Float[Array, "*batch d"], t: ArrayLike) -> tuple[Array, Array]:
        """Mean and std of ``x_t | x_0``: ``(alpha(t) x0, sigma(t))``."""
        a, x0 = promote(self.alpha(t), x0)
        return a * x0, self.sigma(t)

    def sample_marginal(self, key: jax.Array, x0: Float[Array, "*batch d"], t: ArrayLike) -> Array:
        """Draw ``x_t = alpha(t) x0 + sigma(t) z`` exactly."""
        mean, std = self.marginal(x0, t)
        return mean + std * jr.normal(key, jnp.shape(x0), dtype=mean.dtype)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> Array:
        """Sample the prior ``N(0, prior_std^2 I)``."""
        return self.prior_std * jr.normal(key, shape)

    def prior_log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """Log-density of the prior, summed over the last axis."""
        d = x.shape[-1]
        s2 = self.prior_std**2
        return -0.5 * jnp.sum(x**2, axis=-1) / s2 - 0.5 * d * jnp.log(2 * jnp.pi * s2)

    # --- validation ---------------------------------------------------------------------------------
    def check_time(self, t: ArrayLike, name: str = "t", *, allow_zero: bool = True) -> ArrayLike:
        """Validate times and return ``t`` unchanged.

        A concrete time outside ``[0, t_max]`` (``(0, t_max]`` when ``allow_zero`` is False), NaN or
        infinite raises ``ValueError`` naming ``name``. Tracers pass unchecked, except in checked mode
        (:mod:`diffsim._checks`), where the same conditions are compiled in with ``equinox.error_if``; use
        the returned value so the guard stays in the computation."""
        if not is_concrete(t):
            return _checks.check_times(t, self, name, allow_zero=allow_zero)
        if isinstance(t, (str, bytes)) or t is None:
            raise TypeError(f"`{name}` must be a time (a number), got {type(t).__name__}.")
        if np.iscomplexobj(t):
            raise TypeError(f"`{name}` must be real, got a complex time.")
        arr = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains non-finite times.")
        lo = 0.0
        bad_low = arr < lo - _TIME_SLACK if allow_zero else arr <= lo
        bad_high = arr > self.t_max * (1 + _TIME_SLACK) + _TIME_SLACK
        if np.any(bad_low) or np.any(bad_high):
            interval = f"[0, {self.t_max:g}]" if allow_zero else f"(0, {self.t_max:g}]"
            raise ValueError(
                f"`{name}` must lie in {interval} for {self!r}; got values in [{arr.min():g}, {arr.max():g}]."
            )
        return t

    def __repr__(self) -> str:  # short and informative; equinox's default prints every field
        return f"{type(self).__name__}.{self.name}(t_min={self.t_min:g}, t_max={self.t_max:g})"


# =====================================================================================================
# VP schedules
# =====================================================================================================
class AbstractSchedule(eqx.Module):
    """A noise-rate schedule ``beta(t) > 0`` with integral ``B(t) = \\int_0^t beta`` and its inverse.

    Attributes:
        name: short class-level name of the schedule (``"constant"``, ``"linear"``, ``"cosine"``,
            ``"discrete"``), used in ``repr``.
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def rate(self, t: ArrayLike) -> Array:
        """``beta(t)``."""

    @abc.abstractmethod
    def integral(self, t: ArrayLike) -> Array:
        """``B(t) = \\int_0^t beta(u) du``."""

    @abc.abstractmethod
    def inverse_integral(self, b: ArrayLike) -> Array:
        """The ``t`` with ``B(t) = b``."""


class ConstantSchedule(AbstractSchedule):
    """``beta(t) = beta``. With ``beta = 2`` this is the OU process ``dx = -x dt + sqrt(2) dW``.

    Attributes:
        beta: the constant rate (``> 0``); :meth:`VP.ou` uses 2.
    """

    beta: float
    name: ClassVar[str] = "constant"

    def rate(self, t):
        return jnp.full_like(_as_time(t), self.beta)

    def integral(self, t):
        return self.beta * _as_time(t)

    def inverse_integral(self, b):
        return jnp.asarray(b) / self.beta


class LinearSchedule(AbstractSchedule):
    """``beta(t) = beta_min + t (beta_max - beta_min)`` on ``t in [0, 1]`` (DDPM; score_sde ``VPSDE``).

    Attributes:
        beta_min: the rate at ``t = 0`` (:meth:`VP.linear` defaults to 0.1).
        beta_max: the rate at ``t = 1`` (:meth:`VP.linear` defaults to 20).
    """

    beta_min: float
    beta_max: float
    name: ClassVar[str] = "linear"

    def rate(self, t):
        return self.beta_min + _as_time(t) * (self.beta_max - self.beta_min)

    def integral(self, t):
        t = _as_time(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def inverse_integral(self, b):
        # Root of  0.5 D t^2 + beta_min t - b = 0, in the cancellation-free form 2b / (beta_min + sqrt(..)).
        b = jnp.asarray(b)
        delta = self.beta_max - self.beta_min
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * delta * b))


class CosineSchedule(AbstractSchedule):
    r"""Nichol & Dhariwal (2021): ``alpha_bar(t) = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s))``.

    ``B(t) = -log alpha_bar(t)`` and ``beta(t) = pi/(1+s) tan(pi/2 (t+s)/(1+s))``, which diverges at
    ``t = 1``; DPM-Solver therefore stops at ``t_max = 0.9946``.

    Attributes:
        s: the small offset ``s > 0`` of the cosine (:meth:`VP.cosine` defaults to 0.008).
    """

    s: float
    name: ClassVar[str] = "cosine"

    def _theta(self, t):
        return 0.5 * jnp.pi * (_as_time(t) + self.s) / (1.0 + self.s)

    def rate(self, t):
        return jnp.pi / (1.0 + self.s) * jnp.tan(self._theta(t))

    def integral(self, t):
        theta0 = 0.5 * math.pi * self.s / (1.0 + self.s)
        return -2.0 * (jnp.log(jnp.cos(self._theta(t))) - math.log(math.cos(theta0)))

    def inverse_integral(self, b):
        theta0 = 0.5 * math.pi * self.s / (1.0 + self.s)
        theta = jnp.arccos(jnp.exp(-0.5 * jnp.asarray(b)) * math.cos(theta0))
        return theta * 2.0 * (1.0 + self.s) / math.pi - self.s


class DiscreteSchedule(AbstractSchedule):
    r"""A discrete DDPM schedule ``alpha_bar_0 > ... > alpha_bar_{N-1}`` made continuous.

    Following DPM-Solver (Lu et al. 2022), step ``n`` sits at ``t_n = (n + 1)/N`` and ``B(t) = -log
    alpha_bar`` is interpolated linearly in ``t``, anchored at ``B(0) = 0``; hence ``beta(t)`` is piecewise
    constant and ``B`` is inverted exactly by linear interpolation.

    Attributes:
        knots_t: increasing knot times ``(N + 1,)``: ``0, 1/N, ..., 1``.
        knots_b: ``B`` at the knots ``(N + 1,)``: ``0, -log alpha_bar_0, ..., -log alpha_bar_{N-1}``.
    """

    knots_t: Float[Array, " N1"]
    knots_b: Float[Array, " N1"]
    name: ClassVar[str] = "discrete"

    def rate(self, t):
        t, knots_t = promote(_as_time(t), self.knots_t)
        slopes = jnp.diff(self.knots_b) / jnp.diff(self.knots_t)
        idx = jnp.clip(jnp.searchsorted(knots_t, t, side="right") - 1, 0, slopes.shape[0] - 1)
        return slopes[idx]

    def integral(self, t):
        return jnp.interp(*promote(_as_time(t), self.knots_t, self.knots_b))

    def inverse_integral(self, b):
        return jnp.interp(*promote(jnp.asarray(b), self.knots_b, self.knots_t))


class VP(AbstractProcess):
    r"""Variance-preserving process ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW``.

    ``alpha(t) = exp(-B(t)/2)`` and ``sigma(t)^2 = 1 - exp(-B(t))`` with ``B = \int_0^t beta``. The prior
    is ``N(0, I)``. Build one with :meth:`ou`, :meth:`linear`, :meth:`cosine`, :meth:`from_betas` or
    :meth:`from_alpha_bar`.

    Attributes:
        schedule: the rate ``beta(t)`` and its integral ``B(t)`` (an :class:`AbstractSchedule`).
        t_min: the smallest time reverse samplers reach (static; ``0 < t_min < t_max``).
        t_max: the time reverse samplers start from ``N(0, I)`` (static).
    """

    schedule: AbstractSchedule
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    name: ClassVar[str] = "vp"

    def __check_init__(self):
        _check_interval(self.t_min, self.t_max)

    # constructors -----------------------------------------------------------------------------------
    @classmethod
    def ou(cls, *, t_min: float = 1e-3, t_max: float = 10.0) -> VP:
        """Ornstein-Uhlenbeck: ``dx = -x dt + sqrt(2) dW``; ``alpha = e^{-t}``, ``sigma^2 = 1 - e^{-2t}``."""
        _check_interval(t_min, t_max)
        return cls(schedule=ConstantSchedule(2.0), t_min=float(t_min), t_max=float(t_max))

    @classmethod
    def linear(
        cls, beta_min: float = 0.1, beta_max: float = 20.0, *, t_min: float = 1e-3, t_max: float = 1.0
    ) -> VP:
        """DDPM / score_sde linear schedule ``beta(t) = beta_min + t (beta_max - beta_min)``, t in [0, 1]."""
        _check_real(beta_min, "beta_min", positive=True)
        _check_real(beta_max, "beta_max", positive=True)
        if not (0 < beta_min <= beta_max):
            raise ValueError(f"Need 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}.")
        _check_interval(t_min, t_max)
        return cls(
            schedule=LinearSchedule(float(beta_min), float(beta_max)), t_min=float(t_min), t_max=float(t_max)
        )

    @classmethod
    def cosine(cls, s: float = 0.008, *, t_min: float = 1e-3, t_max: float = 0.9946) -> VP:
        """Cosine schedule (Nichol & Dhariwal 2021); ``t_max < 1`` because ``beta`` diverges at 1."""
        _check_real(s, "s", positive=True)
        _check_interval(t_min, t_max)
        if not t_max < 1.0:
            raise ValueError(f"The cosine schedule needs t_max < 1, got {t_max}.")
        return cls(schedule=CosineSchedule(float(s)), t_min=float(t_min), t_max=float(t_max))

    @classmethod
    def from_alpha_bar(cls, alpha_bar: ArrayOrSequence, *, t_min: float | None = None) -> VP:
        """Continuous-time VP process through a discrete DDPM ``alpha_bar`` (cumulative product).

        Step ``n`` (0-based) of ``N`` maps to ``t = (n + 1)/N``, so ``process.alpha_bar((n+1)/N)`` returns
        ``alpha_bar[n]`` exactly. ``t_min`` defaults to ``1/N`` (the first DDPM step), ``t_max`` is 1.
        """
        ab = np.asarray(as_float_array(alpha_bar, "alpha_bar", ndim=1), dtype=float)
        if ab.size < 1:
            raise ValueError("`alpha_bar` must not be empty.")
        if np.any(ab <= 0) or np.any(ab >= 1):
            raise ValueError("`alpha_bar` must lie strictly inside (0, 1).")
        if np.any(np.diff(ab) >= 0):
            raise ValueError("`alpha_bar` must be strictly decreasing.")
        n = ab.size
        knots_t = np.concatenate([[0.0], np.arange(1, n + 1) / n])
        knots_b = np.concatenate([[0.0], -np.log(ab)])
        sched = DiscreteSchedule(jnp.asarray(knots_t), jnp.asarray(knots_b))
        return cls(schedule=sched, t_min=float(1.0 / n if t_min is None else t_min), t_max=1.0)

    @classmethod
    def from_betas(cls, betas: ArrayOrSequence, *, t_min: float | None = None) -> VP:
        """Continuous-time VP process through discrete DDPM ``betas`` (``alpha_bar = cumprod(1 - beta)``)."""
        b = np.asarray(as_float_array(betas, "betas", ndim=1), dtype=float)
        if np.any(b <= 0) or np.any(b >= 1):
            raise ValueError("`betas` must lie strictly inside (0, 1).")
        return cls.from_alpha_bar(np.exp(np.cumsum(np.log1p(-b))), t_min=t_min)

    # primitives -------------------------------------------------------------------------------------
    def log_alpha(self, t):
        return -0.5 * self.schedule.integral(t)

    def sigma2(self, t):
        return -jnp.expm1(-self.schedule.integral(t))

    def beta(self, t):
        return self.schedule.rate(t)

    def drift_coefficient(self, t):
        return -0.5 * self.schedule.rate(t)

    def log_snr(self, t):
        b = self.schedule.integral(t)
        return -b - jnp.log(-jnp.expm1(-b))

    def t_from_log_snr(self, log_snr):
        # alpha^2 = sigmoid(lambda)  =>  B = -log sigmoid(lambda) = softplus(-lambda)
        log_snr = jnp.asarray(log_snr)
        if not jnp.issubdtype(log_snr.dtype, jnp.floating):  # integer log-SNRs: as floats, explicitly
            log_snr = log_snr.astype(float)
        return self.schedule.inverse_integral(jax.nn.softplus(-log_snr))

    def transition_var(self, s, t):
        return -jnp.expm1(-(self.schedule.integral(t) - self.schedule.integral(s)))

    @property
    def prior_std(self) -> float:
        return 1.0

    def __repr__(self) -> str:
        sched = self.schedule
        if isinstance(sched, ConstantSchedule) and sched.beta == 2.0:
            kind = "ou()"
        elif isinstance(sched, LinearSchedule):
            kind = f"linear(beta_min={sched.beta_min:g}, beta_max={sched.beta_max:g})"
        elif isinstance(sched, CosineSchedule):
            kind = f"cosine(s={sched.s:g})"
        elif isinstance(sched, DiscreteSchedule):
            kind = f"from_alpha_bar(<{sched.knots_t.shape[0] - 1} steps>)"
        else:
            kind = f"{sched.name}()"
        return f"VP.{kind}[t_min={self.t_min:g}, t_max={self.t_max:g}]"


class VE(AbstractProcess):
    r"""Variance-exploding process ``dx = g(t) dW`` with ``sigma(t)^2 = sigma_min^2 (r^{2t} - 1)``,
    ``r = sigma_max / sigma_min``, on ``t in [0, 1]``.

    ``g(t)^2 = 2 log(r) sigma_min^2 r^{2t}`` equals score_sde's ``VESDE``. The prior is
    ``N(0, sigma(t_max)^2 I)``. The default ``t_min = log(2)/(2 log r)`` is where ``sigma = sigma_min``.

    Args:
        sigma_min: the noise scale ``> 0`` that sets ``sigma(t)``; default 0.01.
        sigma_max: the noise scale ``> sigma_min``; ``sigma(1) = sqrt(sigma_max^2 - sigma_min^2)``;
            default 50.
        t_min: the smallest time reverse samplers reach; ``None`` takes ``log(2)/(2 log r)``, where
            ``sigma(t_min) = sigma_min``.
        t_max: the time reverse samplers start from the prior; default 1.
    """

    sigma_min: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    name: ClassVar[str] = "ve"

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        *,
        t_min: float | None = None,
        t_max: float = 1.0,
    ):
        _check_real(sigma_min, "sigma_min", positive=True)
        _check_real(sigma_max, "sigma_max", positive=True)
        if not (0 < sigma_min < sigma_max):
            raise ValueError(
                f"Need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}."
            )
        if t_min is not None:
            _check_real(t_min, "t_min")
        _check_real(t_max, "t_max")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        log_r = math.log(sigma_max / sigma_min)
        self.t_min = float(math.log(2.0) / (2.0 * log_r) if t_min is None else t_min)
        self.t_max = float(t_max)
        _check_interval(self.t_min, self.t_max)

    @property
    def _log_r(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def log_alpha(self, t):
        return jnp.zeros_like(_as_time(t))

    def sigma2(self, t):
        return self.sigma_min**2 * jnp.expm1(2.0 * self._log_r * _as_time(t))

    def beta(self, t):
        return 2.0 * self._log_r * self.sigma_min**2 * jnp.exp(2.0 * self._log_r * _as_time(t))

    def drift_coefficient(self, t):
        return jnp.zeros_like(_as_time(t))

    def t_from_log_snr(self, log_snr):
        return jnp.log1p(jnp.exp(-jnp.asarray(log_snr)) / self.sigma_min**2) / (2.0 * self._log_r)

    def transition_var(self, s, t):
        return self.sigma2(t) - self.sigma2(s)

    @property
    def prior_std(self) -> float:
        return float(self.sigma_min * math.sqrt(math.expm1(2.0 * self._log_r * self.t_max)))

    def __repr__(self) -> str:
        params = f"sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}"
        return f"VE({params})[t_min={self.t_min:g}, t_max={self.t_max:g}]"


# =====================================================================================================
# discrete <-> continuous conversions
# =====================================================================================================
def alpha_bar_to_time(process: AbstractProcess, alpha_bar: ArrayOrSequence) -> Array:
    """Continuous time at which ``process.alpha_bar(t)`` (i.e. ``alpha^2``) equals ``alpha_bar``.

    For OU this is ``t = -1/2 log alpha_bar`` (the map used by Biroli et al. 2024 and Li & Chen 2024 to
    read DDPM steps as OU times). Only meaningful for VP processes.

    Args:
        process: a :class:`VP` process (a VE process raises ``TypeError``).
        alpha_bar: one value or an array of values in ``(0, 1]``.

    Returns:
        The times ``t`` with ``alpha(t)^2 = alpha_bar``, with the shape of ``alpha_bar``.
    """
    if not isinstance(process, VP):
        raise TypeError("alpha_bar_to_time needs a VP process (alpha is identically 1 for VE).")
    ab = jnp.asarray(alpha_bar)
    return process.schedule.inverse_integral(-jnp.log(ab))


def time_to_alpha_bar(process: AbstractProcess, t: ArrayLike) -> Array:
    """``alpha(t)^2`` (DDPM's cumulative ``alpha_bar``) at continuous time ``t``.

    Args:
        process: any process (identically 1 for :class:`VE`).
        t: a time or an array of times.

    Returns:
        ``process.alpha_bar(t)``, with the shape of ``t``.
    """
    return process.alpha_bar(t)


def to_betas(process: AbstractProcess, ts: ArrayLike) -> Array:
    """Discrete DDPM betas for a continuous VP process on an increasing grid ``ts`` (``ts[0] = 0`` first
    step from data): ``beta_k = 1 - alpha_bar(t_k) / alpha_bar(t_{k-1})``, computed as ``-expm1(-dB)``.

    Args:
        process: a :class:`VP` process (anything else raises ``TypeError``).
        ts: strictly increasing times ``(K + 1,)``.

    Returns:
        The ``K`` betas ``(K,)``, one per interval of ``ts``.
    """
    if not isinstance(process, VP):
        raise TypeError("to_betas needs a VP process.")
    ts = as_float_array(ts, "ts", ndim=1)
    if is_concrete(ts) and np.any(np.diff(np.asarray(ts)) <= 0):
        raise ValueError("`ts` must be strictly increasing.")
    b = process.schedule.integral(ts)
    return -jnp.expm1(-jnp.diff(b))
