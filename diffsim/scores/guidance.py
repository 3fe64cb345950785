r"""Classifier guidance and classifier-free guidance as score transformers.

**The one convention of diffsim: the guidance scale ``w``.** Every guided score here is

    s_w(t, x) = s_u(t, x) + w \nabla_x log p_t(y | x),

where ``s_u = \nabla log p_t`` is the unconditional score and ``p_t(y | x)`` the noisy classifier. Since
Bayes gives ``\nabla log p_t(y|x) = \nabla log p_t(x|y) - \nabla log p_t(x) = s_c - s_u``, the same ``w``
reads, for classifier-free guidance,

    s_w = s_u + w (s_c - s_u) = (1 - w) s_u + w s_c.

``w = 0`` is unconditional sampling, ``w = 1`` plain conditional sampling, ``w > 1`` amplified guidance,
``0 < w < 1`` an interpolation. Negative ``w`` (guidance *away* from the class) is rejected: none of the
theory implemented here covers it.

Other conventions, and the helpers that convert (all exact, affine):

============================  ==========================================================  ===============
convention                     guided score / noise prediction                             relation to w
============================  ==========================================================  ===============
``"scale"`` (diffsim)          ``s_u + w \nabla log p_t(y|x)``                             ``w``
``"eta"`` (Wu et al. 2024)     ``\nabla log p_t(x|y) + eta \nabla log p_t(y|x)``           ``eta = w - 1``
``"cfg"`` (Ho & Salimans 2022) ``eps = (1 + w_cfg) eps_c - w_cfg eps_u``                   ``w_cfg = w - 1``
``"guidance_scale"``           ``eps = eps_u + g (eps_c - eps_u)`` (diffusers, Rombach+)   ``g = w``
``"classifier_scale"``         ``\nabla log p_t(x) + s \nabla log p_t(y|x)`` (Dhariwal     ``s = w``
                               & Nichol 2021)
============================  ==========================================================  ===============

(``eps = -sigma_t s`` is linear in the score, so the noise-space and score-space forms agree.)

**Exact noisy classifier of a Gaussian mixture.** For ``p_0 = sum_k pi_k N(mu_k, Sigma_k)`` with a label
``l(k)`` per component, diffused by a VP/VE process (``C_k(t) = alpha_t^2 Sigma_k + sigma_t^2 I``),
``r_k(x) = P(k | x_t = x)`` and ``r^y_k = r_k 1[l(k) = y] / sum_{l(j) = y} r_j``,

    log p_t(y | x)         = log sum_{l(k)=y} r_k(x),
    \nabla log p_t(y | x)   = sum_k (r^y_k - r_k) s_k,               s_k = -C_k^{-1}(x - alpha_t mu_k),
    \Delta log p_t(y | x)   = \Delta log p_t(x | y) - \Delta log p_t(x),
    \Delta log p(x)         = sum_k rho_k (|s_k|^2 - tr C_k^{-1}) - |sum_k rho_k s_k|^2,

the last for any sub-mixture with responsibilities ``rho``.

This is the classifier of Wu, Chen, Li, Wang & Wei (ICML 2024, "Theoretical insights for diffusion
guidance: a case study for Gaussian mixture models"); with identity covariances
``\nabla log p_t(y|x) = alpha_t (mu_y - sum_k r_k mu_k)``.
"""

from __future__ import annotations

import abc
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .. import _checks
from .._promotion import promote
from .._types import ArrayOrSequence
from .._validation import is_concrete
from ..processes import AbstractProcess
from ._base import AbstractScore
from .mixture import GaussianMixture


__all__ = [
    "CONVENTIONS",
    "AbstractNoisyClassifier",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "MixtureClassifier",
    "cfg_from_scale",
    "check_scale",
    "classifier_scale_from_scale",
    "convert_strength",
    "eta_from_scale",
    "guided_mixture",
    "scale_from_cfg",
    "scale_from_classifier_scale",
    "scale_from_eta",
    "unwrap_mixture",
]

Convention = Literal["scale", "eta", "cfg", "guidance_scale", "classifier_scale"]

#: offset ``c`` of each convention: ``value = w + c`` (every convention is a shift of the diffsim scale).
CONVENTIONS: dict[str, float] = {
    "scale": 0.0,
    "eta": -1.0,
    "cfg": -1.0,
    "guidance_scale": 0.0,
    "classifier_scale": 0.0,
}


