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

**Derivatives.** The call is a :func:`jax.custom_jvp` whose tangent map ``(x', t', c') -> J_x x' + J_t t' +
J_c c'`` is a :func:`jax.lax.custom_linear_solve` with the identity as its operator: ``solve`` runs torch's
forward-mode AD (``torch.func.jvp``; without forward-mode formulas, the double-VJP identity ``J v =
d/du [(u^T J) v]``) and ``transpose_solve`` runs ``torch.autograd.grad`` (``g -> (g^T dy/dx, g^T dy/dt,
g^T dy/dc)``). JAX transposes the solve for reverse mode and batches it under ``vmap``, so ``jax.grad``,
``jacrev`` (one torch forward-and-backward), ``jax.jvp``, ``jacfwd`` and matrix-free Hessian-vector
products (one batched torch JVP) all work. The time input is differentiated by torch (``t``, log-SNR,
sigma inputs); for integer timesteps (``time_grad=False``) a time derivative raises. A float ``c`` (a
prompt embedding) gets its derivative, an integer one none. Second derivatives of the torch model
(``jax.hessian`` of a functional of its output) raise ``NotImplementedError``: the solve's residuals are
marked first-order only, so a wrong (silently truncated) second derivative cannot occur.

torch is an optional extra (``pip install diffsim[torch]``), imported on first use.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ...processes import AbstractProcess
from .._conversions import v_from_score
from ._callable import CallableScore, check_event_shape, prediction_to_x0_eps


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
    torch batch. ``time_grad=False`` marks a module on integer timesteps, whose derivative in time is not
    defined (differentiating it in ``t`` raises ``ValueError``).

    Args:
        module: the ``torch.nn.Module`` (any object when ``call`` is given).
        in_shape: the shape of one input, e.g. ``(C, H, W)`` (an int ``d`` means ``(d,)``).
        out_shape: the shape of one output; ``None`` means ``in_shape``.
        call: ``call(module, x, t, cond) -> tensor``; ``None`` calls ``module(x, t[, cond])`` and takes
            ``.sample`` of the output when it has one.
        dtype: ``"float32"`` (default) or ``"float64"``; the module's floating parameters must have it.
        device: the torch device the inputs are moved to; ``None`` takes the device of the module's first
            parameter (``"cpu"`` without parameters).
        time_grad: whether derivatives in ``t`` are defined (``False`` for integer timesteps).
    """

    module: Any = eqx.field(static=True)
    call: Callable = eqx.field(static=True)
    in_shape: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    device: str = eqx.field(static=True)
    time_grad: bool = eqx.field(static=True)
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
        time_grad: bool = True,
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
        self.time_grad = bool(time_grad)
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
        return hash(
            (
                id(self.module),
                self.call,
                self.in_shape,
                self.out_shape,
                self.dtype,
                self.device,
                self.time_grad,
            )
        )

    def __eq__(self, other):
        return (
            isinstance(other, TorchFunction)
            and other.module is self.module
            and (other.call, other.in_shape, other.out_shape, other.dtype, other.device, other.time_grad)
            == (self.call, self.in_shape, self.out_shape, self.dtype, self.device, self.time_grad)
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

    # --- derivatives (inside the callbacks of the tangent map; see _apply_jvp) -----------------------
    def packed_sizes(self, c_leaves, n_lead: int, nz) -> list[int]:
        """Per-row sizes of the packed tangent: ``[x] + [t] + [float cond leaves]`` (nonzero ones)."""
        sizes = [math.prod(self.in_shape)] if nz[0] else []
        sizes += [1] if nz[1] else []
        sizes += [math.prod(c.shape[n_lead:]) for c, f in zip(c_leaves, nz[2], strict=True) if f]
        return sizes

    def _host_inputs(self, x, t, cond, nz):
        """Torch inputs ``(x, t, cond leaves, cond treedef)`` and the list of differentiated ones."""
        n_lead = x.ndim - len(self.in_shape)
        xt, tt = self._to_torch(x, n_lead), self._to_torch(t, n_lead).reshape(-1)
        leaves, treedef = jax.tree.flatten(cond)
        cts = [self._to_torch(c, n_lead) for c in leaves]
        diff = ([0] if nz[0] else []) + ([1] if nz[1] else [])
        diff += [2 + i for i, f in enumerate(nz[2]) if f]
        return n_lead, [xt, tt, *cts], treedef, diff

    def _call_with(self, inputs, treedef, n_lead):
        xt, tt, *cts = inputs
        cond = None if treedef.num_leaves == 0 and not cts else jax.tree.unflatten(treedef, cts)
        return self._run(xt, tt, cond, n_lead)

    def _unpack(self, b, inputs, diff, n_lead):
        rows = b.shape[0]
        out, start = [], 0
        for i in diff:
            size = math.prod(inputs[i].shape[1:]) if i != 1 else 1
            out.append(b[:, start : start + size].reshape(inputs[i].shape))
            start += size
        del rows
        return out

    def host_jvp(self, x, t, cond, b, *, nz, n):
        r"""``J \dot u`` for the packed tangent ``b (*lead, n)`` by ``torch.func.jvp`` (forward-mode AD);
        falls back to the double-VJP identity ``J v = d/du [(u^T J) v]`` for modules without forward-mode
        formulas. Attention runs on PyTorch's math SDPA kernel here (the fused kernels have no forward-mode
        derivative)."""
        torch = import_torch()
        n_lead, inputs, treedef, diff = self._host_inputs(x, t, cond, nz)
        lead = tuple(x.shape[:n_lead])
        bt = self._to_torch(b, n_lead)
        tangents = self._unpack(bt, inputs, diff, n_lead)

        def f(*args):
            full = list(inputs)
            for i, a in zip(diff, args, strict=True):
                full[i] = a
            return self._call_with(full, treedef, n_lead)

        primals = tuple(inputs[i] for i in diff)
        # fused attention kernels (flash / memory-efficient SDPA) have no forward-mode or double-backward
        # formulas; the math kernel is plain matmuls and softmax, which have both
        attention = importlib.import_module("torch.nn.attention")
        math_sdpa = functools.partial(attention.sdpa_kernel, [attention.SDPBackend.MATH])
        try:
            with math_sdpa():
                _, y_dot = torch.func.jvp(f, primals, tuple(tangents))
        except (RuntimeError, NotImplementedError):  # no forward-mode formula for some op: double VJP
            with torch.enable_grad(), math_sdpa():
                ps = [p.detach().clone().requires_grad_(True) for p in primals]
                y = f(*ps)
                u = torch.zeros_like(y, requires_grad=True)
                g = torch.autograd.grad(y, ps, grad_outputs=u, create_graph=True, allow_unused=True)
                pairs = [(gi, v) for gi, v in zip(g, tangents, strict=True) if gi is not None]
                y_dot = torch.autograd.grad([gi for gi, _ in pairs], u, grad_outputs=[v for _, v in pairs])[0]
        return self._packed_numpy(y_dot.reshape(y_dot.shape[0], -1), lead, n, x.dtype)

    def host_vjp(self, x, t, cond, g, *, nz, n):
        r"""``J^T g`` for the packed cotangent ``g (*lead, n)`` by ``torch.autograd.grad`` (reverse mode),
        packed like the tangent."""
        torch = import_torch()
        n_lead, inputs, treedef, diff = self._host_inputs(x, t, cond, nz)
        lead = tuple(x.shape[:n_lead])
        gt = self._to_torch(g, n_lead)
        rows = gt.shape[0]
        gy = gt[:, : math.prod(self.out_shape)].reshape((rows,) + self.out_shape)
        with torch.enable_grad():
            full = list(inputs)
            for i in diff:
                full[i] = full[i].detach().clone().requires_grad_(True)
            out = self._call_with(full, treedef, n_lead)
            grads = torch.autograd.grad(out, [full[i] for i in diff], grad_outputs=gy, allow_unused=True)
        flat = [
            (torch.zeros_like(full[i]) if gi is None else gi).reshape(rows, -1)
            for i, gi in zip(diff, grads, strict=True)
        ]
        return self._packed_numpy(torch.cat(flat, -1), lead, n, x.dtype)

    @staticmethod
    def _packed_numpy(ten, lead, n, dtype):
        arr = ten.detach().cpu().numpy().astype(np.dtype(dtype), copy=False)
        arr = np.pad(arr, [(0, 0), (0, n - arr.shape[-1])])
        return arr.reshape(lead + (n,))


def _forward_cb(fn: TorchFunction, x, t, cond):
    shape = x.shape[: x.ndim - len(fn.in_shape)] + fn.out_shape
    return jax.pure_callback(
        fn.host_forward, jax.ShapeDtypeStruct(shape, x.dtype), x, t, cond, vmap_method="broadcast_all"
    )


def _is_zero(tangent) -> bool:
    return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


@jax.custom_jvp
def _first_order_only(a):
    """The identity; differentiating it raises: it marks the bridge's residuals (second derivatives of the
    torch model, e.g. ``jax.hessian`` of a functional of a torch score, are not available)."""
    return a


@_first_order_only.defjvp
def _first_order_only_jvp(primals, tangents):
    raise NotImplementedError(
        "Second derivatives through the PyTorch bridge are not available: the bridge gives first "
        "derivatives of the torch model in forward mode (jax.jvp, jacfwd) and reverse mode (jax.grad, "
        "jacrev), but not derivatives of those (e.g. jax.hessian or jacfwd(grad) of a functional of a torch "
        "model's output). The Hessian of log p_t of a TorchScore is the first derivative of its score: use "
        "TorchScore.hessian or jax.jacfwd(score)."
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _apply(fn: TorchFunction, x, t, cond):
    return _forward_cb(fn, x, t, cond)


def _apply_jvp(fn: TorchFunction, primals, tangents):
    r"""``y = f(x, t, c)``, ``\dot y = J_x \dot x + J_t \dot t + J_c \dot c`` (nonzero tangents only).

    The tangent map is a :func:`jax.lax.custom_linear_solve` with the identity as its operator, whose
    ``solve`` is the torch JVP (``torch.func.jvp``) and whose ``transpose_solve`` is the torch VJP
    (``torch.autograd.grad``): JAX transposes it for reverse mode and batches it under ``vmap``. The
    tangents are packed into one flat vector per batch row (padded to ``max(n_in, n_out)``: the solve is
    square)."""
    x, t, cond = primals
    x_dot, t_dot, c_dot = tangents
    y = _apply(fn, x, t, cond)
    n_lead = x.ndim - len(fn.in_shape)
    lead = x.shape[:n_lead]
    c_leaves = jax.tree.leaves(cond)
    c_dots = jax.tree.leaves(c_dot, is_leaf=_is_zero) if cond is not None else []
    c_nz = tuple(
        bool(jnp.issubdtype(c.dtype, jnp.floating)) and not _is_zero(cd) and cd.dtype != jax.dtypes.float0
        for c, cd in zip(c_leaves, c_dots, strict=True)
    )
    nz = (not _is_zero(x_dot), not _is_zero(t_dot), c_nz)
    if nz[1] and not fn.time_grad:
        raise ValueError(
            "d/dt through the PyTorch bridge: the model takes integer timesteps of a discrete schedule "
            '(time_input="timestep"), where a derivative in time is not defined; differentiate in x only, '
            'or wrap a model whose time input is continuous ("t", "log_snr", "sigma").'
        )
    if not (nz[0] or nz[1] or any(c_nz)):
        return y, jnp.zeros_like(y)
    sizes = fn.packed_sizes(c_leaves, n_lead, nz)
    n = max(sum(sizes), math.prod(fn.out_shape))
    parts = []
    if nz[0]:
        parts.append(x_dot.reshape(lead + (-1,)))
    if nz[1]:
        parts.append(jnp.broadcast_to(t_dot, lead).reshape(lead + (1,)))
    parts += [cd.reshape(lead + (-1,)) for cd, f in zip(c_dots, c_nz, strict=True) if f]
    b = jnp.concatenate([p.astype(x.dtype) for p in parts], -1)
    b = jnp.pad(b, [(0, 0)] * n_lead + [(0, n - b.shape[-1])])
    res = jax.tree.map(_first_order_only, (x, t, cond))
    packed = jax.ShapeDtypeStruct(b.shape, b.dtype)

    def solve(_, rhs):
        return jax.pure_callback(
            functools.partial(fn.host_jvp, nz=nz, n=n), packed, *res, rhs, vmap_method="broadcast_all"
        )

    def transpose_solve(_, cot):
        return jax.pure_callback(
            functools.partial(fn.host_vjp, nz=nz, n=n), packed, *res, cot, vmap_method="broadcast_all"
        )

    out = jax.lax.custom_linear_solve(lambda v: v, b, solve, transpose_solve)
    y_dot = out[..., : math.prod(fn.out_shape)].reshape(y.shape)
    return y, y_dot


_apply.defjvp(_apply_jvp, symbolic_zeros=True)


class TorchScore(CallableScore):
    r"""A PyTorch denoiser as a diffsim score through the bridge (:class:`TorchFunction`).

    ``TorchScore(module, process, event_shape, parametrisation=..., time_input=..., cond=..., dtype=...,
    device=..., call=...)``: the module is called as ``call(module, x (B, *event_shape), t_in (B,)[, cond
    (B, ...)])`` in torch (default ``module(x, t_in[, cond])``, ``.sample`` taken for diffusers outputs),
    with ``t_in`` per ``time_input`` (see :class:`CallableScore`). Each ``vmap``-ed score evaluation over
    ``N`` particles is one torch forward with batch ``N``; ``jax.grad`` through the score is one torch
    backward (``torch.autograd``).

    :meth:`hessian` uses reverse mode (``jax.jacrev``: one batched torch backward of size ``d``); forward
    mode (``jax.jacfwd``, one batched ``torch.func.jvp``) gives the same. Two TorchScores of one module that
    differ only in ``cond`` form a classifier-free guidance pair evaluated in one torch call of the doubled
    batch (:meth:`_guidance_pair`).

    Args:
        module: the ``torch.nn.Module`` denoiser (any object when ``call`` is given).
        process: the diffsim process the model was trained on.
        event_shape: the shape of one state, e.g. ``(C, H, W)`` (an int ``d`` means ``(d,)``).
        parametrisation: what the module predicts: ``"eps"`` (default), ``"x0"``, ``"score"`` or ``"v"``.
        time_input: ``"t"`` (default), ``"log_snr"``, ``"sigma"`` or ``"timestep"`` (the last is not
            differentiable in time).
        cond: optional conditioning, a pytree of arrays for one instance, broadcast to the batch.
        dtype: ``"float32"`` (default) or ``"float64"``; the module's parameters and the states must have it.
        device: the torch device; ``None`` takes the device of the module's first parameter.
        call: ``call(module, x, t_in, cond) -> tensor``; ``None`` calls ``module(x, t_in[, cond])``.
        num_train_timesteps: ``N`` for ``time_input="timestep"`` (default: from a discrete process).
        check: call the model once on a probe batch of two points at construction.
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
        fn = TorchFunction(
            module, event_shape, call=call, dtype=dtype, device=device, time_grad=time_input != "timestep"
        )
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

    # --- classifier-free guidance pair protocol (see diffsim.scores.guidance._joint) ------------------
    def _pairs_with(self, unconditional: Any) -> bool:
        """Two TorchScores of one module (same call, shapes, dtype, device, process, parametrisation and
        time input) that differ only in ``cond`` (same structure, shapes and dtypes): one torch call of the
        doubled batch serves both branches, as in diffusers' pipelines."""
        if type(unconditional) is not type(self) or unconditional.fn != self.fn:
            return False
        same = (
            unconditional.event_shape == self.event_shape
            and unconditional.parametrisation == self.parametrisation
            and unconditional.time_input == self.time_input
            and unconditional.num_train_timesteps == self.num_train_timesteps
            and unconditional.timestep_snap == self.timestep_snap
            and (
                unconditional.process is self.process
                or bool(eqx.tree_equal(unconditional.process, self.process))
            )
        )
        if not same or self.cond is None or unconditional.cond is None:
            return False
        spec = lambda c: jax.tree.map(lambda a: (a.shape, a.dtype), c)  # noqa: E731
        return jax.tree.structure(self.cond) == jax.tree.structure(unconditional.cond) and spec(
            self.cond
        ) == spec(unconditional.cond)

    def _guidance_pair(self, unconditional: Any, scale: Array, t: ArrayLike, x: Array, kind: str) -> Array:
        r"""``u + w (c - u)`` of the prediction ``kind`` from ONE torch call on the doubled batch
        ``[x, x]`` with conditions ``[cond_u, cond_c]`` (under ``vmap`` over ``N`` particles: one call of
        batch ``2N``). Each row is converted exactly as :meth:`score` / :meth:`denoise` / :meth:`eps` /
        :meth:`v_prediction` convert a single branch's output."""
        t_given, t = t, jnp.asarray(t, dtype=x.dtype)
        xb = jnp.broadcast_to(x, (2,) + x.shape).reshape((2,) + self.event_shape)
        tb = jnp.broadcast_to(self.model_time(t).astype(x.dtype), (2,))
        cond = jax.tree.map(lambda u, c: jnp.stack([u, c]), unconditional.cond, self.cond)
        pred = self.fn(xb, tb, cond).reshape(2, self.dim).astype(x.dtype)

        def one(p):
            if kind == "score" and self.parametrisation == "score":
                return p
            x0, eps = prediction_to_x0_eps(self.process, t, x, p, self.parametrisation)
            if kind == "x0":
                return x0
            if kind == "eps":
                return eps
            score = p if self.parametrisation == "score" else -eps / self.process.sigma(t).astype(x.dtype)
            return score if kind == "score" else v_from_score(self.process, t_given, x, score)

        u, c = one(pred[0]), one(pred[1])
        return u + scale.astype(x.dtype) * (c - u)
