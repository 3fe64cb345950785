"""Data: mixture constructors with known truth for the studies, and data sets.

- synthetic token mixtures and PID gates (``synthetic``), concept mixtures (``concepts``);
- the mixtures of the samplers, critical-windows and guidance studies;
- scikit-learn's 8x8 digits and an MNIST loader from a local path (``digits``), digits with a token
  attribute (``token_digits``);
- the ridge study's training sets (``ridge``) and an autoencoder for latent diffusion (``autoencoder``).

Data sets ship inside packages or are generated; nothing is downloaded.
"""

from . import autoencoder as autoencoder, digits as digits, ridge as ridge, synthetic as synthetic
from ._guidance_mixtures import (
    GuidanceCase as GuidanceCase,
    collinear_three as collinear_three,
    designed_split_mixture as designed_split_mixture,
    guidance_cases as guidance_cases,
    mixture_1d as mixture_1d,
    random_three_component_1d as random_three_component_1d,
)
from ._information_cases import (
    CO_HYPONYM_TARGETS as CO_HYPONYM_TARGETS,
    bias_sweep_mixture as bias_sweep_mixture,
    co_hyponyms as co_hyponyms,
    context_switch as context_switch,
    homonym as homonym,
    synonyms as synonyms,
)
from ._sampler_mixtures import sampler_test_mixture as sampler_test_mixture
from ._token_digits import (
    TokenDigits as TokenDigits,
    kde_token_mixture as kde_token_mixture,
    token_digits as token_digits,
    token_frequencies as token_frequencies,
)
from ._window_mixtures import (
    hierarchy_2d as hierarchy_2d,
    random_two_clusters as random_two_clusters,
    symmetric_two_gaussians as symmetric_two_gaussians,
)
from .concepts import concept_mixture as concept_mixture
