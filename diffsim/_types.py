"""jaxtyping aliases shared across diffsim.

Shapes use these names throughout the package:

- ``d``: dimension of one data point;
- ``K``: number of mixture components;
- ``N``: number of particles (a batch of points);
- ``S``: number of saved times of a trajectory;
- ``M``: number of data points of an empirical distribution.
"""

from __future__ import annotations

from typing import Union

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real, Shaped


Scalar = Float[Array, ""]
ScalarLike = Union[float, int, Real[ArrayLike, ""]]
Point = Float[Array, " d"]
Points = Float[Array, "N d"]
Key = jax.Array
Times = Float[Array, " S"]

__all__ = [
    "Array",
    "ArrayLike",
    "Float",
    "Int",
    "Key",
    "Point",
    "Points",
    "Real",
    "Scalar",
    "ScalarLike",
    "Shaped",
    "Times",
    "np",
]
