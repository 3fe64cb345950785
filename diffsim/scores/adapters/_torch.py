r"""The PyTorch bridge: a ``torch.nn.Module`` as a batched JAX function, and :class:`TorchScore`.

**What runs where.** diffsim's sampler (the ``lax.scan`` over the grid, the per-particle noise, the
parametrisation conversions) runs in JAX; the model runs in PyTorch, on ``device`` (default: the device of
the module's first parameter, ``"cpu"`` here), through :func:`jax.pure_callback`. Under ``vmap`` the
callback's ``vmap_method="broadcast_all"`` hands it every vmapped axis at once, so a vmap over ``N``
particles is ONE torch call with a batch of ``N``.

**Transfers.** The callback receives ``jax.Array`` s on the host; ``torch.from_dlpack`` views them without a
copy (CPU), and the output tensor goes back through ``numpy`` (again a view); JAX copies it once into its own
buffer. On a CUDA device the inputs are moved with ``.to(device)`` (one host-to-device copy each way).

**dtype.** ``dtype`` (``"float32"`` or ``"float64"``) is the module's parameter dtype (checked at
construction) and the dtype the states must have (checked when traced); outputs of another dtype raise.

**Gradients.** A :func:`jax.custom_vjp` runs ``torch.autograd.grad`` in its backward pass: for a cotangent
``g`` of the output ``y = f(x, t, c)`` it returns ``(g^T dy/dx, 0, g^T dy/dc)`` (no gradient in ``t``; a
float ``c`` such as a prompt embedding gets its gradient, an integer one none). So ``jax.grad`` of any
functional of the score (classifier guidance with a torch classifier, saliency maps) and ``jax.jacrev``
(Hessians of ``log p_t``: :meth:`TorchScore.hessian`) work through the bridge; forward mode
(``jax.jvp``, ``jacfwd``) does not.

torch is an optional extra (``pip install diffsim[torch]``), imported on first use.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ...processes import AbstractProcess
from ._callable import CallableScore, check_event_shape


__all__ = ["TorchFunction", "TorchScore", "import_torch"]

_DTYPES = ("float32", "float64")


def import_torch() -> ModuleType:
    """``import torch`` with an install hint when it is missing."""
    try:
        return importlib.import_module("torch")
    except ImportError as err:
        raise ImportError(
            "The PyTorch bridge needs the optional dependency torch: `pip install diffsim[torch]` "
            f"(torch==2.13.0, CPU build). ({err})"
        ) from err


def _default_call(module, x, t, cond):
    out = module(x, t) if cond is None else module(x, t, cond)
    return getattr(out, "sample", out)  # diffusers' output dataclasses


def module_device(module: Any) -> str:
    """The device of a module's first parameter (``"cpu"`` for a module without parameters)."""
    for p in module.parameters():
        return str(p.device)
    return "cpu"


def _check_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(f"`dtype` must be 'float32' or 'float64', got {dtype!r}.")
    return name


