r"""Guidance-scale sweeps on any model: confidence under a user classifier and output diversity, for DDPM
and DDIM (Wu, Chen, Li, Wang & Wei, ICML 2024, "Theoretical insights for diffusion guidance: a case
study for Gaussian mixture models"; measured on real models as in Ho & Salimans 2022 and Dhariwal &
Nichol 2021).

The guided score is a :class:`~diffsim.scores.ClassifierFreeGuidance` (``s_u + w (s_c - s_u)``) or a
:class:`~diffsim.scores.ClassifierGuidance` (``s + w \nabla log p_t(y|x)``) of any diffsim score: a
mixture, a network, an adapted JAX callable or a PyTorch / diffusers model. Its scale ``w`` is an array
leaf, so for a JAX model the whole sweep runs as one ``vmap``-ed compiled call per sampler
(:func:`diffsim.sampling.sweep_fn`); a model behind ``jax.pure_callback`` (PyTorch) runs a loop over the
scales instead, one compilation for the loop.

For each sampler and scale, with outputs ``X_1 .. X_N`` (flat states, ``d`` coordinates), the user
classifier's probability ``p_i = softmax(f(X_i))_y`` of the target ``y`` and features ``phi(X_i)``
(``F`` coordinates):

- confidence ``mean_i p_i`` and the target fraction ``mean_i 1[argmax f(X_i) = y]`` (standard errors
  ``sd / sqrt(N)``);
- diversity: the Kozachenko-Leonenko entropy of the features
  ``H = psi(N) - psi(k) + log V_F + (F / N) sum_i log rho_{k,i}``
  (:func:`diffsim.analysis.entropy.knn_entropy`), with the standard error
  ``F sd_i(log rho_{k,i}) / sqrt(N)`` (the spread of the per-point terms; it ignores their weak
  dependence), and the per-coordinate variance ``(1 / d) sum_j Var_i(X_{ij})`` (unbiased sample
  variance) of the outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import check_key, check_positive_int
from ...sampling import get_sampler, grids as _grids, simulate, sweep_fn
from ...scores._base import AbstractScore
from ...scores.adapters._torch import TorchFunction
from ...scores.guidance import (
    AbstractNoisyClassifier,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    check_scale,
)
from ..entropy import knn_distances, knn_entropy


__all__ = ["ModelGuidanceSweep", "model_guidance_sweep"]

#: the sampler names of the two dynamics of Wu et al. (reverse SDE and probability-flow ODE)
DEFAULT_SAMPLERS = ("ddpm", "ddim")


class ModelGuidanceSweep(eqx.Module):
    """Result of :func:`model_guidance_sweep`; arrays are indexed ``[sampler, scale]``.

    Attributes:
        samplers: sampler names (axis 0, ``S`` of them).
        scales: diffsim guidance scales ``w`` (axis 1, ``W`` of them).
        target: the class whose confidence is measured.
        confidence: mean target probability under the user classifier, shape ``(S, W)``.
        confidence_se: its standard error.
        target_fraction: fraction of outputs classified as ``target``, shape ``(S, W)``.
        target_fraction_se: its standard error.
        knn_entropy: Kozachenko-Leonenko entropy (nats) of the features, shape ``(S, W)``.
        knn_entropy_se: its standard error.
        pixel_variance: per-coordinate sample variance of the outputs, averaged over coordinates.
        feature_dim: ``F``, the dimension of the features the kNN entropy is computed on.
        knn_k: the neighbour order of the kNN entropy.
        n: outputs per (sampler, scale).
        vectorised: whether the sweep ran as one ``vmap``-ed call.
        target_probability: per-output target probability ``(S, W, N)`` (common random numbers across
            scales, so pathwise comparisons are meaningful).
        samples: the outputs ``(S, W, N, d)`` when kept, else ``None``.
    """

    samplers: tuple[str, ...]
    scales: np.ndarray
    target: int
    confidence: np.ndarray
    confidence_se: np.ndarray
    target_fraction: np.ndarray
    target_fraction_se: np.ndarray
    knn_entropy: np.ndarray
    knn_entropy_se: np.ndarray
    pixel_variance: np.ndarray
    feature_dim: int
    knn_k: int
    n: int
    vectorised: bool
    target_probability: np.ndarray = dataclasses.field(repr=False)
    samples: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def index(self, sampler: str) -> int:
        """Axis-0 index of ``sampler``."""
        if sampler not in self.samplers:
            raise KeyError(f"`sampler` {sampler!r} is not in this sweep ({list(self.samplers)}).")
        return self.samplers.index(sampler)

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers (no per-output arrays) as JSON-able values, per sampler."""
        names = (
            "confidence",
            "confidence_se",
            "target_fraction",
            "target_fraction_se",
            "knn_entropy",
            "knn_entropy_se",
            "pixel_variance",
        )
        return {
            "scales": self.scales.tolist(),
            "target": self.target,
            "n": self.n,
            "feature_dim": self.feature_dim,
            "knn_k": self.knn_k,
            "samplers": {
                s: {q: np.asarray(getattr(self, q))[i].tolist() for q in names}
                for i, s in enumerate(self.samplers)
            },
        }


