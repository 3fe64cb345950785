r"""Mixture trees (given or agglomerative) and the per-node critical windows / decision times."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from ..._types import ArrayOrSequence
from ..._validation import check_key
from ...scores.mixture import GaussianMixture
from ._bounds import TheoremBounds, theorem_bounds
from ._cloning import speciation_time
from ._curves import WindowCurve, window_curve
from ._groups import _check_eps, _check_mixture
from ._reading import CriticalWindow, critical_window


class _TreeWalk:
    """What every mixture-tree node (one with ``components`` and ``children``) derives from them."""

    components: tuple[int, ...]
    children: tuple[Any, ...]

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def name(self) -> str:
        return "{" + ",".join(map(str, self.components)) + "}"

    def internal_nodes(self) -> list[Any]:
        """Internal nodes, parents before children (pre-order)."""
        if self.is_leaf:
            return []
        out = [self]
        for c in self.children:
            out += c.internal_nodes()
        return out

    def depth(self) -> int:
        return 0 if self.is_leaf else 1 + max(c.depth() for c in self.children)

    def nested(self) -> Any:
        """The tree as nested lists of component indices (a leaf is its index)."""
        return self.components[0] if self.is_leaf else [c.nested() for c in self.children]


class TreeNode(_TreeWalk, eqx.Module):
    """A node of a mixture tree: the components it covers and its children (leaves have none).

    Attributes:
        components: the sorted component indices the node covers (one index for a leaf).
        children: the child nodes; empty for a leaf.
    """

    components: tuple[int, ...]
    children: tuple[TreeNode, ...] = ()


def _tree_from_nested(spec: Any, k: int, seen: set) -> TreeNode:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        i = int(spec)
        if not 0 <= i < k:
            raise ValueError(f"`groups` names component {i}, outside [0, {k}).")
        if i in seen:
            raise ValueError(f"`groups` names component {i} more than once.")
        seen.add(i)
        return TreeNode((i,))
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise ValueError("`groups` contains an empty group.")
        children = tuple(_tree_from_nested(s, k, seen) for s in spec)
        if len(children) == 1:
            return children[0]
        comps = tuple(sorted(c for ch in children for c in ch.components))
        return TreeNode(comps, children)
    raise TypeError(f"`groups` must be nested lists of component indices, got {type(spec).__name__}.")


def _agglomerative(means: np.ndarray, weights: np.ndarray, linkage: str) -> TreeNode:
    """Binary agglomerative clustering of component means (average, single, complete or Ward linkage)."""
    nodes = [TreeNode((i,)) for i in range(means.shape[0])]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)

    def link(a: TreeNode, b: TreeNode) -> float:
        block = dist[np.ix_(a.components, b.components)]
        if linkage == "single":
            return float(block.min())
        if linkage == "complete":
            return float(block.max())
        if linkage == "average":
            return float(block.mean())
        wa, wb = weights[list(a.components)], weights[list(b.components)]
        ca = (wa[:, None] * means[list(a.components)]).sum(0) / wa.sum()
        cb = (wb[:, None] * means[list(b.components)]).sum(0) / wb.sum()
        return float(math.sqrt(2 * wa.sum() * wb.sum() / (wa.sum() + wb.sum())) * np.linalg.norm(ca - cb))

    while len(nodes) > 1:
        best = None
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                dd = link(nodes[i], nodes[j])
                if best is None or dd < best[0] - 1e-12:
                    best = (dd, i, j)
        _, i, j = best
        merged = TreeNode(tuple(sorted(nodes[i].components + nodes[j].components)), (nodes[i], nodes[j]))
        nodes = [n for m, n in enumerate(nodes) if m not in (i, j)] + [merged]
    return nodes[0]


def mixture_tree(gm: GaussianMixture, groups: Any = None, *, linkage: str = "average") -> TreeNode:
    """The mixture tree: user-given nested groups (e.g. ``[[0, 1], [2, [3, 4]]]``) or, with ``groups=None``,
    binary agglomerative clustering of the component means (``linkage``: average/single/complete/ward).

    Leaves are components; each internal node is the sub-mixture of its leaves; the root covers all.

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        groups: nested lists of component indices covering every component exactly once (a one-element
            list is collapsed into its element); ``None`` builds the tree by clustering.
        linkage: ``"average"`` (default), ``"single"``, ``"complete"`` or ``"ward"``; used only when
            ``groups`` is ``None``.
    """
    gm = _check_mixture(gm)
    k = gm.n_components
    if groups is None:
        if linkage not in ("average", "single", "complete", "ward"):
            raise ValueError(f"`linkage` must be 'average', 'single', 'complete' or 'ward', got {linkage!r}.")
        return _agglomerative(np.asarray(gm.means, float), np.asarray(gm.weights, float), linkage)
    seen: set = set()
    root = _tree_from_nested(groups, k, seen)
    if len(seen) != k:
        missing = sorted(set(range(k)) - seen)
        raise ValueError(f"`groups` must cover every component exactly once; missing {missing}.")
    return root


class NodeWindows(eqx.Module):
    """Windows of one internal node ``V``: per child ``c``, the keep/forget curves, the exact critical
    window ``[keep_c, forget_c]`` and the theorem bounds (keep side: ``S_init = S_targ = c``; forget side:
    ``S_init = c``, ``S_targ = V``). ``decision_time``: mean centre of the children's critical windows;
    ``decision_time_bounds``: mean centre of ``[t_upper(c, c), t_lower(c, V)]``; ``speciation_time``:
    :func:`speciation_time` of ``p^V``.

    Attributes:
        node: the internal node ``V``.
        children: its children.
        keep_curves: per child, the :class:`WindowCurve` with ``S_init = S_targ = c``.
        forget_curves: per child, the :class:`WindowCurve` with ``S_init = c``, ``S_targ = V``.
        windows: per child, the :class:`CriticalWindow` ``[keep_c, forget_c]``.
        keep_bounds: per child, the :class:`TheoremBounds` of ``(c, c)``.
        forget_bounds: per child, the :class:`TheoremBounds` of ``(c, V)``.
        decision_time: mean centre of the children's critical windows (NaNs ignored).
        decision_time_bounds: mean centre of ``[t_upper(c, c), t_lower(c, V)]``.
        speciation_time: :func:`speciation_time` of ``p^V``.
    """

    node: TreeNode
    children: tuple[TreeNode, ...]
    keep_curves: tuple[WindowCurve, ...]
    forget_curves: tuple[WindowCurve, ...]
    windows: tuple[CriticalWindow, ...]
    keep_bounds: tuple[TheoremBounds, ...]
    forget_bounds: tuple[TheoremBounds, ...]
    decision_time: float
    decision_time_bounds: float
    speciation_time: float


class TreeWindows(eqx.Module):
    """Per-node windows and the decision times sorted from first decided (largest ``T_hat``) to last.

    Attributes:
        tree: the root :class:`TreeNode`.
        nodes: one :class:`NodeWindows` per internal node, in pre-order (parents first).
        decision_order: node names (``"{0,1}"``) sorted by decreasing decision time (NaN last).
        decision_times: the decision times in that order.
    """

    tree: TreeNode
    nodes: tuple[NodeWindows, ...]
    decision_order: tuple[str, ...]
    decision_times: tuple[float, ...]


def tree_windows(
    gm: GaussianMixture,
    tree: TreeNode,
    eps: float,
    t_hats: ArrayOrSequence,
    *,
    key: jax.Array,
    sampler: str = "sde",
    n_bound_samples: int = 20_000,
    **curve_options: Any,
) -> TreeWindows:
    """Critical windows of every internal node of ``tree`` (route (a) curves) and the decision sequence.

    Reading the reverse process from large to small ``T_hat``, the sampler decides the child of node ``V``
    during the critical windows of its children; the decision times are ordered coarse (large separation,
    early in the reverse process) to fine. ``curve_options`` go to :func:`window_curve`;
    ``n_bound_samples`` to :func:`theorem_bounds` (Monte Carlo forward TV when no quadrature applies).

    Args:
        gm: the data mixture (a :class:`~diffsim.scores.GaussianMixture`).
        tree: the root :class:`TreeNode`, e.g. from :func:`mixture_tree`.
        eps: the TV tolerance of the windows and bounds, in ``(0, 1)``.
        t_hats: the noising times ``T_hat`` of every curve.
        key: PRNG key, folded per node and child (keep and forget curves share it).
        sampler: ``"sde"`` (default) or ``"ode"``, for the curves and bounds.
        n_bound_samples: Monte Carlo sample size of :func:`theorem_bounds`.
    """
    gm = _check_mixture(gm)
    if not isinstance(tree, TreeNode):
        raise TypeError(f"`tree` must be a TreeNode (see mixture_tree), got {type(tree).__name__}.")
    eps = _check_eps(eps)
    key = check_key(key)
    out = []
    for n_idx, node in enumerate(tree.internal_nodes()):
        keeps, forgets, wins, kb, fb = [], [], [], [], []
        for c_idx, child in enumerate(node.children):
            kk = jr.fold_in(jr.fold_in(key, n_idx), c_idx)
            kc = window_curve(
                gm, child.components, child.components, t_hats, key=kk, sampler=sampler, **curve_options
            )
            fc = window_curve(
                gm, child.components, node.components, t_hats, key=kk, sampler=sampler, **curve_options
            )
            keeps.append(kc)
            forgets.append(fc)
            wins.append(critical_window(kc, fc, eps))
            kb.append(
                theorem_bounds(
                    gm,
                    child.components,
                    child.components,
                    eps,
                    sampler=sampler,
                    key=kk,
                    n_samples=n_bound_samples,
                )
            )
            fb.append(
                theorem_bounds(
                    gm,
                    child.components,
                    node.components,
                    eps,
                    sampler=sampler,
                    key=kk,
                    n_samples=n_bound_samples,
                )
            )
        centre = float(np.nanmean([w.centre for w in wins]))
        centre_b = float(np.mean([0.5 * (a.t_upper + b.t_lower) for a, b in zip(kb, fb, strict=False)]))
        out.append(
            NodeWindows(
                node,
                node.children,
                tuple(keeps),
                tuple(forgets),
                tuple(wins),
                tuple(kb),
                tuple(fb),
                centre,
                centre_b,
                speciation_time(gm, node.components),
            )
        )
    order = sorted(out, key=lambda nw: -nw.decision_time if np.isfinite(nw.decision_time) else np.inf)
    return TreeWindows(
        tree, tuple(out), tuple(nw.node.name for nw in order), tuple(nw.decision_time for nw in order)
    )
