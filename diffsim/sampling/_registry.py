r"""The sampler base classes and the one sampler registry.

A sampler is an Equinox module that declares its metadata as class-level fields:

- ``name``: the string :func:`diffsim.simulate` and :func:`get_sampler` accept;
- ``order``: for deterministic samplers the pathwise (PF-ODE) order, for stochastic ones the weak order,
  ``None`` when there is no discretisation error (an exact transition);
- ``stochastic``: whether a step draws noise;
- ``noise_draws``: how many standard normal vectors of size ``d`` one step draws per particle (used by
  ``simulate(noise="counter")``);
- ``adaptive``: ``True`` for Diffrax-backed samplers that choose their own steps
  (:class:`AbstractAdaptiveSampler`), ``False`` for fixed-grid kernels (:class:`AbstractFixedSampler`);
  set by the base class;
- ``direction``: ``"reverse"`` (default; ``t`` decreases) or ``"forward"``.

Defining a subclass with a ``name`` registers it; nothing else is needed::

    class Shift(AbstractFixedSampler):
        name = "shift"
        order = 1
        stochastic = False
        noise_draws = 0

        def step(self, key, state, t, t_next, score):
            return State(state.x + score.velocity(t, state.x) * (t_next - t))

The class fields describe the sampler with its default options. Options may change two of them (DDIM's
``eta``, Heun's ``churn`` make the sampler stochastic; PC's ``n_corrector`` sets the number of draws): an
instance reports its own through :meth:`AbstractSampler.is_stochastic` and
:meth:`AbstractSampler.draws_per_step`, which return the class fields unless a sampler overrides them.
"""

from __future__ import annotations

import abc
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..scores._base import AbstractScore


__all__ = [
    "ADAPTIVE",
    "SAMPLERS",
    "SAMPLER_REGISTRY",
    "AbstractAdaptiveSampler",
    "AbstractFixedSampler",
    "AbstractSampler",
    "State",
    "get_sampler",
    "unregister_sampler",
]

_REGISTRY: dict[str, type[AbstractSampler]] = {}
_DIRECTIONS = ("reverse", "forward")


class State(NamedTuple):
    """Kernel state of the single-step samplers: just the position.

    Attributes:
        x: the particle's position, shape ``(d,)``.
    """

    x: Array


def _check_metadata(cls: type) -> None:
    """Clear errors, at class definition, for a registered sampler with missing or malformed metadata."""
    missing = [f for f in ("order", "stochastic", "noise_draws", "adaptive") if not hasattr(cls, f)]
    if missing:
        raise TypeError(f"Sampler {cls.__qualname__} (name {cls.name!r}) must declare {', '.join(missing)}.")
    if not isinstance(cls.name, str) or not cls.name or cls.name != cls.name.lower().replace("-", "_"):
        raise TypeError(f"Sampler {cls.__qualname__}: `name` must be a lower-case name, not {cls.name!r}.")
    if cls.order is not None and (isinstance(cls.order, bool) or not isinstance(cls.order, (int, float))):
        raise TypeError(f"Sampler {cls.name!r}: `order` must be a number or None, got {cls.order!r}.")
    for field in ("stochastic", "adaptive"):
        if not isinstance(getattr(cls, field), bool):
            raise TypeError(f"Sampler {cls.name!r}: `{field}` must be a bool, got {getattr(cls, field)!r}.")
    draws = cls.noise_draws
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
        raise TypeError(f"Sampler {cls.name!r}: `noise_draws` must be an int >= 0, got {draws!r}.")
    if cls.stochastic != (draws > 0):
        raise TypeError(f"Sampler {cls.name!r}: `stochastic` must be True exactly when `noise_draws` > 0.")
    if cls.direction not in _DIRECTIONS:
        raise TypeError(f"Sampler {cls.name!r}: `direction` must be in {_DIRECTIONS}, got {cls.direction!r}.")


