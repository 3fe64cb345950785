"""jaxtyping aliases shared across diffsim.

Shapes use these names throughout the package:

- ``d``: dimension of one data point;
- ``K``: number of mixture components;
- ``N``: number of particles (a batch of points);
- ``S``: number of saved times of a trajectory;
- ``M``: number of data points of an empirical distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real, Shaped


Scalar = Float[Array, ""]
ScalarLike = float | int | Real[ArrayLike, ""]
Point = Float[Array, " d"]
Points = Float[Array, "N d"]
Key = jax.Array
Times = Float[Array, " S"]

#: What a public function that converts its argument with ``jnp.asarray`` accepts: a JAX or NumPy
#: array, a NumPy or Python scalar, or (nested) Python lists / tuples of numbers.
ArrayOrSequence = ArrayLike | Sequence[Any]

#: Which grid indices a run saves (``diffsim.simulate``'s ``save``): ``"final"`` or ``"all"``, an int stride
#: (Python or NumPy integer), or grid indices as a sequence of ints or a 1-D integer NumPy / JAX array.
SaveSpec = str | int | np.integer | Sequence[int] | Int[ArrayLike, " n_saved"]

__all__ = [
    "Array",
    "ArrayLike",
    "ArrayOrSequence",
    "Float",
    "Int",
    "Key",
    "Point",
    "Points",
    "Real",
    "Scalar",
    "SaveSpec",
    "ScalarLike",
    "Shaped",
    "Times",
    "np",
]
