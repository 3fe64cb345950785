r"""Concept probes on predicted clean samples and their exact references.

- :func:`exact_token_posterior`: the exact marginal posterior ``p(y_k | x_t, y_S)`` of an analytic
  :class:`~diffsim.scores.conditional.ConditionalMixture`. Along an exact reverse process
  ``y_final ~ p(y | x_t)`` (the posterior is a martingale), so the Bayes accuracy of predicting the final
  concept from ``x_t`` has expectation ``E max_y p(y | x_t)``; :func:`bayes_accuracy` is its closed form
  for one binary token on a pixel region.
- :class:`ConceptProbe`, :func:`train_probe`: softmax classifiers trained on clean data (JAX/optax),
  applied to Tweedie's ``x0_hat`` at each step (see :func:`diffsim.analysis.concepts.record_x0`).
- :func:`concept_curve`: accuracy and AUROC vs time; :func:`emergence_time`: the log-SNR at which a
  concept emerges.

Source: Park, Ju & Lee (ESWA 248, 2024), transplanted to models with known ground truth
(``docs/concepts.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._validation import as_float_array, check_key, check_positive_int
from ..processes import AbstractProcess
from ..scores.conditional import ConditionalMixture, channel_coefficients
from ..training import fit_classifier
from ._ranks import auroc as auroc


__all__ = [
    "ConceptCurve",
    "ConceptProbe",
    "auroc",
    "bayes_accuracy",
    "concept_curve",
    "emergence_time",
    "exact_token_posterior",
    "train_probe",
]


def exact_token_posterior(
    model: ConditionalMixture,
    process: AbstractProcess,
    t: ArrayLike,
    x: Float[Array, " d"],
    slots: Sequence[int],
    tokens: Int[ArrayLike, " n"] | None = None,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> tuple[Float[Array, " A"], ...]:
    r"""Exact marginal posteriors ``p(y_k | x_t = x, y_S)`` of the token ``slots`` under an analytic
    :class:`ConditionalMixture` (the component responsibilities at ``x_lambda = (a/alpha_t) x``, summed over
    components sharing a token value). One point ``x`` (traceable; ``vmap`` for batches).

    Args:
        model: the analytic token mixture.
        process: the forward process ``x`` was noised by (gives ``alpha_t`` and ``lambda(t)``).
        t: the time of ``x``, a scalar.
        x: one noisy point ``x_t``, shape ``(d,)``.
        slots: the token slots whose marginal posteriors to return.
        tokens: ``(n,)`` token values conditioned on (default zeros; only the masked slots matter).
        mask: ``(n,)`` which slots of ``tokens`` are conditioned on; ``None`` (default) for none.

    Returns:
        One ``(A_k,)`` probability vector per slot in ``slots``.
    """
    n = model.n_tokens
    tok = jnp.zeros(n, jnp.int32) if tokens is None else jnp.asarray(tokens, jnp.int32)
    msk = jnp.zeros(n, bool) if mask is None else jnp.asarray(mask, bool)
    lam = process.log_snr(t)
    a, _ = channel_coefficients(lam)
    xl = x * (a / process.alpha(t)).astype(x.dtype)
    r = model.posterior(lam.astype(x.dtype), xl, tok, msk)  # (K,)
    out = []
    for s in slots:
        a_s = model.alphabet_sizes[s]
        out.append(jax.ops.segment_sum(r, model.component_tokens[:, s], num_segments=a_s))
    return tuple(out)


class ConceptProbe(eqx.Module):
    r"""A softmax classifier of clean data: ``p(y | x) = softmax(W_2 silu(W_1 z) + b)`` (or linear,
    ``softmax(W z + b)``, when ``hidden = 0``) on standardised inputs ``z = (x - mean) / std`` (mean and
    std of the training data). Trained by :func:`train_probe`; applied to predicted clean samples.

    Attributes:
        mean: ``(d,)`` the training data's mean.
        std: ``(d,)`` the training data's standard deviation (floored at ``1e-3`` by :func:`train_probe`).
        layers: the ``(W, b)`` pairs of the layers, input first: one pair for a linear probe, two with a
            hidden layer; the last bias has length ``A`` (the number of classes).
        name: label of the probe (the key of its probabilities in
            :func:`~diffsim.analysis.concepts.record_x0`).
    """

    mean: Float[Array, " d"]
    std: Float[Array, " d"]
    layers: tuple[tuple[Array, Array], ...]
    name: str = eqx.field(static=True)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.layers[-1][1].shape[0])

    def check_dim(self, d: int, what: str = "the input") -> None:
        if int(d) != self.dim:
            raise ValueError(
                f"Probe {self.name!r} was trained on {self.dim}-dimensional data, but {what} has "
                f"dimension {int(d)}: probes apply only to data of the dimension they were trained on."
            )

    def logits(self, x: Float[Array, " d"]) -> Float[Array, " A"]:
        if jnp.ndim(x) != 1:
            raise ValueError(
                f"ConceptProbe.logits takes one point of shape ({self.dim},) (vmap for batches), "
                f"got shape {jnp.shape(x)}."
            )
        self.check_dim(jnp.shape(x)[0])
        h = (x - self.mean.astype(x.dtype)) / self.std.astype(x.dtype)
        for i, (w, b) in enumerate(self.layers):
            h = w.astype(x.dtype) @ h + b.astype(x.dtype)
            if i < len(self.layers) - 1:
                h = jax.nn.silu(h)
        return h

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " A"]:
        """Class probabilities ``p(y | x)``."""
        return jax.nn.softmax(self.logits(x))


def _probe_logits(probe: ConceptProbe, x: Float[Array, " d"]) -> Float[Array, " A"]:
    return probe.logits(x)


def train_probe(
    x: Float[ArrayLike, "N d"],
    labels: Int[ArrayLike, " N"],
    *,
    key: jax.Array,
    n_classes: int | None = None,
    hidden: int = 0,
    steps: int = 400,
    batch_size: int = 256,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    input_noise: float = 0.0,
    name: str = "probe",
) -> ConceptProbe:
    """Train a :class:`ConceptProbe` on clean data ``x`` with integer ``labels`` by minibatch AdamW on the
    cross-entropy (:func:`diffsim.training.fit_classifier` on the probe's layers, one compiled scan;
    ``hidden = 0`` gives a linear probe). ``input_noise`` adds
    Gaussian noise of that std to the inputs of each batch (a mild regulariser). Deterministic given
    ``key``.

    Args:
        x: clean training data, shape ``(N, d)``.
        labels: ``(N,)`` non-negative integer class labels.
        key: PRNG key of the initialisation and the minibatches.
        n_classes: number of classes ``A >= 2``; ``None`` (default) for ``max(labels) + 1``.
        hidden: width of the hidden SiLU layer; ``0`` (default) for a linear probe.
        steps: optimiser steps.
        batch_size: minibatch size (capped at ``N``).
        learning_rate: AdamW learning rate (positive).
        weight_decay: AdamW weight decay (non-negative).
        input_noise: std of the Gaussian noise added to each batch's inputs (non-negative; default ``0``).
        name: the probe's name.
    """
    key = check_key(key)
    xs = as_float_array(x, "x", ndim=2)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != xs.shape[0]:
        raise ValueError(f"`labels` must have shape ({xs.shape[0]},) (one per row of x), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer) or np.any(y < 0):
        raise ValueError("`labels` must be non-negative integers.")
    a = int(y.max()) + 1 if n_classes is None else check_positive_int(n_classes, "n_classes", minimum=2)
    if a < 2:
        raise ValueError("A probe needs at least two classes.")
    if np.any(y >= a):
        raise ValueError(f"`labels` must lie in 0..{a - 1} (n_classes = {a}).")
    hidden = check_positive_int(hidden, "hidden", minimum=0)
    steps = check_positive_int(steps, "steps")
    batch = check_positive_int(batch_size, "batch_size")
    if not (learning_rate > 0 and weight_decay >= 0 and input_noise >= 0):
        raise ValueError("`learning_rate` must be positive, `weight_decay` and `input_noise` non-negative.")
    d = xs.shape[1]
    mean = jnp.mean(xs, axis=0)
    std = jnp.maximum(jnp.std(xs, axis=0), 1e-3)
    rng = np.random.default_rng(
        np.asarray(jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
        .ravel()
        .tolist()
    )
    dtype = xs.dtype
    sizes = [d] + ([hidden] if hidden else []) + [a]
    layers = tuple(
        (jnp.asarray(rng.normal(0, 1 / math.sqrt(i), (o, i)), dtype), jnp.zeros(o, dtype))
        for i, o in zip(sizes[:-1], sizes[1:], strict=False)
    )
    probe = ConceptProbe(mean, std, layers, str(name))
    only_layers = eqx.tree_at(
        lambda p: p.layers, jax.tree.map(lambda _: False, probe), jax.tree.map(lambda _: True, layers)
    )
    trained, _ = fit_classifier(
        probe,
        xs,
        jnp.asarray(y, jnp.int32),
        key=jr.fold_in(key, 1),
        steps=steps,
        batch_size=min(batch, xs.shape[0]),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
        input_noise=float(input_noise),
        trainable=only_layers,
        logits=_probe_logits,
        key_scheme="split",
    )
    return trained


class ConceptCurve(eqx.Module):
    """A concept's detectability along the saved steps of a trajectory.

    Attributes:
        log_snr: ``(S,)`` log-SNR of the saved steps.
        ts: ``(S,)`` their times (NaN when not given to :func:`concept_curve`).
        accuracy: ``(S,)`` fraction of samples whose argmax class is the label.
        auroc: ``(S,)`` AUROC of the probabilities against the labels.
        true_prob: ``(S,)`` mean probability of the label.
        expected_accuracy: ``(S,)`` mean max probability (equal to the accuracy in expectation when the
            probabilities are calibrated, e.g. the exact posterior along an exact reverse process).
        chance: largest class frequency of the labels.
    """

    log_snr: np.ndarray
    ts: np.ndarray
    accuracy: np.ndarray
    auroc: np.ndarray
    true_prob: np.ndarray
    expected_accuracy: np.ndarray
    chance: float


def concept_curve(
    probs: Float[ArrayLike, "S N A"],
    labels: Int[ArrayLike, " N"],
    log_snr: ArrayLike,
    ts: ArrayLike | None = None,
) -> ConceptCurve:
    """Accuracy, AUROC, mean label probability and expected accuracy of ``probs`` (probabilities of each
    class at each saved step, from a probe on ``x0_hat`` or an exact posterior) against ``labels`` (usually
    the concept of the final sample).

    Args:
        probs: ``(S, N, A)`` class probabilities at each saved step.
        labels: ``(N,)`` integer labels in ``0..A-1``.
        log_snr: ``(S,)`` log-SNR of the saved steps.
        ts: ``(S,)`` their times, or ``None`` (stored as NaN).
    """
    p = np.asarray(probs, float)
    y = np.asarray(labels)
    if p.ndim != 3:
        raise ValueError(f"`probs` must have shape (S, N, A), got {p.shape}.")
    if y.shape != (p.shape[1],):
        raise ValueError(f"`labels` must have shape ({p.shape[1]},), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer) or np.any(y < 0) or np.any(y >= p.shape[2]):
        raise ValueError(f"`labels` must be integers in 0..{p.shape[2] - 1}.")
    lam = np.asarray(log_snr, float)
    if lam.shape != (p.shape[0],):
        raise ValueError(f"`log_snr` must have shape ({p.shape[0]},), got {lam.shape}.")
    t = np.full_like(lam, np.nan) if ts is None else np.asarray(ts, float)
    acc = np.mean(np.argmax(p, -1) == y[None, :], axis=1)
    au = np.asarray([auroc(p[s, :, 1] if p.shape[2] == 2 else p[s], y) for s in range(p.shape[0])])
    true = np.mean(np.take_along_axis(p, y[None, :, None], -1)[..., 0], axis=1)
    exp_acc = np.mean(p.max(-1), axis=1)
    chance = float(np.bincount(y, minlength=p.shape[2]).max() / y.size)
    return ConceptCurve(lam, t, acc, au, true, exp_acc, chance)


def emergence_time(
    curve: ConceptCurve | ArrayLike,
    log_snr: ArrayLike | None = None,
    *,
    level: float = 0.5,
    chance: float | None = None,
    ceiling: float = 1.0,
    field: str = "accuracy",
) -> float:
    r"""The log-SNR at which a concept emerges: normalise the curve ``u = (c - chance) / (ceiling - chance)``
    and return the log-SNR after which ``u`` stays ``>= level`` (linear interpolation between the last
    saved step below the level and the next). Robust to early fluctuations above the level.
    ``nan`` if the curve ends below the level; the first log-SNR if it never falls below it.

    For AUROC curves use ``chance=0.5``; for accuracy the default chance is the curve's majority rate.

    Args:
        curve: a :class:`ConceptCurve` (its ``field`` is read) or a raw 1-D curve.
        log_snr: the log-SNRs of a raw curve (required then; ignored for a :class:`ConceptCurve`).
        level: the normalised level in ``(0, 1)`` (default one half).
        chance: the curve's chance value; ``None`` for ``curve.chance`` (``0.5`` for ``field="auroc"``) or
            ``0`` for a raw curve.
        ceiling: the curve's maximum value (default ``1``); must exceed ``chance``.
        field: the :class:`ConceptCurve` field read (``"accuracy"``, ``"auroc"``, ``"true_prob"``, ...).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must lie in (0, 1), got {level}.")
    if isinstance(curve, ConceptCurve):
        c = np.asarray(getattr(curve, field), float)
        lam = curve.log_snr
        ch = curve.chance if chance is None else float(chance)
        if field == "auroc" and chance is None:
            ch = 0.5
    else:
        c = np.asarray(curve, float)
        if log_snr is None:
            raise ValueError("Pass `log_snr` with a raw curve.")
        lam = np.asarray(log_snr, float)
        ch = 0.0 if chance is None else float(chance)
    if c.ndim != 1 or lam.shape != c.shape:
        raise ValueError(f"curve and log_snr must be 1-D of one length, got {c.shape} and {lam.shape}.")
    if not ceiling > ch:
        raise ValueError(f"`ceiling` ({ceiling}) must exceed the chance level ({ch}).")
    order = np.argsort(lam)  # increasing log-SNR: the direction of the reverse process
    lam, u = lam[order], (c[order] - ch) / (ceiling - ch)
    ok = np.isfinite(u)
    lam, u = lam[ok], u[ok]
    if u.size == 0 or u[-1] < level:
        return float("nan")
    below = np.flatnonzero(u < level)
    if below.size == 0:
        return float(lam[0])
    i = int(below[-1])
    u0, u1 = u[i], u[i + 1]
    frac = (level - u0) / (u1 - u0) if u1 != u0 else 1.0
    return float(lam[i] + frac * (lam[i + 1] - lam[i]))


