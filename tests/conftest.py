"""Test configuration: float64 everywhere (the analytic checks need it) and shared fixtures.

Studies that should run in float32 are exercised through the ``diffsim`` command in a subprocess
(``tests/test_cli.py``), exactly as users run them.
"""

import jax
import pytest


jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)