# =====================================================================================================
# strength conventions
# =====================================================================================================
def check_scale(scale: ArrayOrSequence, name: str = "scale") -> None:
    """Raise ``ValueError`` if a concrete guidance scale ``w`` (diffsim convention, ``s_u + w grad log
    p_t(y|x)``) is negative or not finite. Tracers pass unchecked."""
    if isinstance(scale, (str, bytes)) or scale is None:
        raise TypeError(f"`{name}` must be a number (the guidance scale w), got {type(scale).__name__}.")
    if np.iscomplexobj(scale):
        raise TypeError(f"`{name}` must be a real guidance scale w, got a complex value.")
    if not is_concrete(scale):
        return
    arr = np.asarray(scale, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite, got {arr}.")
    if np.any(arr < 0):
        raise ValueError(
            f"`{name}` must be >= 0 (diffsim guidance scale w: 0 unconditional, 1 conditional, >1 amplified; "
            f"Wu et al.'s eta = w - 1 >= -1); got {arr.min():g}. Negative guidance is not supported."
        )


def convert_strength(value: ArrayOrSequence, *, source: str = "scale", target: str = "eta") -> Array:
    r"""Convert a guidance strength between conventions (see the module table).

    The diffsim convention is the scale ``w`` in ``s_w = s_u + w \nabla log p_t(y|x)``; ``"eta"`` (Wu et
    al. 2024) and ``"cfg"`` (Ho & Salimans 2022) are ``w - 1``; ``"guidance_scale"`` (diffusers) and
    ``"classifier_scale"`` (Dhariwal & Nichol 2021) equal ``w``. Raises ``ValueError`` for an unknown
    convention (``source`` / ``target`` must be one of :data:`Convention`) or a strength whose scale ``w``
    would be negative.
    """
    for nm, conv in (("source", source), ("target", target)):
        if conv not in CONVENTIONS:
            raise ValueError(f"Unknown `{nm}` convention {conv!r}; choose from {sorted(CONVENTIONS)}.")
    arr = jnp.asarray(value, dtype=jnp.result_type(float))
    w = arr - CONVENTIONS[source]
    check_scale(w, f"value (as the diffsim scale w, from convention {source!r})")
    return w + CONVENTIONS[target]


def eta_from_scale(scale: ArrayOrSequence) -> Array:
    """Wu et al. (2024)'s ``eta = w - 1`` from the diffsim guidance scale ``w``
    (``s_u + w grad log p(y|x)``)."""
    return convert_strength(scale, source="scale", target="eta")


def scale_from_eta(eta: ArrayLike) -> Array:
    """Diffsim guidance scale ``w = 1 + eta`` from Wu et al. (2024)'s ``eta``
    (``grad log p(x|y) + eta grad log p(y|x)``); ``eta < -1`` raises."""
    return convert_strength(eta, source="eta", target="scale")


def cfg_from_scale(scale: ArrayOrSequence) -> Array:
    """Ho & Salimans (2022)'s ``w_cfg = w - 1`` (``(1 + w_cfg) eps_c - w_cfg eps_u``) from the diffsim
    scale ``w``."""
    return convert_strength(scale, source="scale", target="cfg")


def scale_from_cfg(w_cfg: ArrayLike) -> Array:
    """Diffsim guidance scale ``w = 1 + w_cfg`` from Ho & Salimans (2022)'s CFG weight."""
    return convert_strength(w_cfg, source="cfg", target="scale")


def classifier_scale_from_scale(scale: ArrayOrSequence) -> Array:
    """Dhariwal & Nichol (2021)'s classifier scale ``s = w`` (``grad log p(x) + s grad log p(y|x)``)."""
    return convert_strength(scale, source="scale", target="classifier_scale")


def scale_from_classifier_scale(s: ArrayLike) -> Array:
    """Diffsim guidance scale ``w = s`` from Dhariwal & Nichol (2021)'s classifier scale."""
    return convert_strength(s, source="classifier_scale", target="scale")


# =====================================================================================================
# noisy classifiers
# =====================================================================================================
class AbstractNoisyClassifier(eqx.Module):
    r"""A noisy classifier ``p_t(y | x_t = x)`` over a finite set of class labels.

    Subclasses implement :meth:`log_prob` for one point ``x`` of shape ``(d,)``; the gradient and
    Laplacian in ``x`` default to autodiff. ``classes`` lists the valid labels.
    """

    @property
    @abc.abstractmethod
    def classes(self) -> tuple[int, ...]:
        """The valid class labels."""

    @abc.abstractmethod
    def log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, ""]:
        """``log p_t(y | x)``."""

    def grad_log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, " d"]:
        r"""``\nabla_x log p_t(y | x)`` (autodiff by default)."""
        return jax.grad(lambda z: self.log_prob(t, z, y))(x)

    def laplacian_log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, ""]:
        r"""``\Delta_x log p_t(y | x)`` (trace of the autodiff Hessian by default)."""
        return jnp.trace(jax.jacfwd(lambda z: self.grad_log_prob(t, z, y))(x))

    def check_label(self, y: ArrayLike, name: str = "label") -> None:
        """Raise ``ValueError`` if a concrete ``y`` is not one of :attr:`classes`."""
        if isinstance(y, bool) or not is_concrete(y):
            if isinstance(y, bool):
                raise TypeError(f"`{name}` must be an integer class label, got a bool.")
            return
        arr = np.asarray(y)
        if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"`{name}` must be one integer class label, got {arr.dtype}{list(arr.shape)}.")
        if int(arr) not in self.classes:
            raise ValueError(f"`{name}` {int(arr)} is out of range: the classes are {list(self.classes)}.")