class AbstractSampler(eqx.Module):
    """Base of every sampler; a subclass that defines ``name`` is registered (see the module docstring).

    Attributes:
        name: the registry name (lower case, ``_`` not ``-``) that :func:`get_sampler` and
            :func:`diffsim.simulate` accept; defining it registers the class.
        order: pathwise (PF-ODE) order of a deterministic sampler, weak order of a stochastic one, ``None``
            for an exact transition.
        stochastic: whether a step draws noise with the default options.
        noise_draws: standard normal vectors of size ``d`` one step draws per particle (``> 0`` exactly
            when ``stochastic``).
        adaptive: ``True`` for Diffrax-backed samplers, ``False`` for fixed-grid kernels; set by
            :class:`AbstractAdaptiveSampler` / :class:`AbstractFixedSampler`.
    """

    name: eqx.AbstractClassVar[str]
    order: eqx.AbstractClassVar[float | None]
    stochastic: eqx.AbstractClassVar[bool]
    noise_draws: eqx.AbstractClassVar[int]
    adaptive: eqx.AbstractClassVar[bool]
    direction: ClassVar[str] = "reverse"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        _check_metadata(cls)
        old = _REGISTRY.get(cls.name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"Sampler name {cls.name!r} is already taken by {old.__module__}.{old.__qualname__}; "
                "choose another name (or unregister_sampler it first)."
            )
        _REGISTRY[cls.name] = cls  # a re-definition of the same class (a reloaded module) replaces it

    def configure(self, n_steps: int) -> AbstractSampler:
        """Return the sampler specialised to a grid of ``n_steps`` (default: unchanged)."""
        del n_steps
        return self

    def nfe(self, n_steps: int) -> int:
        """Score evaluations per particle for a grid of ``n_steps``."""
        return n_steps

    def is_stochastic(self) -> bool:
        """Whether this instance draws noise (the class field ``stochastic`` unless options change it)."""
        return type(self).stochastic

    def draws_per_step(self) -> int:
        """Normal vectors of size ``d`` this instance draws per step and particle (class field ``noise_draws``
        unless options change it)."""
        return type(self).noise_draws


def option_is_positive(value: Any, name: str = "option") -> bool:
    """Whether a numeric sampler option (DDIM's ``eta``, Heun's ``churn``) makes the sampler draw noise:
    ``value > 0`` when it is concrete, ``True`` when it is traced (an option swept inside ``jit``/``vmap``,
    where a zero value then adds exactly zero noise). The result is static: it fixes the kernel's structure
    (whether a step draws noise), while the option's value stays an array leaf when it is one."""
    if isinstance(value, jax.core.Tracer):
        return True
    if np.ndim(value) != 0:
        raise ValueError(f"sampler option `{name}` must be a scalar, got shape {np.shape(value)}.")
    return bool(np.asarray(value) > 0)


def resolve_noisy(noisy: bool | None, value: Any, name: str) -> bool:
    """The static ``noisy`` flag of a sampler with option ``name = value``: derived from the value
    (:func:`option_is_positive`) when ``noisy`` is ``None``; when given, it must agree with a concrete value
    (``noisy=True`` lets a traced value that may be 0 keep the stochastic kernel, which then adds zero noise).
    """
    derived = option_is_positive(value, name)
    if noisy is None:
        return derived
    if not isinstance(noisy, bool):
        raise TypeError(f"`noisy` must be a bool or None, got {type(noisy).__name__}.")
    if not isinstance(value, jax.core.Tracer) and noisy != derived:
        raise ValueError(
            f"`noisy={noisy}` contradicts `{name}={value}` (noise is drawn exactly when {name} > 0)."
        )
    return noisy


def check_option(value: Any, ok: Callable[[float], bool], message: str) -> None:
    """Raise ``ValueError(message)`` when a concrete option fails ``ok`` (a traced one is not checked)."""
    if isinstance(value, jax.core.Tracer):
        return
    if np.ndim(value) != 0:
        raise ValueError(f"{message} (a scalar is expected, got shape {np.shape(value)})")
    if not ok(float(value)):
        raise ValueError(message)