# =====================================================================================================
# checks
# =====================================================================================================
def _check_scales(scales: Any) -> np.ndarray:
    if isinstance(scales, (str, bytes)):
        raise TypeError(f"`scales` must be a sequence of guidance scales w, got {type(scales).__name__}.")
    try:
        ws = np.asarray(scales, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`scales` must be a sequence of numbers (guidance scales w): {err}") from None
    if ws.ndim != 1 or ws.size < 1:
        raise ValueError(
            f"`scales` must be a non-empty 1-D sequence of guidance scales w, got shape {ws.shape}."
        )
    check_scale(ws, "scales")
    return ws


def _check_samplers(samplers: Any) -> tuple[str, ...]:
    if isinstance(samplers, str) or not isinstance(samplers, Sequence) or not samplers:
        raise TypeError(f"`samplers` must be a non-empty sequence of sampler names, got {samplers!r}.")
    out = []
    for s in samplers:
        if not isinstance(s, str):
            raise TypeError(f"`samplers` entries must be sampler names, got {type(s).__name__}.")
        try:
            get_sampler(s)
        except ValueError as err:
            raise ValueError(f"`samplers`: {err}") from None
        out.append(s)
    if len(set(out)) != len(out):
        raise ValueError(f"`samplers` must not repeat a sampler, got {out}.")
    return tuple(out)


def _check_guided(guided: Any) -> AbstractScore:
    if not isinstance(guided, (ClassifierFreeGuidance, ClassifierGuidance)):
        raise TypeError(
            "`guided` must be a diffsim.scores.ClassifierFreeGuidance (unconditional and conditional score) "
            f"or ClassifierGuidance (base score and noisy classifier), got {type(guided).__name__}."
        )
    return guided


def _uses_callback(tree: Any) -> bool:
    """Whether a model behind ``jax.pure_callback`` (the PyTorch bridge) is inside ``tree``."""
    leaves = jax.tree.leaves(tree, is_leaf=lambda v: isinstance(v, TorchFunction))
    return any(isinstance(v, TorchFunction) for v in leaves)


def _event_shape(guided: AbstractScore, event_shape: Any) -> tuple[int, ...]:
    if event_shape is None:
        event_shape = getattr(guided, "event_shape", None)
        if event_shape is None:
            for branch in ("conditional", "unconditional", "base"):
                event_shape = getattr(getattr(guided, branch, None), "event_shape", None)
                if event_shape is not None:
                    break
    if event_shape is None:
        return (guided.dim,)
    shape = tuple(int(s) for s in event_shape)
    if int(np.prod(shape)) != guided.dim:
        raise ValueError(
            f"`event_shape` {shape} has {int(np.prod(shape))} entries, the score d={guided.dim}."
        )
    return shape


# =====================================================================================================
# sampling
# =====================================================================================================
def _with_scale(guided, scale):
    return eqx.tree_at(lambda g: g.scale, guided, jnp.asarray(scale, guided.scale.dtype))


def _sample_at_scale(scale, guided, method, grid, key, x, final_denoise):
    """Outputs of ``method`` from ``x`` with ``guided`` at scale ``scale`` (one sweep point; module level so
    that :func:`sweep_fn` reuses its compilation)."""
    return simulate(_with_scale(guided, scale), method, grid, x=x, key=key, final_denoise=final_denoise).x


def _swept_samples(guided, method, grid, key, x, final_denoise, ws, vectorise):
    if vectorise:
        fn = sweep_fn(_sample_at_scale, in_axes=(0, None, None, None, None, None, None))
        return np.asarray(fn(jnp.asarray(ws), guided, method, grid, key, x, final_denoise))
    return np.stack(
        [np.asarray(_sample_at_scale(float(w), guided, method, grid, key, x, final_denoise)) for w in ws]
    )


def _state_dtype(guided, dtype) -> Any:
    """The particles' dtype: ``dtype``, else a PyTorch model's own dtype, else the default float."""
    if dtype is not None:
        return jnp.dtype(dtype)
    leaves = jax.tree.leaves(guided, is_leaf=lambda v: isinstance(v, TorchFunction))
    for v in leaves:
        if isinstance(v, TorchFunction):
            return jnp.dtype(v.dtype)
    return jnp.dtype(jnp.result_type(float))


# =====================================================================================================
# measurements
# =====================================================================================================
def _logits(classifier, x: np.ndarray, event_shape, t_eval: float) -> np.ndarray:
    n = x.shape[0]
    if isinstance(classifier, AbstractNoisyClassifier):
        xs = jnp.asarray(x)
        t = jnp.full((n,), t_eval, xs.dtype)
        out = np.asarray(jax.vmap(classifier.log_probs)(t, xs))
    else:
        out = np.asarray(classifier(jnp.asarray(x.reshape((n, *event_shape)))))
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise ValueError(
            f"`classifier` must return logits of shape (batch, n_classes >= 2) = ({n}, C), got {out.shape}."
        )
    if not np.issubdtype(out.dtype, np.floating) or not np.all(np.isfinite(out)):
        raise ValueError("`classifier` returned non-finite or non-float logits.")
    return out.astype(np.float64)


def _features(features, x: np.ndarray, event_shape) -> np.ndarray:
    n = x.shape[0]
    if features is None:
        return x
    out = np.asarray(features(jnp.asarray(x.reshape((n, *event_shape)))))
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"`features` must return an array of shape (batch, F) = ({n}, F), got {out.shape}.")
    if not np.all(np.isfinite(out)):
        raise ValueError("`features` returned non-finite values.")
    return out


