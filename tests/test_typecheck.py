"""The runtime type checker is really installed over ``diffsim`` (see ``tests/conftest.py``)."""

import os

import jax.numpy as jnp
import jaxtyping
import pytest

from diffsim.scores.mixture import GaussianMixture


@pytest.mark.skipif(
    os.environ.get("DIFFSIM_TYPECHECK", "1") == "0", reason="hook switched off (DIFFSIM_TYPECHECK=0)"
)
def test_import_hook_checks_annotations():
    mixture = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0], [1.0]]), jnp.ones((2, 1, 1)))
    assert issubclass(jaxtyping.TypeCheckError, TypeError)
    with pytest.raises(jaxtyping.TypeCheckError, match="t"):
        mixture.score(jnp.zeros(1), "not a time")
