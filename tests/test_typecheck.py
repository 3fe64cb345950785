"""The runtime type checker is really installed over ``diffsim`` (see ``tests/conftest.py``), and the
annotations it checks say what the functions accept."""

import os

import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import numpy as np
import pytest

import diffsim as ds
from diffsim.scores.mixture import GaussianMixture


HOOK_OFF = pytest.mark.skipif(
    os.environ.get("DIFFSIM_TYPECHECK", "1") == "0", reason="hook switched off (DIFFSIM_TYPECHECK=0)"
)
MIXTURE = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0], [1.0]]), jnp.ones((2, 1, 1)))


@HOOK_OFF
def test_import_hook_checks_annotations():
    assert issubclass(jaxtyping.TypeCheckError, TypeError)
    with pytest.raises(jaxtyping.TypeCheckError, match="t"):
        MIXTURE.score(jnp.zeros(1), "not a time")


@HOOK_OFF
def test_import_hook_covers_the_whole_package():
    """The sampling layer is checked too: a float ``save`` is not a save specification."""
    with pytest.raises(jaxtyping.TypeCheckError, match="save"):
        ds.simulate(MIXTURE, "euler", 3, n=2, key=jr.key(0), save=1.5)


def test_save_accepts_numpy_integers():
    """``save`` takes a NumPy integer stride and NumPy / JAX integer index arrays, as annotated."""
    ref = ds.simulate(MIXTURE, "euler", 4, n=2, key=jr.key(0), save=[0, 2, 4])
    for save in (np.int64(2), np.array([0, 2, 4]), jnp.array([0, 2, 4])):
        run = ds.simulate(MIXTURE, "euler", 4, n=2, key=jr.key(0), save=save)
        np.testing.assert_array_equal(np.asarray(run.ts), np.asarray(ref.ts))
        np.testing.assert_array_equal(np.asarray(run.xs), np.asarray(ref.xs))