class TorchFunction(eqx.Module):
    r"""A PyTorch module as a batched JAX function ``(x (B, *in_shape), t (B,)[, cond (B, ...)]) -> (B,
    *out_shape)`` (module docstring: devices, transfers, dtype, gradients).

    ``call(module, x, t, cond) -> tensor`` says how to call the module (default ``module(x, t[, cond])``,
    taking ``.sample`` of a diffusers output). Any number of leading vmapped axes are flattened into one
    torch batch.
    """

    module: Any = eqx.field(static=True)
    call: Callable = eqx.field(static=True)
    in_shape: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    device: str = eqx.field(static=True)
    natively_batched: ClassVar[bool] = True

    def __init__(
        self,
        module: Any,
        in_shape: int | Sequence[int],
        out_shape: Sequence[int] | None = None,
        *,
        call: Callable | None = None,
        dtype: str = "float32",
        device: str | None = None,
    ):
        torch = import_torch()
        if not isinstance(module, torch.nn.Module) and call is None:
            raise TypeError(
                f"`module` must be a torch.nn.Module (or pass `call`), got {type(module).__name__}."
            )
        self.module = module
        self.call = _default_call if call is None else call
        self.in_shape = check_event_shape(in_shape)
        self.out_shape = self.in_shape if out_shape is None else check_event_shape(out_shape)
        self.dtype = _check_dtype(dtype)
        self.device = (
            module_device(module)
            if device is None and isinstance(module, torch.nn.Module)
            else (device or "cpu")
        )
        if isinstance(module, torch.nn.Module):
            wrong = {str(p.dtype) for p in module.parameters() if p.is_floating_point()} - {
                f"torch.{self.dtype}"
            }
            if wrong:
                raise TypeError(
                    f"Torch module dtype: its parameters are {sorted(wrong)} but the bridge was built for "
                    f"{self.dtype}; call module.to(torch.{self.dtype}) or pass dtype= to match."
                )

    def __hash__(self):
        return hash((id(self.module), self.call, self.in_shape, self.out_shape, self.dtype, self.device))

    def __eq__(self, other):
        return (
            isinstance(other, TorchFunction)
            and other.module is self.module
            and (other.call, other.in_shape, other.out_shape, other.dtype, other.device)
            == (self.call, self.in_shape, self.out_shape, self.dtype, self.device)
        )

    def __call__(self, x: Array, t: Array, cond: Any = None) -> Array:
        if x.dtype != jnp.dtype(self.dtype):
            raise TypeError(
                f"State dtype: the torch model runs in {self.dtype} but got {x.dtype} states; pass "
                f"particles of dtype {self.dtype} (float64 needs jax_enable_x64) or rebuild with dtype="
                f"{x.dtype.name!r}."
            )
        return _apply(self, x, jnp.asarray(t, x.dtype), cond)

    # --- host side (inside the callbacks) -----------------------------------------------------------
    def _to_torch(self, a, n_lead: int, item_shape: tuple[int, ...] | None = None, dtype=True):
        torch = import_torch()
        ten = torch.from_dlpack(np.ascontiguousarray(np.asarray(a)) if not hasattr(a, "__dlpack__") else a)
        lead = int(np.prod(ten.shape[:n_lead])) if n_lead else 1
        ten = ten.reshape((lead,) + tuple(ten.shape[n_lead:]))
        if dtype and ten.is_floating_point():
            ten = ten.to(dtype=getattr(torch, self.dtype))
        return ten.to(self.device)

    def _run(self, x, t, cond, n_lead):
        out = self.call(self.module, x, t, cond)
        expect = (x.shape[0],) + self.out_shape
        if tuple(out.shape) != expect:
            raise ValueError(
                f"Torch model output shape: got {tuple(out.shape)} for an input batch {tuple(x.shape)}; "
                f"expected {expect} (batch, *out_shape)."
            )
        if str(out.dtype) != f"torch.{self.dtype}":
            raise TypeError(f"Torch model output dtype: got {out.dtype}, expected torch.{self.dtype}.")
        return out

    def host_forward(self, x, t, cond):
        torch = import_torch()
        n_lead = x.ndim - len(self.in_shape)
        lead = tuple(x.shape[:n_lead])
        xt, tt = self._to_torch(x, n_lead), self._to_torch(t, n_lead)
        ct = None if cond is None else jax.tree.map(lambda c: self._to_torch(c, n_lead), cond)
        with torch.no_grad():
            out = self._run(xt, tt.reshape(-1), ct, n_lead)
        return out.detach().cpu().numpy().reshape(lead + self.out_shape).astype(np.dtype(x.dtype), copy=False)

    def host_backward(self, x, t, cond, g):
        torch = import_torch()
        n_lead = x.ndim - len(self.in_shape)
        lead = tuple(x.shape[:n_lead])
        xt = self._to_torch(x, n_lead).clone().requires_grad_(True)
        tt = self._to_torch(t, n_lead).reshape(-1)
        gt = self._to_torch(g, n_lead)
        ct, wants = None, []
        if cond is not None:
            ct = jax.tree.map(lambda c: self._to_torch(c, n_lead).clone(), cond)
            for c in jax.tree.leaves(ct):
                if c.is_floating_point():
                    c.requires_grad_(True)
                    wants.append(c)
        with torch.enable_grad():
            out = self._run(xt, tt, ct, n_lead)
            grads = torch.autograd.grad(out, [xt, *wants], grad_outputs=gt, allow_unused=True)
        gx = grads[0] if grads[0] is not None else torch.zeros_like(xt)
        gx = gx.detach().cpu().numpy().reshape(lead + self.in_shape).astype(np.dtype(x.dtype), copy=False)
        hosts = [c for c in jax.tree.leaves(cond) if np.issubdtype(np.asarray(c).dtype, np.floating)]
        gcs = [
            (torch.zeros_like(w) if gw is None else gw)
            .detach()
            .cpu()
            .numpy()
            .reshape(np.shape(h))
            .astype(np.asarray(h).dtype, copy=False)
            for h, w, gw in zip(hosts, wants, grads[1:], strict=True)
        ]
        return gx, gcs


