r"""8x8 digits with two tokens, the class and one synthetic attribute with known pixel support, and the
analytic conditional model of a finite training set: a kernel-density conditional mixture (one isotropic
Gaussian of variance ``bandwidth^2`` per training image, tagged with that image's tokens), whose pointwise
informations are exact.

Built on :func:`diffsim.data.digits.load_digits` and :func:`diffsim.data.digits.apply_attributes`; used by
the ``information`` study (DiffusionPID pixel maps against a trained token network).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Int

from .._validation import check_positive_int
from ..scores.conditional import ConditionalMixture
from ..scores.mixture import GaussianMixture
from .digits import apply_attributes, load_digits


__all__ = ["TokenDigits", "kde_token_mixture", "token_digits", "token_frequencies"]


class TokenDigits(eqx.Module):
    """Flattened 8x8 digits with tokens ``(class, attribute)``, as built by :func:`token_digits`.

    Attributes:
        x_train: ``(N, 64)``: every training digit, the attribute switched on at random with probability 1/2.
        tokens_train: ``(N, 2)`` int32: the ``(class, attribute)`` tokens of ``x_train``.
        x_test: ``(n, 64)``: the first ``n`` test digits, the attribute alternating off/on.
        tokens_test: ``(n, 2)`` int32: the ``(class, attribute)`` tokens of ``x_test``.
        support: ``(n, 64)`` bool: the pixels the attribute changes on each test digit (its counterfactual
            support, :func:`~diffsim.data.digits.apply_attributes`).
        attribute: the attribute's name.
        alphabet_sizes: ``(10, 2)``.
        names: ``("class", attribute)``.
    """

    x_train: Float[np.ndarray, "N 64"]
    tokens_train: Int[np.ndarray, "N 2"]
    x_test: Float[np.ndarray, "n 64"]
    tokens_test: Int[np.ndarray, "n 2"]
    support: Bool[np.ndarray, "n 64"]
    attribute: str

    @property
    def alphabet_sizes(self) -> tuple[int, int]:
        return (10, 2)

    @property
    def names(self) -> tuple[str, str]:
        return ("class", self.attribute)


def token_digits(attribute: str = "bar", n_test: int = 16, *, seed: int = 0) -> TokenDigits:
    """The 8x8 digits (:func:`~diffsim.data.digits.load_digits`, its default split) with tokens ``(class,
    attribute)``: training attributes drawn with ``numpy.random.default_rng(seed)`` (one uniform per training
    image, on when below 1/2), the first ``min(n_test, N_test)`` test digits with the attribute alternating
    off/on.

    Args:
        attribute: the attribute's name, as :func:`~diffsim.data.digits.apply_attributes` knows it.
        n_test: how many test digits to keep (a positive integer; capped at the test split's size).
        seed: the NumPy seed of the training attributes.
    """
    n_test = check_positive_int(n_test, "n_test")
    data = load_digits()
    x_train, c_train = data.flat("train")
    x_test, c_test = data.flat("test")
    rng = np.random.default_rng(seed)
    a_train = (rng.uniform(size=len(x_train)) < 0.5).astype(np.int32)
    batch = apply_attributes(data.train_images, a_train[:, None], (attribute,))
    xtr = batch.images.reshape(len(x_train), -1)
    ytr = np.c_[c_train, a_train].astype(np.int32)
    n = min(n_test, len(x_test))
    a_test = (np.arange(n) % 2).astype(np.int32)
    tb = apply_attributes(data.test_images[:n], a_test[:, None], (attribute,))
    xte = tb.images.reshape(n, -1)
    yte = np.c_[c_test[:n], a_test].astype(np.int32)
    support = tb.masks[:, 0].reshape(n, -1)
    return TokenDigits(xtr, ytr, xte, yte, support, attribute)


def kde_token_mixture(
    x: Float[ArrayLike, "N d"],
    tokens: Int[ArrayLike, "N n"],
    bandwidth: float,
    alphabet_sizes: Sequence[int],
    names: Sequence[str] | None = None,
) -> ConditionalMixture:
    """Kernel-density conditional mixture of a training set: equal weights ``1/N``, means ``x``, isotropic
    variance ``bandwidth^2``, component ``i`` tagged with ``tokens[i]``. Its conditionals ``p(x | y_S)`` are
    the KDEs of the training points with those tokens, so every pointwise information is exact.

    Args:
        x: the ``N`` training points ``(N, d)``.
        tokens: their integer token tuples ``(N, n)``, slot ``j`` in ``0..alphabet_sizes[j] - 1``.
        bandwidth: the kernel standard deviation (``> 0``).
        alphabet_sizes: the ``n`` alphabet sizes ``(A_1, ..., A_n)``.
        names: the ``n`` slot names; ``None`` names them ``y1, y2, ...``.

    Returns:
        A :class:`~diffsim.scores.conditional.ConditionalMixture` with ``N`` components.
    """
    x = np.asarray(x)
    bandwidth = float(bandwidth)
    if not bandwidth > 0:
        raise ValueError(f"`bandwidth` must be positive, got {bandwidth}.")
    mixture = GaussianMixture(np.full(len(x), 1.0 / len(x)), x, bandwidth**2)
    return ConditionalMixture(mixture, tokens, tuple(alphabet_sizes), None if names is None else tuple(names))


def token_frequencies(tokens: Int[ArrayLike, "N 2"], alphabet_sizes: Sequence[int]) -> np.ndarray:
    """Empirical joint law ``p(y_1, y_2)`` of two token columns, shape ``alphabet_sizes`` (the token prior a
    token network needs for Bayes' rule).

    Args:
        tokens: integer tokens ``(N, 2)``; only the first two columns are counted.
        alphabet_sizes: the two alphabet sizes ``(A_1, A_2)``.

    Returns:
        The normalised counts, a NumPy array of shape ``(A_1, A_2)``.
    """
    tok = np.asarray(tokens)
    prior = np.zeros(tuple(alphabet_sizes))
    np.add.at(prior, (tok[:, 0], tok[:, 1]), 1.0)
    return prior / prior.sum()
