r"""The eps-mixture tree of Li, Karan & Chen (2025) built from exact forward TVs, and its decision times
measured against the exact noising-denoising windows.

Definition 8 of "Blink of an eye: a simple theory for feature localization in generative models" (ICML 2025):
a tree whose nodes ``u`` carry a group of components and a noise level ``NoiseAmount(u)`` such that (i) any
two leaves whose lowest common ancestor is ``u`` are ``eps``-close in TV at ``NoiseAmount(u)``, (ii) the group
of ``u`` is ``(1 - eps^2)``-separated in TV from the other components at ``NoiseAmount(u)``, and (iii) a
child's noise level is below its parent's. Then ``NoiseAmount(u)`` lies in ``[T_end(c, u), T_start(u)]`` for
every child ``c`` (joint convexity of TV gives ``TV(p^c_t, p^u_t) <= eps``), so by Theorem 2 noising a
sample of ``c`` to ``NoiseAmount(u)`` and denoising gives ``p^u`` up to ``eps (1 + max(1, W_u) / sqrt 2)``:
along a leaf-to-root path the noise levels are the increasing times at which the sampler decides successive
features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from ..._validation import check_key, check_positive_int
from ...scores.mixture import GaussianMixture
from ._curves import window_curve
from ._follow_up import _tv_crossing, _tv_function, follow_up_error, group_odds, separation_time
from ._groups import _check_eps, _check_mixture
from ._trees import _TreeWalk


class EpsTreeNode(_TreeWalk, eqx.Module):
    """A node of an eps-mixture tree: its components, ``NoiseAmount`` (0 for leaves), the separation time
    ``sup{t : TV(p^u_t, p^{rest}_t) >= 1 - eps^2}`` (``t_max`` for the root) and its children.

    Attributes:
        components: the sorted component indices of the node's group.
        noise_amount: ``NoiseAmount(u)``, the node's decision time (0 for leaves).
        separation_time: the time up to which the group is ``(1 - eps^2)``-separated from the rest.
        children: the child nodes; empty for a leaf.
    """

    components: tuple[int, ...]
    noise_amount: float
    separation_time: float
    children: tuple[EpsTreeNode, ...] = ()


class EpsMixtureTree(eqx.Module):
    """An eps-mixture tree: the root, ``eps``, the pairwise closeness times ``pair_times[i, j] = inf{t :
    TV(N_i(t), N_j(t)) <= eps}``, the candidate groups of the complete-linkage tree that were dissolved (not
    separated at their merge time, or not below their parent), and the decision times of the internal nodes
    sorted from first decided (largest noise) to last.

    Attributes:
        root: the root :class:`EpsTreeNode` (covers every component).
        eps: the tree's tolerance.
        pair_times: the ``(K, K)`` matrix of pairwise closeness times ``tau_ij`` (0 on the diagonal).
        dissolved: the component groups of the complete-linkage candidates that were dissolved.
        decision_order: internal node names (``"{0,1}"``) sorted by decreasing ``noise_amount``.
        decision_times: their ``noise_amount`` values in that order.
    """

    root: EpsTreeNode
    eps: float
    pair_times: np.ndarray
    dissolved: tuple[tuple[int, ...], ...]
    decision_order: tuple[str, ...]
    decision_times: tuple[float, ...]

    def satisfies_definition(self) -> bool:
        """Check conditions (i)-(iii) of the definition on every node (leaves: separated at ``t = 0``)."""

        def ok(node: EpsTreeNode, parent_noise: float) -> bool:
            if node.noise_amount > node.separation_time + 1e-12 or node.noise_amount >= parent_noise:
                return False
            if node.is_leaf:
                return node.separation_time > 0.0 or len(self.root.components) == 1
            for a in range(len(node.children)):
                for b in range(a + 1, len(node.children)):
                    ia, ib = node.children[a].components, node.children[b].components
                    if np.max(self.pair_times[np.ix_(ia, ib)]) > node.noise_amount + 1e-12:
                        return False
            return all(ok(c, node.noise_amount) for c in node.children)

        return ok(self.root, math.inf)


def _complete_linkage(tau: np.ndarray) -> Any:
    """Binary complete-linkage clustering on the matrix ``tau``: nested ``(components, height, children)``."""
    nodes = [((i,), 0.0, ()) for i in range(tau.shape[0])]
    while len(nodes) > 1:
        best = None
        for a in range(len(nodes)):
            for b in range(a + 1, len(nodes)):
                h = float(np.max(tau[np.ix_(nodes[a][0], nodes[b][0])]))
                if best is None or h < best[0] - 1e-12:
                    best = (h, a, b)
        h, a, b = best
        merged = (tuple(sorted(nodes[a][0] + nodes[b][0])), h, (nodes[a], nodes[b]))
        nodes = [n for m, n in enumerate(nodes) if m not in (a, b)] + [merged]
    return nodes[0]


def eps_mixture_tree(
    gm: GaussianMixture,
    eps: float,
    *,
    key: jax.Array | None = None,
    n_samples: int = 20_000,
    n_grid: int = 81,
) -> EpsMixtureTree:
    r"""Build the eps-mixture tree of Li, Karan & Chen (2025, Definition 8) from exact forward TVs.

    1. Pairwise closeness times ``tau_ij = inf{t : TV(N_i(t), N_j(t)) <= eps}`` (exact forward TV of
       :func:`submixture_tv`: closed form for equal covariances, Monte Carlo otherwise).
    2. Complete-linkage clustering on ``tau``; a node's height is the largest ``tau_ij`` between its leaves,
       the first time all of them are pairwise ``eps``-close: condition (i) holds with
       ``NoiseAmount = height``.
    3. A non-root candidate ``u`` is kept if its group is ``(1 - eps^2)``-separated from the rest at its
       height (:func:`separation_time` ``>= height``, condition (ii)) and its height is below its kept
       parent's (condition (iii)); otherwise it is dissolved into its parent (its children become the
       parent's). Dissolving keeps (i): the parent's height is at least the child's.

    Leaves get ``NoiseAmount = 0`` and their own separation time (0 when a component is not
    ``(1 - eps^2)``-separated from the others even without noise).

    Args:
        gm: the Gaussian mixture (its process is the forward process).
        eps: the tree's tolerance, in ``(0, 1)``.
        key: key of the Monte Carlo forward TVs (only used when no closed form or quadrature applies).
        n_samples: Monte Carlo sample size of the forward TVs.
        n_grid: number of times of the crossing grids on ``[0, t_max]``.
    """
    gm = _check_mixture(gm)
    eps = _check_eps(eps)
    n_samples = check_positive_int(n_samples, "n_samples", minimum=8)
    n_grid = check_positive_int(n_grid, "n_grid", minimum=3)
    key = jr.key(0) if key is None else check_key(key)
    k = gm.n_components
    t_max = float(gm.process.t_max)
    tau = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            tv = _tv_function(gm, [i], [j], jr.fold_in(key, i * k + j), n_samples)
            tau[i, j] = tau[j, i] = _tv_crossing(tv, t_max, eps, n_grid)
    opts = {"key": key, "n_samples": n_samples, "n_grid": n_grid}
    dissolved: list[tuple[int, ...]] = []

    def build(cand: Any, parent_height: float, is_root: bool) -> list[EpsTreeNode]:
        comps, height, kids = cand
        if not kids:
            sep = separation_time(gm, list(comps), eps, **opts) if k > 1 else t_max
            return [EpsTreeNode(comps, 0.0, sep)]
        sep = t_max if is_root else separation_time(gm, list(comps), eps, **opts)
        keep = is_root or (sep >= height and height < parent_height)
        if not keep:
            dissolved.append(comps)
            return [n for c in kids for n in build(c, parent_height, False)]
        children = tuple(n for c in kids for n in build(c, height, False))
        return [EpsTreeNode(comps, float(height), float(sep), children)]

    if k == 1:
        root = EpsTreeNode((0,), 0.0, t_max)
    else:
        (root,) = build(_complete_linkage(tau), math.inf, True)
    order = sorted(root.internal_nodes(), key=lambda n: -n.noise_amount)
    return EpsMixtureTree(
        root,
        eps,
        tau,
        tuple(dissolved),
        tuple(n.name for n in order),
        tuple(n.noise_amount for n in order),
    )


class EpsTreeDecision(eqx.Module):
    r"""One decision of an eps-mixture tree against the exact noising-denoising law.

    Starting group ``start`` (a child of ``node``, or ``node`` itself for the keep side), ``T_hat`` =
    ``NoiseAmount(node)``; predicted: ``TV(p^{start, T_hat}, p^{node}) <= error = eps (1 + max(1, W) /
    sqrt 2)``; measured: the exact TV (route (a), :func:`window_curve`) with its standard error.

    Attributes:
        node: the component indices of the node ``u``.
        start: the component indices of the starting group (a child of ``u``, or ``u`` itself).
        t_hat: the noising time, ``NoiseAmount(u)``.
        odds: ``W = W(rest) / W(u)``.
        error: the predicted bound ``eps (1 + max(1, W) / sqrt 2)``.
        exact_tv: the measured ``TV(p^{start, t_hat}, p^u)``.
        exact_tv_stderr: its standard error.
    """

    node: tuple[int, ...]
    start: tuple[int, ...]
    t_hat: float
    odds: float
    error: float
    exact_tv: float
    exact_tv_stderr: float

    @property
    def holds(self) -> bool:
        return bool(self.exact_tv <= self.error)


def eps_tree_decisions(
    gm: GaussianMixture,
    tree: EpsMixtureTree,
    *,
    key: jax.Array,
    sampler: str = "sde",
    **curve_options: Any,
) -> tuple[EpsTreeDecision, ...]:
    r"""The exact TV of the noising-denoising output at every decision time of an eps-mixture tree.

    For each internal node ``u`` and each child ``c``: ``TV(p^{c, T}, p^u)`` at ``T = NoiseAmount(u)`` (the
    child's feature is forgotten, ``u`` is kept); for each non-root ``u`` also ``TV(p^{u, T}, p^u)`` (``u``
    survives the noising). Theorem 2 bounds both by ``eps (1 + max(1, W_u) / sqrt 2)``. ``curve_options``
    go to :func:`window_curve` (e.g. ``n_outer``, ``n_inner``, ``n_gh``).

    Args:
        gm: the Gaussian mixture the tree was built for.
        tree: an :class:`EpsMixtureTree` of ``gm``.
        key: key of the route (a) window curves.
        sampler: ``"sde"`` (reverse SDE) or ``"ode"`` (probability-flow ODE).
        curve_options: options of :func:`window_curve`.
    """
    gm = _check_mixture(gm)
    if not isinstance(tree, EpsMixtureTree):
        raise TypeError(
            f"`tree` must be an EpsMixtureTree (see eps_mixture_tree), got {type(tree).__name__}."
        )
    if max(tree.root.components) >= gm.n_components:
        raise ValueError("`tree` names components that `gm` does not have.")
    key = check_key(key)
    out = []
    for n_idx, node in enumerate(tree.root.internal_nodes()):
        t_hat = node.noise_amount
        if not t_hat > 0:
            raise ValueError(f"Node {node.name} has NoiseAmount {t_hat}: decision times must be positive.")
        odds = group_odds(gm, list(node.components))
        err = follow_up_error(tree.eps, odds)
        starts = [c.components for c in node.children]
        if node is not tree.root:
            starts.append(node.components)
        for s_idx, start in enumerate(starts):
            kk = jr.fold_in(jr.fold_in(key, n_idx), s_idx)
            curve = window_curve(
                gm, list(start), list(node.components), [t_hat], key=kk, sampler=sampler, **curve_options
            )
            out.append(
                EpsTreeDecision(
                    node.components,
                    tuple(start),
                    float(t_hat),
                    odds,
                    err,
                    float(curve.tv[0]),
                    float(curve.tv_stderr[0]),
                )
            )
    return tuple(out)


def eps_tree_record(tree: EpsMixtureTree, decisions: Sequence[EpsTreeDecision] = ()) -> dict[str, Any]:
    """A JSON-ready dict of an eps-mixture tree (nodes, noise levels, separation times) and its decisions.

    Args:
        tree: the :class:`EpsMixtureTree` of :func:`eps_mixture_tree`.
        decisions: the :class:`EpsTreeDecision` results of :func:`eps_tree_decisions` (default none: the
            ``decisions`` entry is an empty list).
    """

    def node_rec(n: EpsTreeNode) -> dict[str, Any]:
        return {
            "components": list(n.components),
            "noise_amount": n.noise_amount,
            "separation_time": n.separation_time,
            "children": [node_rec(c) for c in n.children],
        }

    return {
        "eps": tree.eps,
        "tree": tree.root.nested(),
        "root": node_rec(tree.root),
        "depth": tree.root.depth(),
        "pair_times": tree.pair_times,
        "dissolved": [list(g) for g in tree.dissolved],
        "order": list(tree.decision_order),
        "times": list(tree.decision_times),
        "satisfies_definition": tree.satisfies_definition(),
        "decisions": [
            {
                "node": list(d.node),
                "start": list(d.start),
                "t_hat": d.t_hat,
                "odds": d.odds,
                "error": d.error,
                "exact_tv": d.exact_tv,
                "exact_tv_stderr": d.exact_tv_stderr,
                "holds": d.holds,
            }
            for d in decisions
        ],
    }