def _knn(feats: np.ndarray, k: int) -> tuple[float, float]:
    f = jnp.asarray(feats)
    h = float(knn_entropy(f, k, ties="resolution"))
    rho = np.asarray(knn_distances(f, k), np.float64)[:, k - 1]
    res = np.finfo(np.asarray(f).dtype).eps * (1.0 + np.max(np.abs(np.asarray(feats, np.float64)), axis=1))
    terms = feats.shape[1] * np.log(np.maximum(rho, res))
    return h, float(terms.std(ddof=1) / np.sqrt(terms.size))


def _measure(x, classifier, target, features, event_shape, t_eval, k):
    logits = _logits(classifier, x, event_shape, t_eval)
    if target >= logits.shape[1]:
        raise ValueError(f"`target` {target} is out of range: the classifier has {logits.shape[1]} classes.")
    logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
    p = np.exp(np.asarray(logp)[:, target])
    hit = (np.argmax(logits, axis=1) == target).astype(np.float64)
    feats = _features(features, x, event_shape)
    h, h_se = _knn(feats, k)
    root_n = np.sqrt(x.shape[0])
    return {
        "confidence": float(p.mean()),
        "confidence_se": float(p.std(ddof=1) / root_n),
        "target_fraction": float(hit.mean()),
        "target_fraction_se": float(hit.std(ddof=1) / root_n),
        "knn_entropy": h,
        "knn_entropy_se": h_se,
        "pixel_variance": float(np.mean(np.var(np.asarray(x, np.float64), axis=0, ddof=1))),
        "feature_dim": int(feats.shape[1]),
        "probability": p,
    }