class AbstractFixedSampler(AbstractSampler):
    """A fixed-grid kernel run by ``simulate`` inside ``lax.scan``: ``init`` / ``step`` / ``position``.

    ``step(key, state, t, t_next, score)`` advances one particle from ``t`` to ``t_next``; ``key`` is a
    per-particle, per-step PRNG key or a :class:`~diffsim.sampling._noise.StepNoise` (draw from it with
    ``normal_like`` / ``split_noise``, which accept both).

    Attributes:
        name: the registry name; defining it registers the subclass.
        order: pathwise order (deterministic) or weak order (stochastic); ``None`` for an exact transition.
        stochastic: whether a step draws noise with the default options.
        noise_draws: standard normal vectors of size ``d`` one step draws per particle.
    """

    adaptive: ClassVar[bool] = False

    def init(self, t0: ArrayLike, x: Float[Array, " d"]) -> Any:
        del t0
        return State(x)

    def position(self, state: Any) -> Float[Array, " d"]:
        return state.x

    @abc.abstractmethod
    def step(self, key: jax.Array, state: Any, t: ArrayLike, t_next: ArrayLike, score: AbstractScore) -> Any:
        """Advance one particle from ``t`` to ``t_next``."""


class AbstractAdaptiveSampler(AbstractSampler):
    """A sampler whose steps are chosen by Diffrax; implements :meth:`solve` instead of ``step``.

    Attributes:
        name: the registry name; defining it registers the subclass.
        order: the solver's order (``None`` when not stated).
        stochastic: whether the solve draws noise (a Brownian path for SDE solvers).
        noise_draws: ``0`` for ODE solvers; ``> 0`` for SDE solvers (they draw a Brownian path, not
            per-step normals).
    """

    adaptive: ClassVar[bool] = True

    @abc.abstractmethod
    def solve(
        self,
        score: AbstractScore,
        grid: Array,
        x: Array,
        keys: Array,
        save_idx: np.ndarray,
        stats: Callable | None,
        save_states: bool,
    ) -> tuple[Any, Any, Array, Array]:
        """Return ``(xs, stats, x_final, nfe_per_particle)`` for particles ``x`` with keys ``keys``."""


class _RegistryView(Mapping):
    """A read-only, live view of the registry (optionally filtered): name -> sampler class."""

    def __init__(self, keep: Callable[[type[AbstractSampler]], bool] | None = None):
        self._keep = keep

    def _names(self) -> list[str]:
        return [k for k, c in _REGISTRY.items() if self._keep is None or self._keep(c)]

    def __getitem__(self, name: str) -> type[AbstractSampler]:
        cls = _REGISTRY[name]
        if self._keep is not None and not self._keep(cls):
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: {_REGISTRY[k].__qualname__}' for k in self._names())}}}"


SAMPLER_REGISTRY: Mapping[str, type[AbstractSampler]] = types.MappingProxyType(_REGISTRY)
"""Every registered sampler, name -> class (read-only, live)."""
SAMPLERS: Mapping[str, type[AbstractSampler]] = _RegistryView(lambda c: not c.adaptive)
"""The fixed-grid part of the registry (read-only, live)."""
ADAPTIVE: Mapping[str, type[AbstractSampler]] = _RegistryView(lambda c: c.adaptive)
"""The adaptive (Diffrax) part of the registry (read-only, live)."""


def unregister_sampler(name: str) -> None:
    """Remove a registered sampler (e.g. one defined in a notebook or a test).

    Args:
        name: the registry name of the sampler; ``KeyError`` when none is registered under it.
    """
    if name not in _REGISTRY:
        raise KeyError(f"No sampler named {name!r} is registered.")
    del _REGISTRY[name]


def get_sampler(method: str | AbstractSampler, **options: Any) -> AbstractSampler:
    """Resolve a registered name (with constructor options) or pass a sampler instance through.

    Args:
        method: a registered name (case-insensitive, ``-`` read as ``_``, e.g. ``"ddim"``) or a sampler
            instance, returned unchanged (then no ``options`` may be given).
        **options: constructor options of the named sampler (e.g. ``eta=0.5`` for ``"ddim"``).

    Returns:
        The sampler instance; ``ValueError`` for an unknown name, ``TypeError`` for bad options.
    """
    if isinstance(method, AbstractSampler):
        if options:
            raise TypeError("Pass sampler options to the sampler's constructor, not alongside an instance.")
        return method
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a sampler name or instance, got {type(method).__name__}.")
    key = method.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"Unknown sampler {method!r}; known samplers: {', '.join(sorted(_REGISTRY))}.")
    try:
        return _REGISTRY[key](**options)
    except TypeError as err:
        raise TypeError(f"Bad options for sampler {method!r}: {err}") from err
