r"""Per-step predicted clean samples streamed from any model during sampling, a user's classifier or feature
function applied to each of them, and the emergence curves and times of what it reads.

Source: Park, Ju & Lee, "Explaining generative diffusion models via visual analysis for interpretable
decision-making process" (ESWA 248, 2024): what the model "predicts at step t" is Tweedie's denoiser

    x0_hat(t, x_t) = E[x_0 | x_t] = (x_t + sigma_t^2 grad log p_t(x_t)) / alpha_t,

here for ANY diffsim score (an exact mixture, diffsim's networks, a JAX callable, a torch or diffusers model
through :mod:`diffsim.scores.adapters`, a classifier-free guided pair). A feature ``phi`` (a classifier's
logits or probabilities, or any features) is applied to ``x0_hat`` at every saved step inside the sampler's
scan (:func:`diffsim.simulate`'s ``stats`` hook), so only ``phi(x0_hat)`` ``(S, N, F)`` is kept, not the
states ``(S, N, d)``.

**Emergence.** For a classifier, the label of particle ``n`` is what the classifier reads on its last saved
prediction (``y_n = argmax phi(x0_hat(t_last, x_{t_last}))``, or labels the user passes); the curve is the
agreement ``a(t_s) = 1/N sum_n [argmax phi(x0_hat(t_s, x_{t_s})) = y_n]`` over steps, with chance the
majority rate of the labels; the emergence log-SNR (:func:`diffsim.analysis.probes.emergence_time`) is
where the normalised curve ``(a - chance) / (1 - chance)`` last crosses ``level``. For real features the
curve is the explained fraction ``r(t_s) = 1 - E|phi_s - phi_last|^2 / E|phi_first - phi_last|^2`` (0 at the
first saved step, 1 at the last). Time is diffsim's forward time ``t``; ``lambda = log(alpha_t^2/sigma_t^2)``
increases along the reverse process.

:func:`diffsim.analysis.concepts.record_x0` is the special case for diffsim's concept probes (and the exact
posteriors of analytic token mixtures); this module takes any callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from ..sampling import simulate
from ..scores._base import AbstractScore
from .probes import concept_curve, emergence_time


__all__ = ["EmergenceCurves", "FeatureStatistics", "X0Stream", "emergence_curves", "stream_x0"]

_OUTPUTS = ("logits", "probs", "features")


class FeatureStatistics(eqx.Module):
    r"""A per-particle statistic ``stats(t, x_t) -> dict`` for :func:`diffsim.simulate`: Tweedie's
    ``x0_hat = score.denoise(t, x_t)`` (key ``"x0"`` when ``keep_x0``) and each feature of it (key
    ``"features"``: ``{name: phi(x0_hat)}``). An :class:`equinox.Module`, so repeated runs with the same
    features reuse one compilation.

    Each feature takes ONE flat point ``(d,)`` and returns an array (``vmap`` handles the batch); a model on
    images reshapes it (``phi(x.reshape(event_shape))``).

    Constructor arguments, kept as the instance's fields:

    Attributes:
        score: the score whose denoiser gives ``x0_hat``.
        features: the feature functions ``phi(x0) -> array``, one per name, in the order of ``names``.
        names: the features' names (static); empty keeps only ``x0``.
        keep_x0: also return ``x0_hat`` under the key ``"x0"`` (static).
    """

    score: AbstractScore
    features: tuple
    names: tuple[str, ...] = eqx.field(static=True)
    keep_x0: bool = eqx.field(static=True)

    def __call__(self, t, x):
        x0 = self.score.denoise(t, x)
        out: dict[str, Any] = {}
        if self.keep_x0:
            out["x0"] = x0
        if self.names:
            out["features"] = {
                n: jnp.asarray(f(x0)).astype(x0.dtype) for n, f in zip(self.names, self.features, strict=True)
            }
        return out


class X0Stream(eqx.Module):
    """What :func:`stream_x0` kept (numpy arrays).

    Attributes:
        ts: the saved times, shape ``(S,)``.
        log_snr: their log-SNR ``log(alpha_t^2 / sigma_t^2)``, shape ``(S,)``.
        features: ``{name: (S, N, ...)}``, each feature of ``x0_hat`` at each saved step.
        x0: the predicted clean samples, shape ``(S, N, d)`` (``None`` unless ``keep_x0``).
        x: the final states, shape ``(N, d)``.
        nfe: model evaluations per particle of the sampler.
    """

    ts: np.ndarray
    log_snr: np.ndarray
    features: dict
    x0: np.ndarray | None
    x: np.ndarray
    nfe: int


def _check_features(features) -> tuple[tuple[str, ...], tuple[Callable, ...]]:
    if features is None:
        return (), ()
    if callable(features) and not isinstance(features, Mapping):
        features = {"feature": features}
    if not isinstance(features, Mapping):
        raise TypeError(
            "`features` must be a callable phi(x0) or a mapping {name: callable}, "
            f"got {type(features).__name__}."
        )
    names, fns = [], []
    for name, fn in features.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`features` names must be non-empty strings, got {name!r}.")
        if not callable(fn):
            raise TypeError(f"features[{name!r}] must be callable phi(x0) -> array, got {type(fn).__name__}.")
        names.append(name)
        fns.append(fn)
    return tuple(names), tuple(fns)


def stream_x0(
    score: AbstractScore,
    method: str = "ddim",
    grid: ArrayLike | int | None = None,
    *,
    key: jax.Array,
    features: Callable | Mapping[str, Callable] | None = None,
    n: int | None = None,
    x: Float[ArrayLike, "N d"] | None = None,
    save: Any = "all",
    keep_x0: bool = False,
    chunk_size: int | None = None,
    final_denoise: bool = False,
    **method_options: Any,
) -> X0Stream:
    r"""Sample with ``score`` and stream, at every saved step, the features of the predicted clean sample
    ``phi(x0_hat(t_s, x_{t_s}))`` (module docstring), without storing the states.

    Args:
        score: any :class:`~diffsim.scores.AbstractScore` (e.g. ``pipe.score(prompt)``, ``pipe.guided(prompt,
            w)``, a :class:`~diffsim.scores.ClassifierFreeGuidance`, a wrapped user model).
        method: a sampler of :func:`diffsim.simulate` (``"ddim"``, ``"ddpm"``, ``"heun"``, ...).
        grid: reverse time grid or number of steps (e.g. ``diffsim.sampling.grids.step_schedule(process, n,
            "early")`` for Park et al.'s exponential early-dense schedule).
        key: PRNG key.
        features: ``phi(x0) -> array`` on ONE flat point ``(d,)`` or ``{name: phi}``; ``None`` keeps only
            ``x0`` (then ``keep_x0`` must be true).
        n: number of particles drawn from the prior (or pass ``x``).
        x: starting points ``(N, d)`` at ``grid[0]``.
        save: which steps to record (``"all"``, a stride, indices; as :func:`diffsim.simulate`).
        keep_x0: also keep ``x0_hat`` ``(S, N, d)`` (memory ``S N d``: use few particles or saved steps).
        chunk_size: particles per compiled chunk.
        final_denoise: end with the denoiser step to ``sigma = 0`` (as diffusers does).
        **method_options: options of the sampler (e.g. ``eta``).

    Returns:
        An :class:`X0Stream`.
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim AbstractScore, got {type(score).__name__}.")
    names, fns = _check_features(features)
    if not names and not keep_x0:
        raise ValueError("Nothing to stream: pass `features` or keep_x0=True.")
    stats = FeatureStatistics(score, fns, names, bool(keep_x0))
    traj = simulate(
        score,
        method,
        grid,
        x=x,
        n=n,
        key=key,
        save=save,
        stats=stats,
        save_states=False,
        chunk_size=chunk_size,
        final_denoise=final_denoise,
        **method_options,
    )
    ts = np.asarray(traj.ts, float)
    lam = np.asarray(score.process.log_snr(jnp.asarray(ts)), float)
    st = traj.stats
    feats = {k: np.asarray(v) for k, v in st.get("features", {}).items()}
    return X0Stream(
        ts, lam, feats, np.asarray(st["x0"]) if keep_x0 else None, np.asarray(traj.x), int(traj.nfe)
    )


class EmergenceCurves(eqx.Module):
    """Emergence of each feature along the saved steps (numpy; module docstring).

    Attributes:
        log_snr: the saved steps' log-SNR, shape ``(S,)``.
        ts: the saved times, shape ``(S,)``.
        curves: ``{name: (S,)}``, agreement with the final label (classifiers) or explained fraction
            (features).
        chance: ``{name: float}``, the chance level used (the labels' majority rate unless given; 0 for
            features).
        emergence: ``{name: float}``, the emergence log-SNR (``nan`` if the curve ends below the level).
        labels: ``{name: (N,)}``, the labels used (classifiers only).
        level: the emergence level of the normalised curves, in ``(0, 1)``.
    """

    log_snr: np.ndarray
    ts: np.ndarray
    curves: dict
    chance: dict
    emergence: dict
    labels: dict
    level: float


def emergence_curves(
    stream: X0Stream,
    *,
    outputs: str | Mapping[str, str] = "logits",
    labels: Mapping[str, Int[ArrayLike, " N"]] | None = None,
    level: float = 0.5,
    chance: float | None = None,
) -> EmergenceCurves:
    r"""Emergence curves and log-SNRs of each streamed feature (module docstring).

    Args:
        stream: the result of :func:`stream_x0`.
        outputs: what each feature returns: ``"logits"`` or ``"probs"`` of a classifier (``(A,)`` with
            ``A >= 2``; curve = agreement with the label, via :func:`diffsim.analysis.probes.concept_curve`)
            or ``"features"`` (any array; curve = explained fraction); one kind for all or ``{name: kind}``.
        labels: optional ``{name: (N,)}`` integer labels (default: the classifier's reading of the last
            saved prediction).
        level: the emergence level in ``(0, 1)`` of the normalised curve.
        chance: the chance level of the classifiers' agreement (default: the majority rate of the
            labels; e.g. ``0.5`` for a balanced binary concept).

    Returns:
        :class:`EmergenceCurves`.
    """
    if not isinstance(stream, X0Stream):
        raise TypeError(f"`stream` must be an X0Stream (from stream_x0), got {type(stream).__name__}.")
    if not stream.features:
        raise ValueError("`stream` holds no features: run stream_x0 with `features`.")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"`level` must lie in (0, 1), got {level}.")
    kinds = {n: outputs for n in stream.features} if isinstance(outputs, str) else dict(outputs)
    for name in stream.features:
        if kinds.get(name) not in _OUTPUTS:
            raise ValueError(
                f"`outputs` for feature {name!r} must be one of {_OUTPUTS}, got {kinds.get(name)!r}."
            )
    labels = {} if labels is None else dict(labels)
    for name in labels:
        if name not in stream.features:
            raise ValueError(
                f"`labels` names a feature {name!r} that was not streamed ({list(stream.features)})."
            )
    lam, ts = stream.log_snr, stream.ts
    if lam.size < 2:
        raise ValueError("Emergence needs at least 2 saved steps (save='all' or a stride).")
    if chance is not None and not 0.0 <= float(chance) < 1.0:
        raise ValueError(f"`chance` must lie in [0, 1), got {chance}.")
    curves, chance_used, emerge, used = {}, {}, {}, {}
    for name, v in stream.features.items():
        kind = kinds[name]
        arr = np.asarray(v, float)
        if kind == "features":
            f = arr.reshape(arr.shape[0], arr.shape[1], -1)
            den = np.mean(np.sum((f[0] - f[-1]) ** 2, -1))
            num = np.mean(np.sum((f - f[-1][None]) ** 2, -1), axis=1)
            curve = 1.0 - num / den if den > 0 else np.ones_like(num)
            curves[name], chance_used[name] = curve, 0.0
            emerge[name] = emergence_time(curve, lam, level=level, chance=0.0)
            continue
        if arr.ndim != 3 or arr.shape[-1] < 2:
            raise ValueError(
                f"Feature {name!r} declared {kind!r} must return class scores (A,) with A >= 2; streamed "
                f"shape {arr.shape[2:]}."
            )
        probs = jax.nn.softmax(jnp.asarray(arr), axis=-1) if kind == "logits" else jnp.asarray(arr)
        probs = np.asarray(probs)
        if name in labels:
            y = np.asarray(labels[name])
            if y.shape != (arr.shape[1],) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"labels[{name!r}] must be integers of shape ({arr.shape[1]},), got {y.shape}."
                )
        else:
            y = np.argmax(probs[-1], -1)
        cc = concept_curve(probs, y, lam, ts)
        curves[name], used[name] = cc.accuracy, y
        ch = cc.chance if chance is None else float(chance)
        chance_used[name] = ch
        emerge[name] = emergence_time(cc, level=level, chance=ch) if ch < 1.0 else float(lam[0])
    return EmergenceCurves(lam, ts, curves, chance_used, emerge, used, float(level))