# =====================================================================================================
# the sweep
# =====================================================================================================
def model_guidance_sweep(
    guided: ClassifierFreeGuidance | ClassifierGuidance,
    scales: Sequence[float] | Float[ArrayLike, " W"],
    classifier: AbstractNoisyClassifier | Callable[[Array], Array],
    target: int,
    *,
    key: jax.Array,
    n: int = 1_000,
    grid: Float[ArrayLike, " T"] | int = 100,
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    features: Callable[[Array], Array] | None = None,
    event_shape: Sequence[int] | None = None,
    classifier_time: float | None = None,
    final_denoise: bool = False,
    knn_k: int = 1,
    vectorise: bool | None = None,
    keep_samples: bool = False,
    dtype: Any = None,
) -> ModelGuidanceSweep:
    r"""Confidence and diversity of guided samples of any model, for each guidance scale and sampler.

    For each diffsim guidance scale ``w`` in ``scales`` (``s_u + w (s_c - s_u)`` for classifier-free
    guidance, Ho & Salimans 2022; ``s + w \nabla log p_t(y|x)`` for classifier guidance, Dhariwal & Nichol
    2021; Wu et al. 2024's ``eta = w - 1``) and each sampler (default DDPM, the reverse SDE, and DDIM, the
    probability-flow ODE), ``n`` outputs are drawn from the prior with the same ``key`` (common random
    numbers across scales and samplers) and measured (module docstring):

    - confidence ``E[p(y|X)]`` and target fraction ``P(argmax f(X) = y)`` under ``classifier``;
    - kNN entropy ``H(phi(X))`` of the features and per-coordinate variance ``(1/d) sum_j Var(X_j)``.

    Args:
        guided: a :class:`~diffsim.scores.ClassifierFreeGuidance` or
            :class:`~diffsim.scores.ClassifierGuidance` of any scores (its own ``scale`` is replaced by each
            swept scale), e.g. ``DiffusersPipeline.guided(prompt, 1.0)``.
        scales: guidance scales ``w >= 0`` (finite).
        classifier: the measuring classifier: an :class:`~diffsim.scores.guidance.AbstractNoisyClassifier`
            (evaluated at ``classifier_time``) or any callable mapping a batch ``(B, *event_shape)`` to
            logits ``(B, C)`` (called outside JIT: NumPy or PyTorch code is fine).
        target: the class ``y`` whose confidence is measured.
        key: PRNG key.
        n: outputs per (sampler, scale).
        grid: decreasing times of the samplers, or a number of steps of a log-SNR-uniform grid (the grid of
            the ``guidance`` study).
        samplers: registered sampler names (default ``("ddpm", "ddim")``).
        features: callable ``(B, *event_shape) -> (B, F)`` for the kNN entropy (default: the flat outputs).
        event_shape: shape of one output for ``classifier`` and ``features`` (default: the score's
            ``event_shape``, else ``(d,)``).
        classifier_time: time at which a noisy classifier is evaluated (default: the grid's last time).
        final_denoise: end each sampler with the denoiser step to ``sigma = 0`` (as diffusers does).
        knn_k: neighbour order of the kNN entropy.
        vectorise: run the scales as one ``vmap``-ed call (default: yes unless the model runs through
            ``jax.pure_callback``, e.g. PyTorch, where a loop over scales is used).
        keep_samples: keep the outputs ``(S, W, N, d)`` in the result.
        dtype: dtype of the particles (default: a PyTorch model's dtype, else the default float).

    Returns:
        A :class:`ModelGuidanceSweep` with arrays indexed ``[sampler, scale]``.
    """
    guided = _check_guided(guided)
    ws = _check_scales(scales)
    names = _check_samplers(samplers)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise TypeError(f"`target` must be a non-negative integer class, got {target!r}.")
    target = int(target)
    if not (isinstance(classifier, AbstractNoisyClassifier) or callable(classifier)):
        raise TypeError(
            "`classifier` must be a noisy classifier or a callable batch -> logits, got "
            f"{type(classifier).__name__}."
        )
    if features is not None and not callable(features):
        raise TypeError(f"`features` must be a callable batch -> features, got {type(features).__name__}.")
    key = check_key(key)
    knn_k = check_positive_int(knn_k, "knn_k")
    n = check_positive_int(n, "n", minimum=knn_k + 1)
    shape = _event_shape(guided, event_shape)
    process = guided.process
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        times = _grids.logsnr_uniform(process, check_positive_int(int(grid), "grid"))
    else:
        times = jnp.asarray(grid, dtype=jnp.result_type(float))
        if times.ndim != 1 or times.shape[0] < 2 or not bool(jnp.all(jnp.isfinite(times))):
            raise ValueError("`grid` must be a number of steps or >= 2 finite decreasing times.")
        if not bool(jnp.all(jnp.diff(times) < 0)):
            raise ValueError("`grid` must be strictly decreasing (reverse time, t_max -> t_min).")
    t_eval = float(times[-1]) if classifier_time is None else float(classifier_time)
    if not np.isfinite(t_eval) or t_eval < 0:
        raise ValueError(f"`classifier_time` must be a finite time >= 0, got {classifier_time!r}.")
    vec = (not _uses_callback(guided)) if vectorise is None else bool(vectorise)
    # probe the classifier and features on two prior draws: bad shapes fail before any sampling
    probe = np.asarray(process.prior_sample(jax.random.fold_in(key, 1), (2, guided.dim)))
    n_classes = _logits(classifier, probe, shape, t_eval).shape[1]
    if target >= n_classes:
        raise ValueError(f"`target` {target} is out of range: the classifier has {n_classes} classes.")
    _features(features, probe, shape)

    state_dtype = _state_dtype(guided, dtype)
    x_prior = process.prior_sample(jax.random.fold_in(key, 2), (n, guided.dim)).astype(state_dtype)
    rows: dict[str, list] = {}
    samples = []
    for method in names:
        xs = _swept_samples(guided, method, times, key, x_prior, bool(final_denoise), ws, vec)
        if keep_samples:
            samples.append(xs)
        for x in xs:
            m = _measure(x, classifier, target, features, shape, t_eval, knn_k)
            for q, v in m.items():
                rows.setdefault(q, []).append(v)

    def grid_of(q):
        return np.asarray(rows[q], dtype=np.float64).reshape((len(names), ws.size) + np.shape(rows[q][0]))

    return ModelGuidanceSweep(
        samplers=names,
        scales=ws,
        target=target,
        confidence=grid_of("confidence"),
        confidence_se=grid_of("confidence_se"),
        target_fraction=grid_of("target_fraction"),
        target_fraction_se=grid_of("target_fraction_se"),
        knn_entropy=grid_of("knn_entropy"),
        knn_entropy_se=grid_of("knn_entropy_se"),
        pixel_variance=grid_of("pixel_variance"),
        feature_dim=int(rows["feature_dim"][0]),
        knn_k=knn_k,
        n=n,
        vectorised=vec,
        target_probability=grid_of("probability"),
        samples=np.stack(samples) if keep_samples else None,
    )
