r"""Classifiers from external models: a batched JAX callable or a PyTorch module as a diffsim
:class:`~diffsim.scores.guidance.AbstractNoisyClassifier`, usable by
:class:`~diffsim.scores.ClassifierGuidance` and the analyses that need ``log p_t(y | x)``.

Two kinds of classifier:

- **noisy** (``noisy=True``, e.g. the time-conditional classifier of Dhariwal & Nichol 2021):
  ``logits = f(x_t, t_in)`` with ``t_in`` per ``time_input`` (as for :class:`CallableScore`);
- **clean** (``noisy=False``, a classifier of data): ``logits = f(x)``; with a ``denoiser`` score it
  classifies Tweedie's posterior mean, ``p_t(y | x) ~ p(y | x0_hat(t, x))`` (the approximation of
  Chung et al. 2023's DPS and Bansal et al. 2023's universal guidance); without one, ``x_t`` as is.

``log p_t(y | x) = log_softmax(logits)_y``; its gradient in ``x`` is JAX autodiff (through the torch bridge's
custom VJP for a torch classifier, and through the denoiser when there is one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ...processes import AbstractProcess
from .._base import AbstractScore
from ..guidance import AbstractNoisyClassifier
from ._batching import batched_call, check_time_input, event_size
from ._callable import _train_steps, check_event_shape, model_time
from ._torch import TorchFunction


__all__ = ["CallableClassifier", "TorchClassifier"]


class _Clean(eqx.Module):
    """``f(x)`` seen as ``f(x, t)`` (a classifier of clean data ignores time)."""

    fn: Callable

    def __call__(self, x, t):
        del t
        return self.fn(x)


def _torch_noisy(module, x, t, cond):
    return module(x, t)


def _torch_clean(module, x, t, cond):
    return module(x)


class CallableClassifier(AbstractNoisyClassifier):
    r"""A batched classifier ``f(x (B, *event_shape)[, t_in (B,)]) -> logits (B, n_classes)`` as a noisy
    classifier ``log p_t(y | x) = log_softmax(f)_y`` (module docstring: noisy vs clean, ``denoiser``).

    ``classes`` are ``0 .. n_classes - 1``. With ``check=True`` the model is called once on a probe batch and
    a wrong logits shape or non-finite logits raise before any sampling.

    Args:
        fn: the batched JAX classifier: ``fn(x, t_in)`` when ``noisy``, else ``fn(x)``; ``x`` has shape
            ``(B, *event_shape)`` and the logits ``(B, n_classes)``.
        process: the diffsim process (gives ``t_in`` and the probe times).
        event_shape: the shape of one state, e.g. ``(C, H, W)`` (an int ``d`` means ``(d,)``).
        n_classes: the number of classes (``>= 2``).
        noisy: whether ``fn`` classifies noisy states at a time (default) or clean data.
        time_input: the time convention of a noisy ``fn``: ``"t"`` (default), ``"log_snr"``, ``"sigma"`` or
            ``"timestep"``.
        denoiser: for a clean classifier only: a score whose Tweedie ``x0_hat`` is classified instead of
            ``x_t``; ``None`` classifies ``x_t`` as is.
        num_train_timesteps: ``N`` for ``time_input="timestep"`` (default: from a discrete process).
        check: call the model once on a probe batch of two points at construction.
    """

    fn: Callable
    process: AbstractProcess
    denoiser: AbstractScore | None
    event_shape: tuple[int, ...] = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)
    noisy: bool = eqx.field(static=True)
    time_input: str = eqx.field(static=True)
    num_train_timesteps: int | None = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable,
        process: AbstractProcess,
        event_shape: int | Sequence[int],
        n_classes: int,
        *,
        noisy: bool = True,
        time_input: str = "t",
        denoiser: AbstractScore | None = None,
        num_train_timesteps: int | None = None,
        check: bool = True,
    ):
        if not callable(fn):
            raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
        if denoiser is not None and noisy:
            raise ValueError("`denoiser` is for clean-data classifiers (noisy=False).")
        self.noisy = bool(noisy)
        self.fn = fn if (self.noisy or isinstance(fn, TorchFunction)) else _Clean(fn)
        self.process = process
        self.denoiser = denoiser
        self.event_shape = check_event_shape(event_shape)
        if denoiser is not None and denoiser.dim != event_size(self.event_shape):
            raise ValueError(
                f"`denoiser` has d={denoiser.dim}, the classifier prod(event_shape)={self.event_shape}."
            )
        self.n_classes = int(n_classes)
        if self.n_classes < 2:
            raise ValueError(f"`n_classes` must be >= 2, got {n_classes}.")
        self.time_input = check_time_input(time_input)
        self.num_train_timesteps = _train_steps(process, num_train_timesteps)
        if check:
            self.check_model()

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(range(self.n_classes))

    def logits_batch(self, t: Float[Array, " B"], x: Float[Array, "B d"]) -> Float[Array, "B C"]:
        """Logits for a flat batch (one model call; clean classifiers see ``x0_hat`` with a denoiser)."""
        b = x.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (b,))
        if self.denoiser is not None:
            x = jax.vmap(self.denoiser.denoise)(t, x)
        t_in = model_time(self.process, t, self.time_input, self.num_train_timesteps).astype(x.dtype)
        out = batched_call(self.fn, x.reshape((b,) + self.event_shape), t_in)
        if out.shape != (b, self.n_classes):
            raise ValueError(
                f"Classifier output shape: got {out.shape}, expected (batch, n_classes) = "
                f"{(b, self.n_classes)}."
            )
        return out

    def log_probs(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " C"]:
        """``log p_t(c | x)`` for every class."""
        return jax.nn.log_softmax(self.logits_batch(jnp.asarray(t)[None], x[None])[0])

    def log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, ""]:
        """``log p_t(y | x) = log_softmax(logits)_y``."""
        return self.log_probs(t, x)[y]

    def check_model(self, dtype: Any = None) -> None:
        """One probe call: logits of shape ``(2, n_classes)``, float and finite, or a clear error."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        p = self.process
        t = jnp.full((2,), 0.5 * (p.t_min + p.t_max), dtype=dtype)
        x = p.prior_std * jax.random.normal(jax.random.key(0), (2, event_size(self.event_shape)), dtype=dtype)
        out = self.logits_batch(t, x)
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise TypeError(f"Classifier output dtype: got {out.dtype}, expected float logits.")
        if not bool(jnp.all(jnp.isfinite(out))):
            raise ValueError("Classifier output values: the probe batch gave non-finite logits (NaN or inf).")


