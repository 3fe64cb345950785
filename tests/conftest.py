"""Test configuration: float64 everywhere (the analytic checks need it) and shared fixtures.

Studies that should run in float32 are exercised through the ``diffsim`` command in a subprocess
(``tests/test_cli.py``), exactly as users run them.

Runtime type checking: before anything imports ``diffsim``, jaxtyping's import hook is installed over
the modules listed in ``TYPECHECKED`` with beartype (``diffsim._typecheck.typechecker``), so every
annotation — shapes and dtypes included — is checked on every call during the tests. Set the
environment variable ``DIFFSIM_TYPECHECK=0`` to run the suite without the hook (e.g. to time it), or
``DIFFSIM_TYPECHECK_ALL=1`` to check every module of ``diffsim``, not only ``TYPECHECKED``.
"""

import os

from jaxtyping import install_import_hook


#: the modules checked. Not yet: ``diffsim.sampling`` (``simulate``'s ``save`` is annotated without the NumPy
#: integer arrays it accepts), ``diffsim.scores.adapters``, ``diffsim.studies``, ``diffsim.cli``;
#: ``DIFFSIM_TYPECHECK_ALL=1`` checks the whole package (to find what is left)
TYPECHECKED = (
    ["diffsim"]
    if os.environ.get("DIFFSIM_TYPECHECK_ALL")
    else [
        "diffsim.processes",
        "diffsim.scores._base",
        "diffsim.scores.mixture",
        "diffsim.scores.empirical",
        "diffsim.scores.guidance",
        "diffsim.scores.conditional",
        "diffsim.scores.random_features",
        "diffsim.scores.nn",
        "diffsim.analysis.metrics",
        "diffsim.analysis.fokker_planck",
        "diffsim.analysis.information",
        "diffsim.analysis.windows",
        "diffsim.analysis.ridge",
        "diffsim.data",
        "diffsim.training",
    ]
)

if os.environ.get("DIFFSIM_TYPECHECK", "1") != "0":
    install_import_hook(TYPECHECKED, "diffsim._typecheck.typechecker")

import jax  # noqa: E402
import pytest  # noqa: E402


jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)
