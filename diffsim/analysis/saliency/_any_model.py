r"""Saliency of any conditional model at one step of the sampler, on its latent (or pixel) grid: masking
(DF-RISE done right), gradients through the model's vector-Jacobian product, and insertion/deletion games.

Source: Park, Ju & Lee, "Explaining generative diffusion models via visual analysis for interpretable
decision-making process" (ESWA 248, 2024; code ``ian-jihoonpark/X-Diffusion``), with RISE's smooth masks
(Petsiuk, Das & Saenko, BMVC 2018) and gradient saliency (Simonyan, Vedaldi & Zisserman 2014).

**What is explained** at a fixed time ``t`` (diffsim's forward time) is a function of the noisy state
``x_t`` built from any diffsim scores (:func:`prediction_fn`):

- ``target="prediction"``: the model's prediction ``f(x_t) = x0_hat(t, x_t | c)`` (or ``eps_hat``) of the
  score ``c`` (a conditional score, ``pipe.score(prompt)``, a guided pair);
- ``target="effect"``: the conditioning's effect ``f(x_t) = x0_hat(t, x_t | c) - x0_hat(t, x_t | u)``
  against an unconditional (or negative-prompt) score ``u``; for a classifier-free guided score
  ``u + w (c - u)`` the branches are taken from it. A pixel that the condition does not act on has
  ``f`` independent of it.

**Grid.** A state of event shape ``(C, H, W)`` (latents) is flat of length ``d = C H W``; masks live on the
``H x W`` grid and are shared by the channels (as DF-RISE's), maps are ``(H, W)``. A flat model ``(d,)`` is
a ``1 x d`` strip.

**Maps.**

- masking (:func:`model_masking_saliency`): masks ``M_i`` (RISE-smooth or Bernoulli, mean ``p``), inputs
  ``M_i x + (1 - M_i) b``, scores ``s_i = -mean (f(M_i x + (1 - M_i) b) - f(x))^2`` between like quantities,
  and ``S = 1/(N p) sum_i M_i (s_i - s_bar)`` (:func:`diffsim.analysis.saliency.masking_saliency`);
- gradient (:func:`gradient_saliency`): ``S = sum_channels |dJ/dx_t|`` for a scalar objective of the
  prediction, ``J = phi(f(x_t))`` (a classifier's logit of ``x0_hat``, or the effect energy
  ``1/2 |f|^2`` by default), by ONE reverse-mode pass ``jax.vjp`` (through a torch model this is the
  adapter's custom VJP: ``torch.autograd`` in the backward pass);
- insertion/deletion (:func:`model_insertion_deletion`): pixels revealed or removed (all channels at once)
  in saliency order, the fidelity ``1 - |f(x') - f(x)|^2 / |f(b) - f(x)|^2`` and its normalised AUC per
  sample (:func:`diffsim.analysis.saliency.insertion_deletion`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import as_float_array, check_key, check_positive_int
from ...scores._base import AbstractScore
from ...scores.guidance import ClassifierFreeGuidance
from .._concept_checks import _check_time
from ._fns import ConditionalFn
from ._insertion_deletion import InsertionDeletion, insertion_deletion
from ._maps import bernoulli_masks, masking_saliency, smooth_masks


__all__ = [
    "ConditionEffectFn",
    "GradientSaliency",
    "gradient_saliency",
    "latent_grid",
    "model_insertion_deletion",
    "model_masking_saliency",
    "prediction_fn",
]

_TARGETS = ("prediction", "effect")


class ConditionEffectFn(eqx.Module):
    r"""``x_t -> x0_hat(t, x_t | c) - x0_hat(t, x_t | u)`` (or the ``eps_hat`` difference): the
    conditioning's effect on the prediction at a fixed time (see :func:`prediction_fn`).

    Attributes:
        conditional: the conditional score ``c``.
        unconditional: the unconditional (or negative-prompt) score ``u``.
        t: the fixed time, a scalar array.
        output: ``"x0"`` for the ``x0_hat`` difference, anything else for the ``eps_hat`` difference.
    """

    conditional: AbstractScore
    unconditional: AbstractScore
    t: Array
    output: str = eqx.field(static=True)

    def __call__(self, x):
        t = self.t.astype(x.dtype)
        if self.output == "x0":
            return self.conditional.denoise(t, x) - self.unconditional.denoise(t, x)
        return self.conditional.eps(t, x) - self.unconditional.eps(t, x)


def latent_grid(score: AbstractScore, event_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of a score's states: its ``event_shape`` (or the one given; ``(C, H, W)``, ``(H, W)``
    or ``(d,)``, the last a ``1 x d`` strip).

    Args:
        score: the score (its ``event_shape``, or its conditional branch's for a guided score).
        event_shape: an explicit shape holding ``score.dim`` values; ``None`` (default) reads the score's,
            and a score without one is a ``(d,)`` strip. Leading axes of a longer shape merge into ``C``.
    """
    d = score.dim
    shape = event_shape if event_shape is not None else getattr(score, "event_shape", None)
    if shape is None and isinstance(score, ClassifierFreeGuidance):
        shape = getattr(score.conditional, "event_shape", None)
    shape = (d,) if shape is None else tuple(int(s) for s in shape)
    if math.prod(shape) != d or not shape or min(shape) < 1:
        raise ValueError(f"`event_shape` {shape} does not hold the score's dimension {d}.")
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return math.prod(shape[:-2]), shape[-2], shape[-1]


