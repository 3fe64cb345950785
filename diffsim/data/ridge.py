"""The 2-D training sets of the ridge study (He, Qiu & Tao 2026, arXiv 2602.06021): a few points in the
plane, centred at the origin, after the paper's code (``config.py`` MODE_CONFIGS, side 5) and its Fig. 1
(13 points)."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


TRAINING_SETS = (
    "two_points",
    "three_points",
    "square",
    "square_centre",
    "triangle_hypotenuse",
    "grid3x3",
    "thirteen",
)


def training_set(name: str) -> Float[np.ndarray, "M 2"]:
    """The 2-D training set ``name`` (one of :data:`TRAINING_SETS`), centred at the origin (float64)."""
    if name == "two_points":
        pts = [[-3.0, 0.0], [3.0, 0.0]]
    elif name == "three_points":
        pts = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]
    elif name == "square":
        pts = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]]
    elif name == "square_centre":
        pts = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0], [2.5, 2.5]]
    elif name == "triangle_hypotenuse":
        pts = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [2.5, 2.5]]
    elif name == "grid3x3":
        pts = [[i, j] for i in (-1.0, 0.0, 1.0) for j in (-1.0, 0.0, 1.0)]
    elif name == "thirteen":
        rng = np.random.default_rng(13)
        pts = []
        while len(pts) < 13:
            c = rng.uniform(-3.0, 3.0, size=2)
            if all(np.hypot(*(c - q)) >= 1.2 for q in pts):
                pts.append(c)
    else:
        raise ValueError(f"Unknown training set {name!r}; known: {TRAINING_SETS}.")
    arr = np.asarray(pts, float)
    return arr - arr.mean(axis=0)
