"""diffsim: a JAX engine that simulates diffusion-model samplers so that theory can be checked by numbers.

The public API, re-exported explicitly::

    import diffsim as ds
    score = ds.GaussianMixture(weights, means, covs, process=ds.VP.ou())
    traj = ds.simulate(score, "ddim", 50, n=100_000, key=jax.random.key(0))
"""

import typing as _typing


@_typing.no_type_check
def __getattr__(name: str):
    # ``diffsim._typecheck`` (the test-time checker, needs beartype) is loaded on first access only: the
    # jaxtyping import hook of ``tests/conftest.py`` looks it up while this package is still importing.
    if name == "_typecheck":
        import importlib

        return importlib.import_module(f"{__name__}._typecheck")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from . import (  # noqa: E402
    analysis as analysis,
    data as data,
    processes as processes,
    sampling as sampling,
    scores as scores,
    training as training,
)
from ._checks import checked as checked, checks_enabled as checks_enabled, set_checks as set_checks  # noqa: E402
from ._version import __version__ as __version__  # noqa: E402
from .processes import VE as VE, VP as VP, AbstractProcess as AbstractProcess  # noqa: E402
from .sampling import (  # noqa: E402
    Trajectory as Trajectory,
    clone as clone,
    flow as flow,
    grids as grids,
    log_likelihood as log_likelihood,
    noise_denoise as noise_denoise,
    simulate as simulate,
)
from .scores import (  # noqa: E402
    AbstractAnalyticScore as AbstractAnalyticScore,
    AbstractScore as AbstractScore,
    ClassifierFreeGuidance as ClassifierFreeGuidance,
    ClassifierGuidance as ClassifierGuidance,
    EmpiricalScore as EmpiricalScore,
    GaussianMixture as GaussianMixture,
    MixtureClassifier as MixtureClassifier,
)
