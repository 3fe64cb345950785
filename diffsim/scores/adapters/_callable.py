r"""``CallableScore``: any batched JAX callable (function, Equinox or Flax module) as a diffsim score.

The model is ``f(x, t_in[, cond]) -> prediction`` on a BATCH: ``x`` of shape ``(B, *event_shape)``,
``t_in`` of shape ``(B,)``, ``cond`` (optional, the same for every point) broadcast to ``(B, ...)``. Its
output, of shape ``(B, *event_shape)``, is read in one of four parametrisations of ``x_t = alpha_t x_0 +
sigma_t eps`` (Tweedie; Salimans & Ho 2022 for ``v``):

    "eps":   eps_hat,       score = -eps_hat / sigma_t,
    "x0":    x0_hat,        score = (alpha_t x0_hat - x) / sigma_t^2,
    "score": s,
    "v":     v_hat = alpha_t eps_hat - sigma_t x0_hat,
             eps_hat = (sigma_t x + alpha_t v_hat) / (alpha_t^2 + sigma_t^2),
             x0_hat  = (alpha_t x - sigma_t v_hat) / (alpha_t^2 + sigma_t^2).

and its time input ``t_in`` in one of four conventions (:data:`TIME_INPUTS`):

    "t":        diffsim's forward time t,
    "log_snr":  log(alpha_t^2 / sigma_t^2),
    "sigma":    sigma_t / alpha_t = exp(-log_snr / 2)   (EDM / k-diffusion noise level; sigma_t for VE),
    "timestep": n = N t - 1   (the index of a discrete N-step schedule, as diffusers models take;
                :meth:`diffsim.VP.from_alpha_bar` puts step n at t = (n + 1) / N; values within
                ``timestep_snap`` of an integer are rounded to it, so float32 grid times hit the
                trained integer timesteps exactly).

States are flat (``(d,)`` with ``d = prod(event_shape)``, as every diffsim sampler and analysis expects);
the adapter reshapes them to ``event_shape`` for the model. One call per step: ``vmap(score.score)`` over
``N`` particles calls ``f`` once with a batch of ``N`` (:mod:`._batching`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from ...processes import VP, AbstractProcess, DiscreteSchedule
from .._base import AbstractScore
from .._conversions import check_parametrisation
from ._batching import batched_call, check_time_input, event_size


__all__ = ["CallableScore", "check_event_shape", "model_time", "prediction_to_x0_eps"]


def check_event_shape(event_shape: Any) -> tuple[int, ...]:
    """``event_shape`` as a tuple of positive ints (an int ``d`` means ``(d,)``)."""
    if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
        event_shape = (int(event_shape),)
    try:
        shape = tuple(int(s) for s in event_shape)
    except TypeError as err:
        raise TypeError(
            f"`event_shape` must be a tuple of ints such as (C, H, W), got {event_shape!r}."
        ) from err
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"`event_shape` must be a non-empty tuple of positive ints, got {event_shape!r}.")
    return shape


def _train_steps(process: AbstractProcess, num_train_timesteps: int | None) -> int | None:
    if num_train_timesteps is not None:
        n = int(num_train_timesteps)
        if n < 1:
            raise ValueError(f"`num_train_timesteps` must be >= 1, got {num_train_timesteps}.")
        return n
    if isinstance(process, VP) and isinstance(process.schedule, DiscreteSchedule):
        return int(process.schedule.knots_t.shape[0]) - 1
    return None


def model_time(
    process: AbstractProcess,
    t: Float[Array, "*b"],
    time_input: str,
    num_train_timesteps: int | None = None,
    timestep_snap: float = 1e-3,
) -> Float[Array, "*b"]:
    r"""The model's time argument for diffsim time ``t`` (see the module docstring for the four kinds).

    Args:
        process: the process that gives ``log_snr(t)``.
        t: diffsim times, any shape.
        time_input: ``"t"``, ``"log_snr"``, ``"sigma"`` or ``"timestep"``.
        num_train_timesteps: ``N`` of ``"timestep"`` (``n = N t - 1``); ``None`` raises ``ValueError`` for
            ``"timestep"`` and is ignored otherwise.
        timestep_snap: for ``"timestep"``, timesteps closer than this to an integer are rounded to it;
            ``0`` disables the rounding.

    Returns:
        The model's time inputs, with the shape of ``t``.
    """
    if time_input == "t":
        return t
    if time_input == "log_snr":
        return process.log_snr(t)
    if time_input == "sigma":
        return jnp.exp(-0.5 * process.log_snr(t))
    if num_train_timesteps is None:
        raise ValueError(
            'time_input="timestep" needs a discrete schedule: build the process with VP.from_alpha_bar / '
            "from_betas, or pass `num_train_timesteps`."
        )
    n = t * num_train_timesteps - 1.0
    if timestep_snap > 0:
        r = jnp.round(n)
        n = jnp.where(jnp.abs(n - r) < timestep_snap, r, n)
    return n


def prediction_to_x0_eps(
    process: AbstractProcess, t: ArrayLike, x: Array, pred: Array, parametrisation: str
) -> tuple[Array, Array]:
    r"""``(x0_hat, eps_hat)`` from a prediction (exact, with the formulas of the module docstring)."""
    a, s = process.alpha(t).astype(x.dtype), process.sigma(t).astype(x.dtype)
    if parametrisation == "eps":
        return (x - s * pred) / a, pred
    if parametrisation == "x0":
        return pred, (x - a * pred) / s
    if parametrisation == "v":
        n2 = a**2 + s**2
        return (a * x - s * pred) / n2, (s * x + a * pred) / n2
    # "score"
    return (x + s**2 * pred) / a, -s * pred


class CallableScore(AbstractScore):
    r"""A batched model ``f(x (B, *event_shape), t_in (B,)[, cond (B, ...)]) -> (B, *event_shape)`` as a
    diffsim score (module docstring: parametrisations and time inputs).

    Args:
        fn: any JAX callable: a function, an ``equinox.Module`` (its arrays are this score's leaves, so
            ``jax.grad`` and :func:`diffsim.training.train` reach them) or a Flax module through
            :meth:`from_flax_linen` / :meth:`from_flax_nnx`. With ``batched=False``, ``fn`` takes ONE point
            ``fn(x (*event_shape), t_in ()[, cond])`` (per-example Equinox style) and is vmapped.
        process: the diffsim process the model was trained on (for diffusers:
            ``VP.from_alpha_bar(scheduler.alphas_cumprod)``).
        event_shape: the shape of one state, e.g. ``(C, H, W)`` (an int ``d`` means ``(d,)``); diffsim
            states are flat of length ``prod(event_shape)``.
        parametrisation: ``"eps"`` (default), ``"x0"``, ``"score"`` or ``"v"``.
        time_input: ``"t"`` (default), ``"log_snr"``, ``"sigma"`` or ``"timestep"``.
        cond: optional conditioning (a pytree of arrays, one instance: class label, prompt embedding
            ``(L, D)``, ...), broadcast to the batch; ``None`` calls ``fn(x, t_in)``.
        num_train_timesteps: ``N`` for ``time_input="timestep"`` (default: from a discrete process).
        timestep_snap: for ``time_input="timestep"``, timesteps within this of an integer are rounded to it
            (default ``1e-3``; ``0`` disables it).
        batched: whether ``fn`` takes a batch (default) or one point.
        check: call the model once on a probe batch of two points at construction and raise a clear
            error for a wrong output shape, a non-float or different dtype, or non-finite values.
    """

    fn: Callable
    process: AbstractProcess
    cond: PyTree | None
    event_shape: tuple[int, ...] = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)
    time_input: str = eqx.field(static=True)
    num_train_timesteps: int | None = eqx.field(static=True)
    timestep_snap: float = eqx.field(static=True)
    batched: bool = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable,
        process: AbstractProcess,
        event_shape: int | Sequence[int],
        *,
        parametrisation: str = "eps",
        time_input: str = "t",
        cond: PyTree | None = None,
        num_train_timesteps: int | None = None,
        timestep_snap: float = 1e-3,
        batched: bool = True,
        check: bool = True,
    ):
        if not callable(fn):
            raise TypeError(f"`fn` must be callable fn(x, t[, cond]), got {type(fn).__name__}.")
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
        self.fn = fn
        self.process = process
        self.cond = None if cond is None else jax.tree.map(jnp.asarray, cond)
        self.event_shape = check_event_shape(event_shape)
        self.parametrisation = check_parametrisation(parametrisation)
        self.time_input = check_time_input(time_input)
        self.num_train_timesteps = _train_steps(process, num_train_timesteps)
        if self.time_input == "timestep" and self.num_train_timesteps is None:
            model_time(process, jnp.zeros(()), "timestep")  # raises the explanatory error
        self.timestep_snap = float(timestep_snap)
        self.batched = bool(batched)
        if check:
            self.check_model()

    # --- constructors for Flax -----------------------------------------------------------------------
    @classmethod
    def from_flax_linen(cls, module: Any, variables: PyTree, process: AbstractProcess, event_shape, **kwargs):
        """Wrap a ``flax.linen.Module`` called as ``module.apply(variables, x, t_in[, cond])`` on a batch
        (``variables`` become this score's array leaves). Flax is imported lazily (``diffsim[flax]``)."""
        from ._flax import LinenCall

        return cls(LinenCall(module, variables), process, event_shape, **kwargs)

    @classmethod
    def from_flax_nnx(cls, model: Any, process: AbstractProcess, event_shape, **kwargs):
        """Wrap a ``flax.nnx.Module`` called as ``model(x, t_in[, cond])`` on a batch (split into a static
        graph and a state pytree)."""
        from ._flax import NnxCall

        return cls(NnxCall.from_model(model), process, event_shape, **kwargs)

    # --- the model -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return event_size(self.event_shape)

    def model_time(self, t: Float[Array, "*b"]) -> Float[Array, "*b"]:
        """The model's time argument at diffsim time ``t`` (:func:`model_time`)."""
        return model_time(self.process, t, self.time_input, self.num_train_timesteps, self.timestep_snap)

    def predict_batch(self, t: Float[Array, " B"], x: Float[Array, "B d"]) -> Float[Array, "B d"]:
        """The raw model output for a flat batch ``x (B, d)`` at times ``t (B,)`` (one model call)."""
        b = x.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, dtype=x.dtype), (b,))
        cond = (
            None
            if self.cond is None
            else jax.tree.map(lambda c: jnp.broadcast_to(c, (b,) + c.shape), self.cond)
        )
        t_in = self.model_time(t).astype(x.dtype)
        out = batched_call(self.fn, x.reshape((b,) + self.event_shape), t_in, cond, batched=self.batched)
        if out.shape != (b,) + self.event_shape:
            raise ValueError(
                f"The model returned shape {out.shape}; expected (batch, *event_shape) = "
                f"{(b,) + self.event_shape} in the {self.parametrisation!r} parametrisation."
            )
        return out.reshape(b, self.dim).astype(x.dtype)

    def predict(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """The raw model output (in :attr:`parametrisation`) for one flat point ``x (d,)``."""
        if x.shape != (self.dim,):
            raise ValueError(
                f"`x` must be one flat point of shape ({self.dim},) = prod(event_shape={self.event_shape}), "
                f"got {x.shape}."
            )
        return self.predict_batch(jnp.asarray(t)[None], x[None])[0]

    def _x0_eps(self, t, x):
        t = jnp.asarray(t, dtype=x.dtype)
        return prediction_to_x0_eps(self.process, t, x, self.predict(t, x), self.parametrisation)

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""``\nabla log p_t(x) = -eps_hat / sigma_t`` from the model's prediction."""
        if self.parametrisation == "score":
            return self.predict(t, x)
        t = jnp.asarray(t, dtype=x.dtype)
        return -self._x0_eps(t, x)[1] / self.process.sigma(t).astype(x.dtype)

    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Tweedie ``x0_hat`` straight from the prediction (no round trip through the score)."""
        return self._x0_eps(t, x)[0]

    def eps(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``eps_hat`` straight from the prediction."""
        return self._x0_eps(t, x)[1]

    # --- validation ----------------------------------------------------------------------------------
    def probe_batch(self, dtype: Any = None) -> tuple[Array, Array]:
        """Two standard-normal points (flat) at the middle of ``[t_min, t_max]``: the construction probe."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        p = self.process
        t = jnp.full((2,), 0.5 * (p.t_min + p.t_max), dtype=dtype)
        return t, p.prior_std * jr.normal(jr.key(0), (2, self.dim), dtype=dtype)

    def check_model(self, dtype: Any = None) -> None:
        """Call the model once on :meth:`probe_batch` and raise a clear error, naming the part, if its
        output has the wrong shape or dtype or is not finite (run at construction unless ``check=False``)."""
        t, x = self.probe_batch(dtype)
        b = x.shape[0]
        t_in = self.model_time(t).astype(x.dtype)
        cond = (
            None
            if self.cond is None
            else jax.tree.map(lambda c: jnp.broadcast_to(c, (b,) + c.shape), self.cond)
        )
        xb = x.reshape((b,) + self.event_shape)
        try:
            out = batched_call(self.fn, xb, t_in, cond, batched=self.batched)
        except Exception as err:
            raise type(err)(
                f"Calling the model on a probe batch x {tuple(xb.shape)} {xb.dtype}, "
                f"t_in {tuple(t_in.shape)} ({self.time_input!r}) failed: {err}"
            ) from err
        out = jnp.asarray(out)
        if out.shape != xb.shape:
            raise ValueError(
                f"Model output shape: got {tuple(out.shape)} for a probe batch of shape {tuple(xb.shape)}; "
                f"expected (batch, *event_shape) = {tuple(xb.shape)}."
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise TypeError(f"Model output dtype: got {out.dtype}, expected a float dtype ({xb.dtype}).")
        if out.dtype != xb.dtype:
            raise TypeError(
                f"Model output dtype: got {out.dtype} for {xb.dtype} input; the model must return the "
                "input's dtype (cast inside fn, or build the score for the model's dtype)."
            )
        if not bool(jnp.all(jnp.isfinite(out))):
            raise ValueError(
                f"Model output values: the probe batch (t = {float(t[0]):g}, standard-normal x) gave "
                "non-finite values (NaN or inf)."
            )