def _component_scores(mix: GaussianMixture, t: ArrayLike, x: Array):
    """Per-component scores ``s_k``, ``|s_k|^2``, ``tr C_k^{-1}`` and log-weights-plus-log-densities."""
    t = jnp.asarray(t, dtype=mix.means.dtype)
    p = mix.process
    a = p.alpha(t)
    c = a**2 * mix.eigvals + p.sigma2(t)  # (K, d)
    diff = x[None, :] - a * mix.means
    if mix.eigvecs is None:
        z = diff
        s_k = -z / c
    else:
        z = jnp.einsum("kij,ki->kj", mix.eigvecs, diff)
        s_k = -jnp.einsum("kij,kj->ki", mix.eigvecs, z / c)
    logn = (
        -0.5 * jnp.sum(z**2 / c, -1) - 0.5 * jnp.sum(jnp.log(c), -1) - 0.5 * mix.dim * math.log(2 * math.pi)
    )
    ell = logn + jnp.log(mix.weights)
    sq = jnp.sum((z / c) ** 2, -1)  # rotations preserve norms
    tr_prec = jnp.sum(1.0 / c, -1)
    return s_k, sq, tr_prec, ell


#: centre the sub-mixture Laplacian where ``sum rho |s_k|^2`` exceeds this multiple of ``sum rho tr C_k^{-1}``
_CENTRE_RATIO = 100.0


def _sub_laplacian(rho, s_k, sq, tr_prec):
    r"""Laplacian ``sum_k rho_k (|s_k|^2 - tr C_k^{-1}) - |s|^2`` of a sub-mixture, ``s = sum_k rho_k s_k``.

    The uncentred form loses about ``eps sum_k rho_k |s_k|^2`` to cancellation: nothing near the modes, but
    every digit in float32 near a tight mode far from the origin (``-7.9e5`` against ``-1.8e6`` at
    ``x = (10, -3)``, ``t = 1e-6``, covariances ``1e-6``). Where ``sum rho |s_k|^2`` exceeds
    ``_CENTRE_RATIO`` times ``sum rho tr C_k^{-1}`` the centred form ``sum_k rho_k (|s_k - s|^2 - tr
    C_k^{-1})`` is used instead; elsewhere the uncentred one, whose rounding there is at most about
    ``100 eps`` of the result's scale (the guidance study's float32 numbers were computed with it)."""
    s = jnp.sum(rho[:, None] * s_k, 0)
    plain = jnp.sum(rho * (sq - tr_prec)) - jnp.sum(s**2)
    dev = s_k - s[None, :]
    centred = jnp.sum(rho * (jnp.sum(dev**2, -1) - tr_prec))
    risky = jnp.sum(rho * sq) > _CENTRE_RATIO * jnp.sum(rho * tr_prec)
    return jnp.where(risky, centred, plain)


