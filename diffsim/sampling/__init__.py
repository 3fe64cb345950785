"""Samplers: fixed-grid kernels, time grids, the ``simulate`` entry point and Diffrax-backed solves."""

from . import grids as grids
from ._kernels import (
    DDIM as DDIM,
)
from ._kernels import (
    DDPM as DDPM,
)
from ._kernels import (
    SAMPLERS as SAMPLERS,
)
from ._kernels import (
    AbstractFixedSampler as AbstractFixedSampler,
)
from ._kernels import (
    AbstractSampler as AbstractSampler,
)
from ._kernels import (
    DPMSolver2M as DPMSolver2M,
)
from ._kernels import (
    Euler as Euler,
)
from ._kernels import (
    EulerMaruyama as EulerMaruyama,
)
from ._kernels import (
    ForwardEulerMaruyama as ForwardEulerMaruyama,
)
from ._kernels import (
    ForwardExact as ForwardExact,
)
from ._kernels import (
    Heun as Heun,
)
from ._kernels import (
    PredictorCorrector as PredictorCorrector,
)
from ._kernels import (
    get_sampler as get_sampler,
)
from .adaptive import (
    ADAPTIVE as ADAPTIVE,
)
from .adaptive import (
    AdaptiveODE as AdaptiveODE,
)
from .adaptive import (
    DiffraxSDE as DiffraxSDE,
)
from .adaptive import (
    flow as flow,
)
from .adaptive import (
    log_likelihood as log_likelihood,
)
from .sharding import (
    PARTICLE_AXIS as PARTICLE_AXIS,
)
from .sharding import (
    initialize_multihost as initialize_multihost,
)
from .sharding import (
    particle_mesh as particle_mesh,
)
from .sharding import (
    particle_sharding as particle_sharding,
)
from .sharding import (
    simulate_sharded as simulate_sharded,
)
from .simulate import (
    AbstractAdaptiveSampler as AbstractAdaptiveSampler,
)
from .simulate import (
    Trajectory as Trajectory,
)
from .simulate import (
    clone as clone,
)
from .simulate import (
    noise_denoise as noise_denoise,
)
from .simulate import (
    simulate as simulate,
)