def bayes_accuracy(
    log_snr: Float[ArrayLike, "*S"],
    separation: float,
    n_pixels: int,
    std: float,
    p1: float = 0.5,
    n_quad: int = 80,
) -> np.ndarray | float:
    r"""Expected Bayes accuracy ``E max_y p(y | x_t)`` of a binary token whose region of ``m`` pixels has
    mean ``(2y - 1) s / 2`` per pixel and noise ``std``, in a variance-preserving channel of log-SNR
    ``lambda`` (closed form up to a 1-D Gauss-Hermite quadrature of ``n_quad`` nodes; the regions of
    :func:`diffsim.data.concepts.concept_mixture`).

    The log-likelihood ratio is ``z = alpha s sum_i x_i / v`` with ``v = alpha^2 std^2 + sigma^2``, so
    ``z | y ~ N(+-kappa/2, kappa)``, ``kappa = s^2 m / (std^2 + e^{-lambda})``; with ``L = logit(p1) + z``,
    ``E max p = sum_y p(y) E[max(sigmoid(L), 1 - sigmoid(L)) | y]``.

    Args:
        log_snr: log-SNR values ``lambda``, any shape.
        separation: ``s``, the distance between the two classes' per-pixel means.
        n_pixels: ``m``, the number of pixels in the token's region.
        std: the data's per-pixel noise std.
        p1: prior probability of ``y = 1`` (default one half).
        n_quad: Gauss-Hermite nodes.

    Returns:
        The expected accuracy, shaped like ``log_snr``.
    """
    lam = np.asarray(log_snr, float)
    kappa = separation**2 * n_pixels / (std**2 + np.exp(-lam))
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_quad)
    weights = weights / math.sqrt(2 * math.pi)
    prior_logit = math.log(p1 / (1 - p1))
    out = 0.0
    for y, py in ((1, p1), (0, 1 - p1)):
        sign = 1.0 if y == 1 else -1.0
        z = sign * kappa[..., None] / 2 + np.sqrt(kappa)[..., None] * nodes
        p = 1 / (1 + np.exp(-(prior_logit + z)))
        out = out + py * np.sum(weights * np.maximum(p, 1 - p), axis=-1)
    return out