class MixtureClassifier(AbstractNoisyClassifier):
    r"""The exact noisy classifier ``p_t(y | x)`` of a :class:`~diffsim.scores.GaussianMixture`, with
    classes given by the mixture's ``labels`` (Wu et al. 2024, eq. for the Bayes posterior of the noised
    data). ``log_prob``, ``grad_log_prob`` and ``laplacian_log_prob`` are closed forms (module docstring).

    Args:
        mixture: the :class:`~diffsim.scores.GaussianMixture`; its ``labels`` are the classes and its
            process the noising.
    """

    mixture: GaussianMixture
    _classes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, mixture: GaussianMixture):
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"`mixture` must be a GaussianMixture, got {type(mixture).__name__}.")
        self.mixture = mixture
        self._classes = tuple(sorted({int(v) for v in np.asarray(mixture.labels).tolist()}))

    @property
    def classes(self) -> tuple[int, ...]:
        return self._classes

    @property
    def process(self) -> AbstractProcess:
        return self.mixture.process

    def _parts(self, t, x, y):
        t, x = self.mixture._check_args(t, x)
        self.check_label(y)
        y = _checks.check_label(y, self._classes)
        s_k, sq, tr_prec, ell = _component_scores(self.mixture, t, x)
        member = self.mixture.labels == y
        r = jax.nn.softmax(ell)
        r_y = jax.nn.softmax(jnp.where(member, ell, -jnp.inf))
        return s_k, sq, tr_prec, ell, member, r, r_y

    def log_probs(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " C"]:
        """``log p_t(c | x)`` for every class ``c`` in :attr:`classes` (in that order)."""
        _, _, _, ell, *_ = self._parts(t, x, self._classes[0])
        lse = jax.nn.logsumexp(ell)
        labels = self.mixture.labels
        return (
            jnp.stack([jax.nn.logsumexp(jnp.where(labels == c, ell, -jnp.inf)) for c in self._classes]) - lse
        )

    def log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, ""]:
        r"""``log p_t(y|x) = logsumexp_{l(k)=y}(log pi_k + log N_k) - logsumexp_k(log pi_k + log N_k)``."""
        _, _, _, ell, member, _, _ = self._parts(t, x, y)
        return jax.nn.logsumexp(jnp.where(member, ell, -jnp.inf)) - jax.nn.logsumexp(ell)

    def grad_log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, " d"]:
        r"""``\nabla log p_t(y|x) = sum_k (r^y_k - r_k) s_k`` (closed form)."""
        s_k, _, _, _, _, r, r_y = self._parts(t, x, y)
        return jnp.sum((r_y - r)[:, None] * s_k, 0)

    def laplacian_log_prob(self, t: ArrayLike, x: Float[Array, " d"], y: ArrayLike) -> Float[Array, ""]:
        r"""``\Delta log p_t(y|x) = \Delta log p_t(x|y) - \Delta log p_t(x)`` (closed form)."""
        s_k, sq, tr_prec, _, _, r, r_y = self._parts(t, x, y)
        return _sub_laplacian(r_y, s_k, sq, tr_prec) - _sub_laplacian(r, s_k, sq, tr_prec)


# =====================================================================================================
# guided scores
# =====================================================================================================
def _as_label(label: ArrayLike) -> Array:
    if isinstance(label, bool):
        raise TypeError("`label` must be an integer class label, got a bool.")
    arr = jnp.asarray(label)
    if not jnp.issubdtype(arr.dtype, jnp.integer) or arr.shape != ():
        raise TypeError(f"`label` must be one integer class label, got {arr.dtype}{list(arr.shape)}.")
    return arr


def _as_scale(scale: ArrayOrSequence, dtype) -> Array:
    check_scale(scale)
    arr = jnp.asarray(scale, dtype=dtype)
    if arr.shape != ():
        raise ValueError(f"`scale` must be a scalar guidance scale w, got shape {arr.shape}.")
    if not is_concrete(arr):  # built under jit or vmap: guarded in checked mode
        arr = _checks.check_scale(arr)
    return arr


def _same_process(p: AbstractProcess, q: AbstractProcess) -> bool:
    """Whether two processes are the same (identical, or equal type, parameters and schedule arrays)."""
    if p is q:
        return True
    if type(p) is not type(q) or repr(p) != repr(q):
        return False
    if not (is_concrete(p) and is_concrete(q)):
        return True  # traced schedule arrays cannot be compared; the reprs agree
    return bool(eqx.tree_equal(p, q))