class TorchClassifier(CallableClassifier):
    r"""A PyTorch classifier through the bridge (:class:`TorchFunction`): ``module(x, t_in)`` (noisy) or
    ``module(x)`` (clean, optionally on ``x0_hat`` of a ``denoiser``) returning logits ``(B, n_classes)``.
    ``jax.grad`` of :meth:`log_prob` runs ``torch.autograd`` (classifier guidance, saliency).

    Args:
        module: the ``torch.nn.Module`` returning logits ``(B, n_classes)``.
        process: the diffsim process (gives ``t_in`` and the probe times).
        event_shape: the shape of one state, e.g. ``(C, H, W)`` (an int ``d`` means ``(d,)``).
        n_classes: the number of classes (``>= 2``).
        noisy: whether the module takes ``(x, t_in)`` (default) or ``x`` alone (clean data).
        time_input: the time convention of a noisy module: ``"t"`` (default), ``"log_snr"``, ``"sigma"`` or
            ``"timestep"`` (the last is not differentiable in time).
        denoiser: for a clean classifier only: a score whose Tweedie ``x0_hat`` is classified instead of
            ``x_t``; ``None`` classifies ``x_t`` as is.
        dtype: the torch dtype, ``"float32"`` (default) or ``"float64"``; the module's parameters and the
            states must have it.
        device: the torch device; ``None`` takes the device of the module's first parameter.
        call: ``call(module, x, t, cond) -> logits``; ``None`` calls ``module(x, t)`` (noisy) or
            ``module(x)`` (clean).
        num_train_timesteps: ``N`` for ``time_input="timestep"`` (default: from a discrete process).
        check: call the model once on a probe batch of two points at construction.
    """

    def __init__(
        self,
        module: Any,
        process: AbstractProcess,
        event_shape: int | Sequence[int],
        n_classes: int,
        *,
        noisy: bool = True,
        time_input: str = "t",
        denoiser: AbstractScore | None = None,
        dtype: str = "float32",
        device: str | None = None,
        call: Callable | None = None,
        num_train_timesteps: int | None = None,
        check: bool = True,
    ):
        call = call if call is not None else (_torch_noisy if noisy else _torch_clean)
        fn = TorchFunction(
            module,
            event_shape,
            (int(n_classes),),
            call=call,
            dtype=dtype,
            device=device,
            time_grad=time_input != "timestep",
        )
        super().__init__(
            fn,
            process,
            event_shape,
            n_classes,
            noisy=noisy,
            time_input=time_input,
            denoiser=denoiser,
            num_train_timesteps=num_train_timesteps,
            check=False,
        )
        if check:
            self.check_model(jnp.dtype(fn.dtype))
