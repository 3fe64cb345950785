r"""Condition variants of one conditional model: the noise predictions of ``M`` conditions (full prompt,
prompt without a word, ...) at the same noisy point, in one batched model call when the model allows it.

Information estimators compare denoisers of ONE model under several conditions on the SAME noisy point
(common random numbers; Kong et al., ICLR 2024). For external models the conditions are scores that differ
only in their ``cond`` (e.g. :meth:`diffsim.scores.adapters.DiffusersPipeline.score` of several prompts).
:class:`ConditionVariants` holds them and evaluates all at once:

- **batched path**: when every score is a :class:`~diffsim.scores.adapters.CallableScore` (or
  :class:`~diffsim.scores.adapters.TorchScore`) with the same model, process and settings and conds of the
  same structure and shapes, the conds are stacked to ``(M, ...)`` and ``eps`` is ``jax.vmap``-ed over
  them. The adapters' batching rule folds that vmap (and any vmap over points, log-SNRs) into the model's
  batch axis, so all variants of a noise draw cost ONE model call of batch ``M x (points)``.
- **general path**: any :class:`~diffsim.scores.AbstractScore` s on the same process and event size;
  each variant is called separately (``M`` calls).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from ...processes import AbstractProcess
from ...scores import AbstractScore
from ...scores.adapters import CallableScore


_BATCH = ("auto", "always", "never")
_STATIC = ("event_shape", "parametrisation", "time_input", "num_train_timesteps", "timestep_snap", "batched")


def _leaves_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb or len(la) != len(lb):
        return False
    for u, v in zip(la, lb, strict=True):
        if u is v:
            continue
        if eqx.is_array(u) or eqx.is_array(v) or isinstance(u, np.ndarray):
            u, v = np.asarray(u), np.asarray(v)
            if u.shape != v.shape or u.dtype != v.dtype or not np.array_equal(u, v):
                return False
        else:
            try:
                if not bool(u == v):
                    return False
            except Exception:  # noqa: BLE001 (incomparable objects are different models)
                return False
    return True


def _stack_reason(scores: Sequence[AbstractScore]) -> str | None:
    """Why the scores cannot share one batched call (None if they can)."""
    first = scores[0]
    for i, s in enumerate(scores):
        if not isinstance(s, CallableScore):
            return f"scores[{i}] is a {type(s).__name__}, not a CallableScore/TorchScore"
        if type(s) is not type(first):
            return f"scores[{i}] is a {type(s).__name__} but scores[0] a {type(first).__name__}"
        if s.cond is None:
            return f"scores[{i}] has no `cond`"
        for f in _STATIC:
            if getattr(s, f) != getattr(first, f):
                return (
                    f"scores[{i}].{f} = {getattr(s, f)!r} differs from scores[0].{f} = {getattr(first, f)!r}"
                )
        if s.fn is not first.fn and not _leaves_equal(s.fn, first.fn):
            return f"scores[{i}] wraps a different model `fn` than scores[0]"
        if s.process is not first.process and not _leaves_equal(s.process, first.process):
            return f"scores[{i}] has a different process than scores[0]"
        sa = jax.tree.map(lambda c: (jnp.shape(c), jnp.result_type(c)), s.cond)
        fa = jax.tree.map(lambda c: (jnp.shape(c), jnp.result_type(c)), first.cond)
        if jax.tree.structure(s.cond) != jax.tree.structure(first.cond) or sa != fa:
            return (
                f"scores[{i}].cond has shapes/dtypes {sa}, scores[0].cond {fa} (e.g. prompts of different "
                "token lengths)"
            )
    return None


class ConditionVariants(eqx.Module):
    r"""``M`` condition variants of one model (module docstring), evaluated together at one noisy point.

    Build with :meth:`from_scores` (any scores; stacked into one batched call when possible) or
    :meth:`from_conds` (one :class:`~diffsim.scores.adapters.CallableScore` and ``M`` conds).
    :meth:`eps` returns the ``(M, d)`` noise predictions at ``(t, x)``.

    Args:
        scores (tuple[AbstractScore, ...] | None): the ``M`` variant scores (general path); ``None`` on the
            batched path.
        template (CallableScore | None): the shared :class:`~diffsim.scores.adapters.CallableScore`
            (batched path); ``None`` on the general path.
        conds (PyTree | None): the conds stacked to ``(M, ...)`` (batched path); ``None`` on the general
            path.
        names (Sequence[str]): labels of the ``M`` variants.
        n_variants (int): ``M``.
        dim (int): the flattened dimension ``d`` of a point.
    """

    scores: tuple[AbstractScore, ...] | None
    template: CallableScore | None
    conds: PyTree | None
    names: tuple[str, ...] = eqx.field(static=True)
    n_variants: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(self, scores, template, conds, names, n_variants, dim):
        self.scores = scores
        self.template = template
        self.conds = conds
        self.names = tuple(names)
        self.n_variants = int(n_variants)
        self.dim = int(dim)

    @classmethod
    def from_scores(
        cls, scores: Sequence[AbstractScore], *, names: Sequence[str] | None = None, batch: str = "auto"
    ) -> ConditionVariants:
        """``M >= 2`` scores of one model under different conditions.

        Args:
            scores: the variants, all on the same process with the same dimension.
            names: optional labels of the variants (default ``"v0", "v1", ...``).
            batch: ``"auto"`` (one stacked model call when the scores allow it, else one call per score),
                ``"always"`` (raise a ``ValueError`` saying why when they cannot be stacked) or ``"never"``.
        """
        if batch not in _BATCH:
            raise ValueError(f"`batch` must be one of {_BATCH}, got {batch!r}.")
        if isinstance(scores, AbstractScore) or not isinstance(scores, Sequence):
            raise TypeError(f"`scores` must be a sequence of diffsim scores, got {type(scores).__name__}.")
        scores = tuple(scores)
        if len(scores) < 2:
            raise ValueError(f"`scores` must hold at least two condition variants, got {len(scores)}.")
        for i, s in enumerate(scores):
            if not isinstance(s, AbstractScore):
                raise TypeError(f"`scores[{i}]` must be a diffsim AbstractScore, got {type(s).__name__}.")
        first = scores[0]
        for i, s in enumerate(scores):
            if s.dim != first.dim:
                raise ValueError(f"`scores[{i}]` has dimension {s.dim}, scores[0] has {first.dim}.")
            if s.process is not first.process and not _leaves_equal(s.process, first.process):
                raise ValueError(
                    f"`scores[{i}]` is on a different process than scores[0] ({s.process!r} vs "
                    f"{first.process!r}): variants must share one noising process."
                )
        names = _check_names(names, len(scores))
        reason = None if batch == "never" else _stack_reason(scores)
        if batch == "always" and reason is not None:
            raise ValueError(f"`scores` cannot share one batched model call: {reason}.")
        if batch == "never" or reason is not None:
            return cls(scores, None, None, names, len(scores), first.dim)
        conds = jax.tree.map(lambda *c: jnp.stack(c), *(s.cond for s in scores))
        return cls(None, first, conds, names, len(scores), first.dim)

    @classmethod
    def from_conds(
        cls, score: CallableScore, conds: Sequence[PyTree], *, names: Sequence[str] | None = None
    ) -> ConditionVariants:
        """One model and ``M >= 2`` conds (pytrees of the same structure and shapes as ``score.cond``
        would be), always on the batched path.

        Args:
            score: a :class:`~diffsim.scores.adapters.CallableScore` or
                :class:`~diffsim.scores.adapters.TorchScore` (its own ``cond`` is ignored).
            conds: the conds of the variants.
            names: optional labels of the variants.
        """
        if not isinstance(score, CallableScore):
            raise TypeError(f"`score` must be a CallableScore/TorchScore, got {type(score).__name__}.")
        if isinstance(conds, (str, bytes)) or not isinstance(conds, Sequence) or len(conds) < 2:
            raise ValueError("`conds` must be a sequence of at least two conditions.")
        variants = [
            eqx.tree_at(lambda s: s.cond, score, jax.tree.map(jnp.asarray, c), is_leaf=lambda v: v is None)
            for c in conds
        ]
        try:
            return cls.from_scores(variants, names=names, batch="always")
        except ValueError as err:
            raise ValueError(f"`conds`: {err}") from None

    @property
    def batched(self) -> bool:
        """True when all variants share one stacked model call."""
        return self.template is not None

    @property
    def process(self) -> AbstractProcess:
        return self.template.process if self.batched else self.scores[0].process

    def eps(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "M d"]:
        r"""Noise predictions ``eps_hat_m(x_t)`` of all ``M`` variants at one point (one stacked model call on
        the batched path; ``jax.vmap`` over points and times keeps it one call).

        Args:
            t: diffsim time of the variants' process.
            x: one flat noisy point ``(d,)``.
        """
        if self.batched:

            def one(c):
                s = eqx.tree_at(lambda v: v.cond, self.template, c)
                return s.eps(t, x)

            return jax.vmap(one)(self.conds)
        return jnp.stack([s.eps(t, x) for s in self.scores])


def _check_names(names, m) -> tuple[str, ...]:
    if names is None:
        return tuple(f"v{i}" for i in range(m))
    names = tuple(str(n) for n in names)
    if len(names) != m:
        raise ValueError(f"`names` must name the {m} variants, got {len(names)} names.")
    return names