def _check_label_weight(mixture: GaussianMixture, label: Array) -> None:
    """Reject a concrete label whose components all have weight 0 (its conditional is undefined: NaN)."""
    if not (is_concrete(label) and is_concrete(mixture.weights) and is_concrete(mixture.labels)):
        return
    member = np.asarray(mixture.labels) == int(label)
    if member.any() and not np.asarray(mixture.weights)[member].sum() > 0:
        raise ValueError(
            f"`label` {int(label)} has total weight 0 in the mixture: p_t(x | y) is undefined (it would give "
            "NaN scores)."
        )


class ClassifierGuidance(AbstractScore):
    r"""Classifier guidance ``s_w(t, x) = s(t, x) + w \nabla_x log p_t(y | x)``.

    **Strength convention (diffsim):** guidance scale ``w >= 0``; ``w = 1`` with the exact classifier of the
    base distribution gives the class-conditional score, ``w = 0`` the base score. Wu et al. (2024)'s
    ``eta = w - 1``; Dhariwal & Nichol (2021)'s classifier scale equals ``w`` (see
    :func:`convert_strength`).

    ``label`` and ``scale`` are array leaves, so sweeping them does not recompile jitted samplers.

    Args:
        base: any :class:`AbstractScore`, the unguided score ``s``.
        classifier: an :class:`AbstractNoisyClassifier`, e.g. :class:`MixtureClassifier`; when it has a
            process it must be ``base``'s.
        label: the target class ``y``, an integer in ``classifier.classes``.
        scale: the guidance scale ``w >= 0`` (default 1).
    """

    base: AbstractScore
    classifier: AbstractNoisyClassifier
    label: Int[Array, ""]
    scale: Float[Array, ""]
    process: AbstractProcess
    fused: bool = eqx.field(static=True)

    def __init__(
        self,
        base: AbstractScore,
        classifier: AbstractNoisyClassifier,
        label: ArrayLike,
        scale: ArrayOrSequence = 1.0,
    ):
        if not isinstance(base, AbstractScore):
            raise TypeError(f"`base` must be a diffsim score, got {type(base).__name__}.")
        if not isinstance(classifier, AbstractNoisyClassifier):
            raise TypeError(
                f"`classifier` must be an AbstractNoisyClassifier, got {type(classifier).__name__}."
            )
        self.label = _as_label(label)
        classifier.check_label(self.label)
        if not is_concrete(self.label):  # built under jit or vmap: guarded in checked mode
            self.label = _checks.check_label(self.label, classifier.classes)
        clf_process = getattr(classifier, "process", None)
        if isinstance(clf_process, AbstractProcess) and not _same_process(clf_process, base.process):
            raise ValueError(
                f"`classifier` must classify the noisy marginals of the base score's process: it uses "
                f"{clf_process!r}, `base` uses {base.process!r}."
            )
        if isinstance(classifier, MixtureClassifier):
            _check_label_weight(classifier.mixture, self.label)
        self.scale = _as_scale(scale, jnp.result_type(float))
        self.base = base
        self.classifier = classifier
        self.process = base.process
        # the exact classifier of the base mixture itself: one pass over the components serves both terms
        self.fused = isinstance(classifier, MixtureClassifier) and classifier.mixture is base

    @property
    def dim(self) -> int:
        return self.base.dim

    def _guarded(self) -> tuple[Array, Array]:
        """``(label, scale)``, guarded in checked mode (label in ``classes``, scale finite and >= 0)."""
        return (
            _checks.check_label(self.label, self.classifier.classes),
            _checks.check_scale(self.scale),
        )

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""``s(t, x) + w \nabla log p_t(y|x)`` (diffsim scale ``w``).

        When ``base`` is the classifier's own mixture (as built by :func:`guided_mixture`) this is computed
        in one pass as ``sum_k ((1 - w) r_k + w r^y_k) s_k``."""
        label, scale = self._guarded()
        if self.fused:
            s_k, _, _, _, _, r, r_y = self.classifier._parts(t, x, label)
            scale, r, r_y, s_k = promote(scale, r, r_y, s_k)
            return jnp.sum(((1.0 - scale) * r + scale * r_y)[:, None] * s_k, 0)
        base, scale, grad = promote(self.base.score(t, x), scale, self.classifier.grad_log_prob(t, x, label))
        return base + scale * grad

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        r"""``\nabla^2 log p_t + w \nabla^2 log p_t(y|x)`` (base Hessian + autodiff of the classifier
        gradient)."""
        label, scale = self._guarded()
        h_cls = jax.jacfwd(lambda z: self.classifier.grad_log_prob(t, z, label))(x)
        base, scale, h_cls = promote(self.base.hessian(t, x), scale, h_cls)
        return base + scale * h_cls

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        r"""``\Delta log p_t + w \Delta log p_t(y|x)`` (closed form for :class:`MixtureClassifier`)."""
        label, scale = self._guarded()
        if self.fused:
            s_k, sq, tr_prec, _, _, r, r_y = self.classifier._parts(t, x, label)
            scale, lap, lap_y = promote(
                scale, _sub_laplacian(r, s_k, sq, tr_prec), _sub_laplacian(r_y, s_k, sq, tr_prec)
            )
            return (1.0 - scale) * lap + scale * lap_y
        base, scale, lap = promote(
            self.base.laplacian(t, x), scale, self.classifier.laplacian_log_prob(t, x, label)
        )
        return base + scale * lap

    def log_classifier(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        """``log p_t(y | x)`` of the guiding classifier at the guided label."""
        return self.classifier.log_prob(t, x, self.label)


#: the prediction kinds of :class:`ClassifierFreeGuidance` and the :class:`AbstractScore` method of each
_KIND_METHODS: dict[str, str] = {"score": "score", "x0": "denoise", "eps": "eps", "v": "v_prediction"}


def _joint(unconditional: AbstractScore, conditional: AbstractScore) -> bool:
    """Whether the two branches of a :class:`ClassifierFreeGuidance` are evaluated jointly.

    A branch type may implement the pair protocol: ``_pairs_with(unconditional) -> bool`` (decided once, at
    construction, on the concrete objects) and ``_guidance_pair(unconditional, scale, t, x, kind)`` (the
    guided prediction ``kind`` in one evaluation: one batched network call for two
    :class:`~diffsim.scores.nn.TokenBoundScore` of one network, the noise space of a
    :class:`~diffsim.scores.TokenConditionedScore`). Every other pair combines the branches' own outputs."""
    pairs = getattr(conditional, "_pairs_with", None)
    return bool(pairs is not None and pairs(unconditional))


