"""The model a sampler steps with, seen in the particles' dtype.

A sampler's arithmetic runs in the dtype of its particles. Under ``jax_enable_x64`` the process or the
model may hold float64 arrays (a process built from a NumPy ``alpha_bar``, an exact mixture with float64
means) while the particles are float32; JAX's standard promotion would then silently run every step in
float64 (slow on accelerators, and a float32 carry cast back each step), and strict promotion rejects the
mix. :func:`in_particle_dtype` makes the choice explicit: the process the kernels read their coefficients
from is cast to the particles' dtype, and the model's outputs are cast to it, while the model itself
computes in its own precision (a float64 oracle stays a float64 oracle). With one dtype throughout, the
view changes nothing: every cast is the identity.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, Float

from ..processes import AbstractProcess
from ..scores._base import AbstractScore


__all__ = ["ParticleDtypeScore", "in_particle_dtype"]


def _cast_process(process: AbstractProcess, dtype: Any) -> AbstractProcess:
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, process)


class ParticleDtypeScore(AbstractScore):
    """``model`` with its process's inexact arrays and its outputs in ``dtype`` (see the module docstring).

    The score's methods (``score``, ``denoise``, ``eps``, ``v_prediction``, ``velocity``,
    ``reverse_drift``, ``hessian``, ``laplacian``, ``velocity_divergence``, ``log_prob``) return ``dtype``;
    any other attribute is the model's own, uncast.

    Attributes:
        model: the score the sampler was given.
        process: ``model.process`` with its inexact arrays cast to ``dtype``.
        dtype: the particles' dtype (static).
    """

    model: AbstractScore
    process: AbstractProcess
    dtype: Any = eqx.field(static=True)

    @property
    def dim(self) -> int:
        return self.model.dim

    def _out(self, value: Array) -> Array:
        return value.astype(self.dtype)

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.score(t, x))

    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.denoise(t, x))

    def eps(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.eps(t, x))

    def v_prediction(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.v_prediction(t, x))

    def velocity(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.velocity(t, x))

    def reverse_drift(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self._out(self.model.reverse_drift(t, x))

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        return self._out(self.model.hessian(t, x))

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self._out(self.model.laplacian(t, x))

    def velocity_divergence(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self._out(self.model.velocity_divergence(t, x))

    def log_prob(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self._out(self.model.log_prob(t, x))

    def __getattr__(self, name: str) -> Any:
        # anything else of the model (``posterior``, a label, ...) as the model gives it, uncast
        if name in ("model", "process", "dtype") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model, name)


def in_particle_dtype(score: AbstractScore, dtype: Any) -> AbstractScore:
    """``score`` as a sampler in ``dtype`` sees it (:class:`ParticleDtypeScore`)."""
    return ParticleDtypeScore(model=score, process=_cast_process(score.process, dtype), dtype=dtype)
