"""Samplers: one registry of sampler classes, fixed-grid kernels, time grids, the ``simulate`` entry point
and Diffrax-backed solves."""

from . import grids as grids
from ._kernels import (
    DDIM as DDIM,
    DDPM as DDPM,
    DPMSolver2M as DPMSolver2M,
    Euler as Euler,
    EulerMaruyama as EulerMaruyama,
    ForwardEulerMaruyama as ForwardEulerMaruyama,
    ForwardExact as ForwardExact,
    Heun as Heun,
    PredictorCorrector as PredictorCorrector,
)
from ._noise import StepNoise as StepNoise, normal_like as normal_like, split_noise as split_noise
from ._peer_samplers import (
    DPMPP2MSDE as DPMPP2MSDE,
    DPMPP3MSDE as DPMPP3MSDE,
    LMS as LMS,
    DPMPP2SAncestral as DPMPP2SAncestral,
    EulerAncestral as EulerAncestral,
    UniPC as UniPC,
    ancestral_step as ancestral_step,
)
from ._registry import (
    ADAPTIVE as ADAPTIVE,
    SAMPLER_REGISTRY as SAMPLER_REGISTRY,
    SAMPLERS as SAMPLERS,
    AbstractAdaptiveSampler as AbstractAdaptiveSampler,
    AbstractFixedSampler as AbstractFixedSampler,
    AbstractSampler as AbstractSampler,
    State as State,
    get_sampler as get_sampler,
    unregister_sampler as unregister_sampler,
)
from ._sweep import sweep as sweep, sweep_fn as sweep_fn
from ._trajectory import Trajectory as Trajectory
from .adaptive import (
    AdaptiveODE as AdaptiveODE,
    DiffraxSDE as DiffraxSDE,
    Dopri5 as Dopri5,
    Dopri8 as Dopri8,
    Tsit5 as Tsit5,
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
from .simulate import clone as clone, noise_denoise as noise_denoise, simulate as simulate
