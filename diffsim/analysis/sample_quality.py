r"""Sample-quality estimators for generated images: an evaluator classifier trained on real images (its
penultimate activations are the feature space), the Fréchet distance between feature sets, and the
memorisation ratio against a training set."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int

from ..scores.nn import Dense, init_rng
from ..training import fit_classifier


__all__ = [
    "DigitClassifier",
    "classifier_features",
    "classifier_predict",
    "frechet_distance",
    "memorisation_ratio",
    "train_classifier",
]


class DigitClassifier(eqx.Module):
    """MLP ``d -> 128 -> 64 -> n_classes`` (SiLU); :meth:`features` is the 64-d penultimate layer.

    Args:
        dim: input dimension ``d`` (flattened image).
        n_classes: number of classes (output logits).
        key (jax.Array): PRNG key for the initial weights.
    """

    l1: Dense
    l2: Dense
    head: Dense

    def __init__(self, dim: int, n_classes: int, *, key):
        rng = init_rng(key)
        self.l1 = Dense(dim, 128, rng=rng)
        self.l2 = Dense(128, 64, rng=rng)
        self.head = Dense(64, n_classes, rng=rng)

    def features(self, x):
        return jax.nn.silu(self.l2(jax.nn.silu(self.l1(x))))

    def __call__(self, x):
        return self.head(self.features(x))


def train_classifier(
    x: np.ndarray, y: np.ndarray, *, key: jax.Array, steps: int = 1500, batch: int = 256, n_classes: int = 10
) -> DigitClassifier:
    """Train :class:`DigitClassifier` with AdamW (lr 1e-3, weight decay 1e-4, batch 256, Gaussian input
    noise of std 0.05) on ``(x, y)`` with :func:`diffsim.training.fit_classifier`; deterministic given
    ``key``.

    Args:
        x: training images, flattened, shape ``(N, d)``.
        y: integer labels in ``[0, n_classes)``, shape ``(N,)``.
        key: PRNG key, split into the initialisation and training keys.
        steps: optimiser steps (default 1500).
        batch: batch size (default 256).
        n_classes: number of classes (default 10).

    Returns:
        The trained :class:`DigitClassifier`.
    """
    k_init, k_train = jr.split(key)
    model = DigitClassifier(x.shape[1], n_classes, key=k_init)
    fit = dict(learning_rate=1e-3, weight_decay=1e-4, input_noise=0.05)
    return fit_classifier(model, x, y, key=k_train, steps=steps, batch_size=batch, **fit)[0]


@eqx.filter_jit
def classifier_predict(model: eqx.Module, x: Float[Array, "N d"]) -> Int[Array, " N"]:
    """Predicted classes of a batch (one compiled program)."""
    return jnp.argmax(jax.vmap(model)(x), axis=-1)


@eqx.filter_jit
def classifier_features(model: DigitClassifier, x: Float[Array, "N d"]) -> Float[Array, "N 64"]:
    """Penultimate features of a batch (one compiled program)."""
    return jax.vmap(model.features)(x)


def frechet_distance(f1: Float[np.ndarray, "N k"], f2: Float[np.ndarray, "M k"]) -> float:
    r"""Fréchet distance between Gaussian fits of two feature sets (Heusel et al. 2017):

        FD = |m_1 - m_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}),

    with symmetric square roots by eigendecomposition (float64, negative round-off eigenvalues clipped).

    Args:
        f1: first feature set, shape ``(N, k)`` (e.g. :func:`classifier_features` of generated images).
        f2: second feature set, shape ``(M, k)`` (e.g. of real images).

    Returns:
        The Fréchet distance, a float.
    """
    a, b = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)

    def sqrtm(c):
        w, v = np.linalg.eigh(0.5 * (c + c.T))
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    s1 = sqrtm(c1)
    cross = sqrtm(s1 @ c2 @ s1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(cross))


def memorisation_ratio(samples: Float[np.ndarray, "N d"], train: Float[np.ndarray, "M d"]) -> np.ndarray:
    """``d_1 / d_2`` per sample: Euclidean distance to the nearest training image over the distance to the
    second nearest (near 0: a copy of one training image; near 1: equidistant from several).

    Args:
        samples: generated images, flattened, shape ``(N, d)``.
        train: the training images, shape ``(M, d)``, ``M >= 2``.

    Returns:
        The ratios, shape ``(N,)`` (float64).
    """
    s, t = np.asarray(samples, np.float64), np.asarray(train, np.float64)
    d2 = np.sum(s**2, 1)[:, None] + np.sum(t**2, 1)[None, :] - 2 * s @ t.T
    d = np.sqrt(np.clip(d2, 0, None))
    two = np.partition(d, 1, axis=1)[:, :2]
    return two[:, 0] / np.maximum(two[:, 1], 1e-12)