def _forward_cb(fn: TorchFunction, x, t, cond):
    shape = x.shape[: x.ndim - len(fn.in_shape)] + fn.out_shape
    return jax.pure_callback(
        fn.host_forward, jax.ShapeDtypeStruct(shape, x.dtype), x, t, cond, vmap_method="broadcast_all"
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _apply(fn: TorchFunction, x, t, cond):
    return _forward_cb(fn, x, t, cond)


def _apply_fwd(fn, x, t, cond):
    return _forward_cb(fn, x, t, cond), (x, t, cond)


def _apply_bwd(fn, res, g):
    """``(g^T dy/dx, 0, g^T dy/dc)`` by ``torch.autograd.grad`` in one (batched) callback."""
    x, t, cond = res
    leaves, treedef = jax.tree.flatten(cond)
    is_float = [jnp.issubdtype(c.dtype, jnp.floating) for c in leaves]
    shapes = (
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        [jax.ShapeDtypeStruct(c.shape, c.dtype) for c, f in zip(leaves, is_float, strict=True) if f],
    )
    gx, g_float = jax.pure_callback(fn.host_backward, shapes, x, t, cond, g, vmap_method="broadcast_all")
    it = iter(g_float)
    gc = None
    if cond is not None:
        gc = jax.tree.unflatten(
            treedef,
            [
                next(it) if f else np.zeros(c.shape, jax.dtypes.float0)
                for c, f in zip(leaves, is_float, strict=True)
            ],
        )
    return gx, jnp.zeros_like(t), gc


_apply.defvjp(_apply_fwd, _apply_bwd)


class TorchScore(CallableScore):
    r"""A PyTorch denoiser as a diffsim score through the bridge (:class:`TorchFunction`).

    ``TorchScore(module, process, event_shape, parametrisation=..., time_input=..., cond=..., dtype=...,
    device=..., call=...)``: the module is called as ``call(module, x (B, *event_shape), t_in (B,)[, cond
    (B, ...)])`` in torch (default ``module(x, t_in[, cond])``, ``.sample`` taken for diffusers outputs),
    with ``t_in`` per ``time_input`` (see :class:`CallableScore`). Each ``vmap``-ed score evaluation over
    ``N`` particles is one torch forward with batch ``N``; ``jax.grad`` through the score is one torch
    backward (``torch.autograd``).

    :meth:`hessian` uses reverse mode (``jax.jacrev``: one batched torch backward of size ``d``), since the
    bridge has no forward-mode derivative.
    """

    def __init__(
        self,
        module: Any,
        process: AbstractProcess,
        event_shape: int | Sequence[int],
        *,
        parametrisation: str = "eps",
        time_input: str = "t",
        cond: Any = None,
        dtype: str = "float32",
        device: str | None = None,
        call: Callable | None = None,
        num_train_timesteps: int | None = None,
        check: bool = True,
    ):
        fn = TorchFunction(module, event_shape, call=call, dtype=dtype, device=device)
        super().__init__(
            fn,
            process,
            event_shape,
            parametrisation=parametrisation,
            time_input=time_input,
            cond=cond,
            num_train_timesteps=num_train_timesteps,
            check=False,
        )
        if check:
            self.check_model(jnp.dtype(fn.dtype))

    @property
    def torch_module(self) -> Any:
        """The wrapped ``torch.nn.Module``."""
        return self.fn.module

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        r"""``\nabla_x^2 log p_t(x)`` as the reverse-mode Jacobian of the score (torch autograd)."""
        return jax.jacrev(lambda y: self.score(t, y))(x)
