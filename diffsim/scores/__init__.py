"""Scores: the abstract interface, exact mixture and empirical scores, and parametrisation conversions."""

from . import adapters as adapters
from ._base import AbstractAnalyticScore as AbstractAnalyticScore, AbstractScore as AbstractScore
from ._conversions import (
    PARAMETRISATIONS as PARAMETRISATIONS,
    convert_parametrisation as convert_parametrisation,
    eps_from_score as eps_from_score,
    score_from_eps as score_from_eps,
    score_from_v as score_from_v,
    score_from_x0 as score_from_x0,
    v_from_score as v_from_score,
    x0_from_score as x0_from_score,
)
from .adapters import (
    CallableScore as CallableScore,
    TorchScore as TorchScore,
    from_diffusers as from_diffusers,
)
from .denoiser_shift import (
    DenoiserShiftScore as DenoiserShiftScore,
    SegmentDenoiserScore as SegmentDenoiserScore,
)
from .empirical import EmpiricalScore as EmpiricalScore
from .guidance import (
    ClassifierFreeGuidance as ClassifierFreeGuidance,
    ClassifierGuidance as ClassifierGuidance,
    MixtureClassifier as MixtureClassifier,
    guided_mixture as guided_mixture,
)
from .mixture import GaussianMixture as GaussianMixture
from .token_conditioned import TokenConditionedScore as TokenConditionedScore
