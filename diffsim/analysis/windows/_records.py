r"""Plain JSON-ready records (dicts of floats, lists and arrays) of window results, for caches and reports.

Short keys: a curve is ``{t, tv, se, ri, ri_se, rt, rt_se}`` (``ri``/``rt``: retentions of ``S_init`` and
``S_targ``); bounds and windows keep their field names (``intra``/``inter`` for the separations).
"""

from __future__ import annotations

from typing import Any

from ._bounds import TheoremBounds
from ._curves import WindowCurve
from ._reading import Window, critical_window, read_window
from ._trees import TreeNode, TreeWindows


__all__ = [
    "bounds_record",
    "critical_window_record",
    "curve_record",
    "tree_nested",
    "tree_windows_record",
    "window_record",
]


def curve_record(c: WindowCurve) -> dict[str, Any]:
    """``{t, tv, se, ri, ri_se, rt, rt_se}`` of a :class:`WindowCurve`.

    Args:
        c: the curve; its arrays are stored as they are (not copied or converted to lists).
    """
    return {
        "t": c.t_hats,
        "tv": c.tv,
        "se": c.tv_stderr,
        "ri": c.retention_init,
        "ri_se": c.retention_init_stderr,
        "rt": c.retention_targ,
        "rt_se": c.retention_targ_stderr,
    }


def window_record(w: Window) -> dict[str, Any]:
    """Ends, standard errors and censoring flags of a :class:`Window`.

    Args:
        w: the window; the keys are ``lower``, ``upper``, ``lower_se``, ``upper_se``, ``lower_censored``,
            ``upper_censored`` (``eps`` is not stored).
    """
    return {
        "lower": w.lower,
        "upper": w.upper,
        "lower_se": w.lower_stderr,
        "upper_se": w.upper_stderr,
        "lower_censored": w.lower_censored,
        "upper_censored": w.upper_censored,
    }


def critical_window_record(keep: WindowCurve, forget: WindowCurve, eps: float) -> dict[str, Any]:
    """Keep/forget curves and the critical window ``[keep, forget]`` (with standard errors) they give.

    Args:
        keep: the keep :class:`WindowCurve` (``s_targ == s_init``).
        forget: the forget :class:`WindowCurve` (same ``s_init``, parent group as ``s_targ``).
        eps: the TV tolerance passed to :func:`critical_window`.
    """
    crit = critical_window(keep, forget, eps)
    return {
        "keep_curve": curve_record(keep),
        "forget_curve": curve_record(forget),
        "keep": crit.keep,
        "forget": crit.forget,
        "keep_se": crit.keep_stderr,
        "forget_se": crit.forget_stderr,
    }


def bounds_record(b: TheoremBounds) -> dict[str, Any]:
    """The bounds, tolerances and separations of a :class:`TheoremBounds`.

    Args:
        b: the bounds; the groups, ``eps`` and ``sampler`` are not stored.
    """
    return {
        "t_lower": b.t_lower,
        "t_lower_w2": b.t_lower_w2,
        "t_upper": b.t_upper,
        "t_upper_numerical": b.t_upper_numerical,
        "eps_lower": b.eps_lower,
        "eps_upper": b.eps_upper,
        "intra": b.intra_separation,
        "inter": b.inter_separation,
    }


def tree_windows_record(tw: TreeWindows, eps: float) -> dict[str, Any]:
    """Per internal node: per child the critical window, bounds, curves and the Li-Chen window
    ``{T : TV(p^{child,T}, p^{node}) <= eps}`` (``lichen``); the node's decision and speciation times; and
    the decision order/times of the tree.

    Args:
        tw: the :class:`TreeWindows` of :func:`tree_windows`.
        eps: the TV tolerance for the Li-Chen windows read off the forget curves (normally the ``eps`` the
            windows were computed with).
    """
    nodes = []
    for nw in tw.nodes:
        kids = []
        for c, kc, fc, win, kb, fb in zip(
            nw.children,
            nw.keep_curves,
            nw.forget_curves,
            nw.windows,
            nw.keep_bounds,
            nw.forget_bounds,
            strict=False,
        ):
            lc = read_window(fc, eps)  # the Li-Chen window of (S_init = c, S_targ = node)
            kids.append(
                {
                    "child": list(c.components),
                    "keep": win.keep,
                    "forget": win.forget,
                    "keep_se": win.keep_stderr,
                    "forget_se": win.forget_stderr,
                    "keep_bounds": bounds_record(kb),
                    "forget_bounds": bounds_record(fb),
                    "lichen": window_record(lc),
                    "keep_curve": curve_record(kc),
                    "forget_curve": curve_record(fc),
                }
            )
        nodes.append(
            {
                "node": list(nw.node.components),
                "children": kids,
                "decision_time": nw.decision_time,
                "decision_time_bounds": nw.decision_time_bounds,
                "speciation_time": nw.speciation_time,
            }
        )
    return {"nodes": nodes, "order": list(tw.decision_order), "times": list(tw.decision_times)}


def tree_nested(node: TreeNode) -> Any:
    """The tree as nested lists of component indices (a leaf is its index).

    Args:
        node: the root (or any node) of a tree from :func:`mixture_tree`.
    """
    if node.is_leaf:
        return node.components[0]
    return [tree_nested(c) for c in node.children]
