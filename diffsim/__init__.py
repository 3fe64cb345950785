"""diffsim: a JAX engine that simulates diffusion-model samplers so that theory can be checked by numbers.

The public API, re-exported explicitly::

    import diffsim as ds
    score = ds.GaussianMixture(weights, means, covs, process=ds.VP.ou())
    traj = ds.simulate(score, "ddim", 50, n=100_000, key=jax.random.key(0))
"""

from . import (
    analysis as analysis,
    data as data,
    processes as processes,
    sampling as sampling,
    scores as scores,
    training as training,
)
from ._checks import checked as checked, checks_enabled as checks_enabled, set_checks as set_checks
from ._version import __version__ as __version__
from .processes import VE as VE, VP as VP, AbstractProcess as AbstractProcess
from .sampling import (
    Trajectory as Trajectory,
    clone as clone,
    flow as flow,
    grids as grids,
    log_likelihood as log_likelihood,
    noise_denoise as noise_denoise,
    simulate as simulate,
)
from .scores import (
    AbstractAnalyticScore as AbstractAnalyticScore,
    AbstractScore as AbstractScore,
    ClassifierFreeGuidance as ClassifierFreeGuidance,
    ClassifierGuidance as ClassifierGuidance,
    EmpiricalScore as EmpiricalScore,
    GaussianMixture as GaussianMixture,
    MixtureClassifier as MixtureClassifier,
)