def prediction_fn(
    score: AbstractScore,
    t: float | Float[ArrayLike, ""],
    *,
    target: str = "prediction",
    unconditional: AbstractScore | None = None,
    output: str = "x0",
) -> ConditionalFn | ConditionEffectFn:
    r"""The function of ``x_t`` whose saliency is mapped (module docstring).

    Args:
        score: the (conditional) score, e.g. ``pipe.score(prompt)`` or a guided pair.
        t: the analysed time, inside ``(0, t_max]`` of the score's process.
        target: ``"prediction"`` (``x0_hat`` or ``eps_hat`` of ``score``) or ``"effect"`` (its difference
            from ``unconditional``).
        unconditional: the unconditional score for ``target="effect"`` (default: the unconditional branch
            of a :class:`~diffsim.scores.ClassifierFreeGuidance`, whose conditional branch is then used).
        output: ``"x0"`` or ``"eps"``.

    Returns:
        An equinox module ``f(x) -> (d,)`` (a pytree: changing ``t`` does not recompile).
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim AbstractScore, got {type(score).__name__}.")
    if target not in _TARGETS:
        raise ValueError(f"`target` must be one of {_TARGETS}, got {target!r}.")
    if output not in ("x0", "eps"):
        raise ValueError(f"`output` must be 'x0' or 'eps', got {output!r}.")
    tt = jnp.asarray(_check_time(score.process, t), jnp.result_type(float))
    if target == "prediction":
        return ConditionalFn(score, tt, output)
    cond = score
    if unconditional is None:
        if not isinstance(score, ClassifierFreeGuidance):
            raise ValueError(
                "target='effect' needs `unconditional` (the score without the condition), or a "
                "ClassifierFreeGuidance `score` whose branches are used."
            )
        cond, unconditional = score.conditional, score.unconditional
    if not isinstance(unconditional, AbstractScore):
        raise TypeError(
            f"`unconditional` must be a diffsim AbstractScore, got {type(unconditional).__name__}."
        )
    if unconditional.dim != cond.dim:
        raise ValueError(f"`unconditional` has dimension {unconditional.dim}, `score` {cond.dim}.")
    return ConditionEffectFn(cond, unconditional, tt, output)


def _grid_masks(masks, n_masks, key, kind, cells, p, chw) -> Array:
    c, h, w = chw
    if masks is None:
        key = check_key(key)
        n_masks = check_positive_int(n_masks, "n_masks", minimum=2)
        if kind == "smooth":
            if len(tuple(cells)) != 2:
                raise ValueError(f"`cells` must be (rows, cols), got {tuple(cells)}.")
            m = smooth_masks(key, n_masks, (h, w), tuple(int(v) for v in cells), p)
        elif kind == "bernoulli":
            m = bernoulli_masks(key, n_masks, (h, w), p)
        else:
            raise ValueError(f"`kind` must be 'smooth' or 'bernoulli', got {kind!r}.")
    else:
        m = jnp.asarray(masks)
        if m.ndim != 3 or tuple(m.shape[1:]) != (h, w):
            raise ValueError(
                f"`masks` must have shape (N, {h}, {w}) (the latent grid), got {tuple(m.shape)}."
            )
    return jnp.broadcast_to(m[:, None], (m.shape[0], c, h, w)).reshape(m.shape[0], c * h * w)


def model_masking_saliency(
    score: AbstractScore,
    t: float,
    x: Float[ArrayLike, " d"],
    key: jax.Array | None = None,
    *,
    target: str = "prediction",
    unconditional: AbstractScore | None = None,
    output: str = "x0",
    masks: ArrayLike | None = None,
    n_masks: int = 256,
    kind: str = "smooth",
    cells: Sequence[int] = (4, 4),
    p: float = 0.5,
    baseline: float | ArrayLike = 0.0,
    event_shape: Sequence[int] | None = None,
    centred: bool = True,
    batch_size: int = 64,
) -> Float[Array, "H W"]:
    r"""Masking (DF-RISE done right) saliency of any model's prediction or conditioning effect at time ``t``
    and state ``x`` on its ``H x W`` grid (module docstring).

    Args:
        score: the (conditional) score.
        t: the analysed time.
        x: the state ``x_t`` ``(d,)`` (flat).
        key: PRNG key for the masks (unless ``masks`` are given).
        target: ``"prediction"`` or ``"effect"`` (see :func:`prediction_fn`).
        unconditional: the unconditional score for ``target="effect"``.
        output: ``"x0"`` or ``"eps"``.
        masks: optional masks ``(N, H, W)`` with values in ``[0, 1]``.
        n_masks: number of masks drawn.
        kind: ``"smooth"`` (RISE: a ``cells`` grid of Bernoulli values upsampled bilinearly, randomly
            shifted) or ``"bernoulli"`` (per pixel, DF-RISE's).
        cells: the coarse grid of the smooth masks.
        p: the masks' mean.
        baseline: the value masked pixels take (scalar or ``(d,)``).
        event_shape: the states' shape when the score does not carry one.
        centred: subtract the mean score (covariance form; a pixel without influence scores 0 up to
            Monte-Carlo error).
        batch_size: masked inputs per model call.

    Returns:
        The saliency map ``(H, W)`` (masks are shared by the channels).
    """
    fn = prediction_fn(score, t, target=target, unconditional=unconditional, output=output)
    chw = latent_grid(score, event_shape)
    xv = as_float_array(x, "x", ndim=1)
    if xv.shape[0] != math.prod(chw):
        raise ValueError(f"`x` must be one flat state of shape ({math.prod(chw)},), got {xv.shape}.")
    flat = _grid_masks(masks, n_masks, key, kind, cells, p, chw)
    s = masking_saliency(
        fn,
        xv,
        masks=flat,
        p=p,
        baseline=baseline,
        score="mse",
        centred=centred,
        batch_size=batch_size,
    )
    c, h, w = chw
    return s.reshape(c, h, w).mean(0)


class GradientSaliency(eqx.Module):
    """Gradient saliency (numpy; returned by :func:`gradient_saliency`).

    Attributes:
        gradient: ``(d,)`` ``dJ/dx_t``.
        map: ``(H, W)`` the sum over channels of ``|dJ/dx_t|``.
        objective: the value ``J(x_t)``.
    """

    gradient: np.ndarray
    map: np.ndarray
    objective: float


def _energy(v):
    return 0.5 * jnp.sum(v**2)


def gradient_saliency(
    score: AbstractScore,
    t: float,
    x: Float[ArrayLike, " d"],
    *,
    objective: Callable[[Array], Array] | None = None,
    target: str = "prediction",
    unconditional: AbstractScore | None = None,
    output: str = "x0",
    event_shape: Sequence[int] | None = None,
) -> GradientSaliency:
    r"""Gradient saliency ``S = sum_channels |dJ/dx_t|`` of a scalar objective of the model's prediction,
    ``J(x_t) = objective(f(x_t))`` with ``f`` from :func:`prediction_fn`, by one ``jax.vjp`` (reverse mode;
    through a torch model the adapter's custom VJP runs ``torch.autograd``). By the chain rule, for the
    prediction ``x0_hat = (x + sigma^2 grad log p_t) / alpha`` the gradient is
    ``(I + sigma^2 H_t)^T grad objective / alpha`` with ``H_t`` the Hessian of ``log p_t``.

    Args:
        score: the (conditional) score.
        t: the analysed time.
        x: the state ``x_t`` ``(d,)``.
        objective: ``phi(f) -> scalar`` on the flat prediction ``(d,)`` (e.g. a classifier's logit of
            ``x0_hat``); default the energy ``1/2 |f|^2`` (with ``target="effect"``: the conditioning's
            effect energy).
        target: ``"prediction"`` or ``"effect"``.
        unconditional: the unconditional score for ``target="effect"``.
        output: ``"x0"`` or ``"eps"``.
        event_shape: the states' shape when the score does not carry one.

    Returns:
        :class:`GradientSaliency`.
    """
    fn = prediction_fn(score, t, target=target, unconditional=unconditional, output=output)
    chw = latent_grid(score, event_shape)
    xv = as_float_array(x, "x", ndim=1)
    if xv.shape[0] != math.prod(chw):
        raise ValueError(f"`x` must be one flat state of shape ({math.prod(chw)},), got {xv.shape}.")
    obj = _energy if objective is None else objective
    if not callable(obj):
        raise TypeError(f"`objective` must be callable phi(f) -> scalar, got {type(obj).__name__}.")
    shape = jax.eval_shape(lambda v: obj(fn(v)), xv).shape
    if shape != ():
        raise ValueError(f"`objective` must return a scalar, got shape {shape}.")
    value, grad = _vjp_core(fn, obj, xv)
    g = np.asarray(grad)
    if not np.all(np.isfinite(g)):
        raise ValueError("The gradient has non-finite values (check the model at this time and state).")
    c, h, w = chw
    return GradientSaliency(g, np.abs(g).reshape(c, h, w).sum(0), float(value))


@eqx.filter_jit
def _vjp_core(fn, obj, xv):
    value, pullback = jax.vjp(lambda v: obj(fn(v)), xv)
    (grad,) = pullback(jnp.ones_like(value))
    return value, grad


def model_insertion_deletion(
    score: AbstractScore,
    t: float,
    x: Float[ArrayLike, "N d"],
    saliency: Mapping[str, ArrayLike],
    key: jax.Array,
    *,
    mode: str = "insertion",
    target: str = "prediction",
    unconditional: AbstractScore | None = None,
    output: str = "x0",
    baseline: float | ArrayLike = 0.0,
    pixels_per_step: int = 1,
    n_random: int = 8,
    oracle: bool = False,
    event_shape: Sequence[int] | None = None,
) -> InsertionDeletion:
    r"""Insertion or deletion game for any model's prediction (or conditioning effect) at time ``t``, with
    maps on its ``H x W`` grid: pixels (all channels) are revealed or removed in decreasing saliency,
    fidelity ``1 - |f(x') - f(x)|^2 / |f(b) - f(x)|^2``, normalised trapezoid AUC per sample, random-order
    floor (and, with ``oracle``, the greedy ceiling: ``4 K d`` model calls per sample, for small models).
    With several channels the random and greedy orders move single entries, the maps' orders whole pixels.

    Args:
        score: the (conditional) score.
        t: the analysed time.
        x: states ``(N, d)``.
        saliency: ``{method: maps (N, H, W)}``.
        key: PRNG key (random orders).
        mode: ``"insertion"`` or ``"deletion"``.
        target: ``"prediction"`` or ``"effect"``.
        unconditional: the unconditional score for ``target="effect"``.
        output: ``"x0"`` or ``"eps"``.
        baseline: the value of removed pixels.
        pixels_per_step: grid pixels revealed per step.
        n_random: random orders per sample.
        oracle: compute the greedy oracle ceiling.
        event_shape: the states' shape when the score does not carry one.

    Returns:
        :class:`~diffsim.analysis.saliency.InsertionDeletion` (AUCs per sample and their summary).
    """
    fn = prediction_fn(score, t, target=target, unconditional=unconditional, output=output)
    c, h, w = latent_grid(score, event_shape)
    xs = as_float_array(x, "x", ndim=2)
    n = xs.shape[0]
    if xs.shape[1] != c * h * w:
        raise ValueError(f"`x` must have shape (N, {c * h * w}), got {xs.shape}.")
    if not isinstance(saliency, Mapping) or not saliency:
        raise TypeError("`saliency` must be a non-empty mapping {method name: maps (N, H, W)}.")
    flat = {}
    for name, maps in saliency.items():
        s = np.asarray(maps, float)
        if s.shape == (n, h * w):
            s = s.reshape(n, h, w)
        if s.shape != (n, h, w):
            raise ValueError(f"saliency[{name!r}] must have shape ({n}, {h}, {w}), got {s.shape}.")
        flat[name] = np.broadcast_to(s[:, None], (n, c, h, w)).reshape(n, c * h * w)
    step = check_positive_int(pixels_per_step, "pixels_per_step")
    return insertion_deletion(
        fn,
        xs,
        flat,
        key,
        mode=mode,
        baseline=baseline,
        stride=step * c,
        n_random=n_random,
        oracle=oracle,
    )
