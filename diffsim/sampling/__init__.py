"""Samplers: fixed-grid kernels, time grids, the ``simulate`` entry point and Diffrax-backed solves."""

from . import grids as grids
from ._kernels import (
    DDIM as DDIM,
    DDPM as DDPM,
    SAMPLERS as SAMPLERS,
    AbstractFixedSampler as AbstractFixedSampler,
    AbstractSampler as AbstractSampler,
    DPMSolver2M as DPMSolver2M,
    Euler as Euler,
    EulerMaruyama as EulerMaruyama,
    ForwardEulerMaruyama as ForwardEulerMaruyama,
    ForwardExact as ForwardExact,
    Heun as Heun,
    PredictorCorrector as PredictorCorrector,
    get_sampler as get_sampler,
)
from .adaptive import (
    ADAPTIVE as ADAPTIVE,
    AdaptiveODE as AdaptiveODE,
    DiffraxSDE as DiffraxSDE,
    flow as flow,
    log_likelihood as log_likelihood,
)
from .sharding import (
    PARTICLE_AXIS as PARTICLE_AXIS,
    initialize_multihost as initialize_multihost,
    particle_mesh as particle_mesh,
    particle_sharding as particle_sharding,
    simulate_sharded as simulate_sharded,
)
from .simulate import (
    AbstractAdaptiveSampler as AbstractAdaptiveSampler,
    Trajectory as Trajectory,
    clone as clone,
    noise_denoise as noise_denoise,
    simulate as simulate,
)
