"""Scores: the abstract interface, exact mixture and empirical scores, and parametrisation conversions."""

from ._base import (
    AbstractAnalyticScore as AbstractAnalyticScore,
)
from ._base import (
    AbstractScore as AbstractScore,
)
from ._base import (
    eps_from_score as eps_from_score,
)
from ._base import (
    score_from_eps as score_from_eps,
)
from ._base import (
    score_from_v as score_from_v,
)
from ._base import (
    score_from_x0 as score_from_x0,
)
from ._base import (
    v_from_score as v_from_score,
)
from ._base import (
    x0_from_score as x0_from_score,
)
from .empirical import EmpiricalScore as EmpiricalScore
from .guidance import (
    ClassifierFreeGuidance as ClassifierFreeGuidance,
)
from .guidance import (
    ClassifierGuidance as ClassifierGuidance,
)
from .guidance import (
    MixtureClassifier as MixtureClassifier,
)
from .guidance import (
    guided_mixture as guided_mixture,
)
from .mixture import GaussianMixture as GaussianMixture
