"""diffsim: a JAX engine that simulates diffusion-model samplers so that theory can be checked by numbers.

The public API, re-exported explicitly::

    import diffsim as ds
    score = ds.GaussianMixture(weights, means, covs, process=ds.VP.ou())
    traj = ds.simulate(score, "ddim", 50, n=100_000, key=jax.random.key(0))
"""

from . import processes as processes
from . import sampling as sampling
from . import scores as scores
from .processes import VE as VE
from .processes import VP as VP
from .processes import AbstractProcess as AbstractProcess
from .sampling import (
    Trajectory as Trajectory,
)
from .sampling import (
    clone as clone,
)
from .sampling import (
    flow as flow,
)
from .sampling import (
    grids as grids,
)
from .sampling import (
    log_likelihood as log_likelihood,
)
from .sampling import (
    noise_denoise as noise_denoise,
)
from .sampling import (
    simulate as simulate,
)
from .scores import (
    AbstractAnalyticScore as AbstractAnalyticScore,
)
from .scores import (
    AbstractScore as AbstractScore,
)
from .scores import (
    ClassifierFreeGuidance as ClassifierFreeGuidance,
)
from .scores import (
    ClassifierGuidance as ClassifierGuidance,
)
from .scores import (
    EmpiricalScore as EmpiricalScore,
)
from .scores import (
    GaussianMixture as GaussianMixture,
)
from .scores import (
    MixtureClassifier as MixtureClassifier,
)


__version__ = "0.1.0"
