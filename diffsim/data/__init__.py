from . import ridge as ridge
from ._guidance_mixtures import (
    GuidanceCase as GuidanceCase,
    collinear_three as collinear_three,
    designed_split_mixture as designed_split_mixture,
    guidance_cases as guidance_cases,
    mixture_1d as mixture_1d,
    random_three_component_1d as random_three_component_1d,
)
from ._window_mixtures import (
    hierarchy_2d as hierarchy_2d,
    random_two_clusters as random_two_clusters,
    symmetric_two_gaussians as symmetric_two_gaussians,
)
from ._sampler_mixtures import sampler_test_mixture as sampler_test_mixture
from ._token_digits import (
    TokenDigits as TokenDigits,
    kde_token_mixture as kde_token_mixture,
    token_digits as token_digits,
    token_frequencies as token_frequencies,
)
