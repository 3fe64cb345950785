"""Adapters: external denoisers (batched JAX callables, Equinox and Flax modules, PyTorch modules, diffusers
UNets with their schedulers and text encoders) and classifiers as diffsim scores.

See the "Your own model" page of the docs. torch, diffusers, transformers and flax are optional extras,
imported only when a model of that kind is wrapped.
"""

from ._batching import TIME_INPUTS as TIME_INPUTS, batched_call as batched_call
from ._callable import CallableScore as CallableScore, model_time as model_time
from ._classifier import CallableClassifier as CallableClassifier, TorchClassifier as TorchClassifier
from ._diffusers import (
    PREDICTION_TYPES as PREDICTION_TYPES,
    DiffusersPipeline as DiffusersPipeline,
    from_diffusers as from_diffusers,
    load_pipeline as load_pipeline,
    parametrisation_from_scheduler as parametrisation_from_scheduler,
    process_from_scheduler as process_from_scheduler,
)
from ._torch import TorchFunction as TorchFunction, TorchScore as TorchScore
