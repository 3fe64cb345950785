"""Deprecated location of the score networks: use :mod:`diffsim.scores.nn` (this module re-exports it so
that ``from diffsim.scores.networks import X`` keeps working)."""

from .nn import (
    PARAMETRISATIONS as PARAMETRISATIONS,
    AbstractTokenScore as AbstractTokenScore,
    Dense as Dense,
    FlaxScore as FlaxScore,
    GuidedTokenScore as GuidedTokenScore,
    MLPScore as MLPScore,
    TokenBoundScore as TokenBoundScore,
    UNetScore as UNetScore,
    check_tokens as check_tokens,
    convert_parametrisation as convert_parametrisation,
    fourier_time_features as fourier_time_features,
    init_rng as init_rng,
    input_scale as input_scale,
)


__all__ = [
    "PARAMETRISATIONS",
    "AbstractTokenScore",
    "Dense",
    "FlaxScore",
    "GuidedTokenScore",
    "MLPScore",
    "TokenBoundScore",
    "UNetScore",
    "check_tokens",
    "convert_parametrisation",
    "fourier_time_features",
    "init_rng",
    "input_scale",
]