class ClassifierFreeGuidance(AbstractScore):
    r"""Classifier-free guidance ``s_w = s_u + w (s_c - s_u) = (1 - w) s_u + w s_c`` (Ho & Salimans 2022):
    diffsim's one guidance transformer of two scores (mixtures, token networks via
    :meth:`~diffsim.scores.nn.AbstractTokenScore.guided`, token-conditioned denoisers via
    :meth:`~diffsim.scores.TokenConditionedScore.guided`, adapted pipelines).

    **Strength convention (diffsim):** guidance scale ``w >= 0``; ``w = 0`` unconditional, ``w = 1``
    conditional. Ho & Salimans' ``(1 + w_cfg) eps_c - w_cfg eps_u`` has ``w_cfg = w - 1`` (Wu et al.'s
    ``eta``); diffusers' ``guidance_scale`` equals ``w`` (see :func:`convert_strength`).

    Every parametrisation is affine in the score at fixed ``(t, x)``, so :meth:`score`, :meth:`denoise`,
    :meth:`eps` and :meth:`v_prediction` each combine the branches' own outputs of that kind,
    ``u + w (c - u)``. Two branches of one token network run as one batched network call, and two
    token-conditioned scores combine in noise space (see :func:`_joint`).

    Args:
        unconditional: the unconditional score ``s_u``.
        conditional: the conditional score ``s_c``, on the same process and dimension as ``s_u``.
        scale: the guidance scale ``w >= 0`` (default 1; an array leaf: sweeping it does not recompile).
    """

    unconditional: AbstractScore
    conditional: AbstractScore
    scale: Float[Array, ""]
    process: AbstractProcess
    joint: bool = eqx.field(static=True)

    def __init__(
        self, unconditional: AbstractScore, conditional: AbstractScore, scale: ArrayOrSequence = 1.0
    ):
        for nm, sc in (("unconditional", unconditional), ("conditional", conditional)):
            if not isinstance(sc, AbstractScore):
                raise TypeError(f"`{nm}` must be a diffsim score, got {type(sc).__name__}.")
        if unconditional.dim != conditional.dim:
            raise ValueError(
                f"`unconditional` (d={unconditional.dim}) and `conditional` (d={conditional.dim}) "
                "must have the same dimension."
            )
        if not _same_process(unconditional.process, conditional.process):
            raise ValueError(
                f"`unconditional` and `conditional` must share one process, got "
                f"{unconditional.process!r} and {conditional.process!r}."
            )
        self.scale = _as_scale(scale, jnp.result_type(float))
        self.unconditional = unconditional
        self.conditional = conditional
        self.process = unconditional.process
        self.joint = _joint(unconditional, conditional)

    @property
    def dim(self) -> int:
        return self.unconditional.dim

    def _combine(self, t: ArrayLike, x: Float[Array, " d"], kind: str) -> Float[Array, " d"]:
        scale = _checks.check_scale(self.scale)
        if self.joint:
            return self.conditional._guidance_pair(self.unconditional, scale, t, x, kind)
        u, c = promote(
            getattr(self.unconditional, _KIND_METHODS[kind])(t, x),
            getattr(self.conditional, _KIND_METHODS[kind])(t, x),
        )
        u, scale, delta = promote(u, scale, c - u)
        return u + scale * delta

    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``s_u + w (s_c - s_u)`` (diffsim scale ``w``)."""
        return self._combine(t, x, "score")

    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``x0_u + w (x0_c - x0_u)`` (the branches' denoisers)."""
        return self._combine(t, x, "x0")

    def eps(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``eps_u + w (eps_c - eps_u)`` (the branches' noise predictions)."""
        return self._combine(t, x, "eps")

    def v_prediction(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """``v_u + w (v_c - v_u)`` (the branches' v-predictions)."""
        return self._combine(t, x, "v")

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        """``(1 - w) H_u + w H_c``."""
        scale = _checks.check_scale(self.scale)
        return (1.0 - scale) * self.unconditional.hessian(t, x) + scale * self.conditional.hessian(t, x)

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        r"""``(1 - w) \Delta_u + w \Delta_c``."""
        scale = _checks.check_scale(self.scale)
        return (1.0 - scale) * self.unconditional.laplacian(t, x) + scale * self.conditional.laplacian(t, x)


def guided_mixture(
    mixture: GaussianMixture,
    label: int,
    scale: ArrayOrSequence = 1.0,
    *,
    kind: str = "classifier",
) -> ClassifierGuidance | ClassifierFreeGuidance:
    r"""The exactly guided score of a Gaussian mixture towards class ``label`` with diffsim scale ``w``.

    ``kind="classifier"``: ``s + w \nabla log p_t(y|x)`` with :class:`MixtureClassifier`;
    ``kind="cfg"``: ``s_u + w (s_c - s_u)`` with ``s_c`` the score of ``mixture.condition(label)``. The two
    are equal (Bayes), which the tests check. Any other ``kind`` raises ``ValueError``. Wu et al. (2024)'s
    ``eta = w - 1``.

    Args:
        mixture: the :class:`~diffsim.scores.GaussianMixture`, classes given by its ``labels``.
        label: the target class ``y``; it must carry positive weight.
        scale: the guidance scale ``w >= 0`` (default 1).
        kind: ``"classifier"`` (default) or ``"cfg"``.

    Returns:
        A :class:`ClassifierGuidance` (``kind="classifier"``) or :class:`ClassifierFreeGuidance`
        (``kind="cfg"``).
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"`mixture` must be a GaussianMixture, got {type(mixture).__name__}.")
    clf = MixtureClassifier(mixture)
    lab = _as_label(label)
    clf.check_label(lab)
    _check_label_weight(mixture, lab)
    if kind == "classifier":
        return ClassifierGuidance(mixture, clf, lab, scale)
    if kind == "cfg":
        return ClassifierFreeGuidance(mixture, mixture.condition(int(lab)), scale)
    raise ValueError(f"`kind` must be 'classifier' or 'cfg', got {kind!r}.")


def unwrap_mixture(score: AbstractScore) -> GaussianMixture | None:
    """The :class:`GaussianMixture` underneath a (possibly guided) score, or ``None``."""
    if isinstance(score, GaussianMixture):
        return score
    if isinstance(score, ClassifierGuidance):
        return unwrap_mixture(score.base)
    if isinstance(score, ClassifierFreeGuidance):
        return unwrap_mixture(score.unconditional)
    return None
