"""The configuration of the ``information`` study (shared by its part modules)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.synthetic import GATES
from ._config import check_fields


_POSITIVE = (
    "n_logsnr n_noise n_per_component curve_logsnr curve_noise n_nll_points block_size n_block_samples "
)
_POSITIVE += "bias_per_component ablation_repeats ablation_per_component digits_n_images digits_n_logsnr "
_POSITIVE += "digits_n_noise digits_train_steps digits_width"
_POSITIVE += (
    " cases_per_component intervention_samples intervention_steps trained_bias_steps trained_bias_n_train"
)
_POSITIVE += (
    " trained_homonym_steps trained_homonym_n_train trained_homonym_samples trained_homonym_sample_steps"
)


@dataclass(frozen=True)
class Config:
    """Configuration of the ``information`` study (defaults: a few CPU minutes; ``--quick``: ~30 s)."""

    seed: int = 0
    # estimator for gates, blocks and the bias sweep: truncated-logistic log-SNR importance sampling
    n_logsnr: int = 256
    n_noise: int = 16
    logsnr_loc: float = -2.0
    logsnr_scale: float = 2.0
    logsnr_clip: float = 5.0
    stratified: bool = True
    n_se: float = 4.0
    tolerance_floor_bits: float = 0.005
    # gates
    gates: tuple[str, ...] = GATES
    gate_separation: float = 6.0
    gate_std: float = 0.5
    n_per_component: int = 16
    # MMSE curves and ITD
    curve_logsnr: int = 96
    curve_noise: int = 256
    n_nll_points: int = 32
    # pixel maps on block data
    block_size: int = 4
    block_separation: float = 3.0
    block_std: float = 0.6
    n_block_samples: int = 64
    # bias sweep
    correlations: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
    bias_per_component: int = 16
    # ablation
    ablation_gate: str = "AND"
    ablation_logsnr: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    ablation_noise: tuple[int, ...] = (1, 4, 16)
    ablation_repeats: int = 4
    ablation_per_component: int = 8
    # digits
    digits: bool = True
    digits_network: bool = True
    digits_attribute: str = "bar"
    digits_bandwidth: float = 0.3
    digits_n_images: int = 16
    digits_n_logsnr: int = 64
    digits_n_noise: int = 4
    digits_train_steps: int = 4000
    digits_token_dropout: float = 0.5
    digits_width: int = 256
    digits_depth: int = 3
    # case studies (``_information_cases.py``): CPID, synonyms, homonym, co-hyponyms, prompt intervention,
    # the bias sweep on a trained network
    cases: bool = True
    cases_per_component: int = 16
    synonym_shared_probability: float = 0.25
    intervention_agreement: float = 0.9
    intervention_samples: int = 256
    intervention_steps: int = 50
    trained_bias: bool = True
    trained_bias_correlations: tuple[float, ...] = (0.0, 0.5, 0.9)
    trained_bias_steps: int = 3000
    trained_bias_n_train: int = 8192
    # the homonym on two trained networks (one trained where the context word decides the meaning, one where
    # it does not), measured on the same data; samples: DDIM given the homonym and each context word
    trained_homonym: bool = True
    trained_homonym_steps: int = 3000
    trained_homonym_n_train: int = 8192
    trained_homonym_samples: int = 256
    trained_homonym_sample_steps: int = 50
    cache_dir: str = ""

    def __post_init__(self):
        check_fields(
            self,
            counts=("digits_depth",),
            positive=(
                "logsnr_scale gate_std gate_separation block_std block_separation digits_bandwidth n_se"
            ).split(),
            nonnegative=("tolerance_floor_bits", "logsnr_clip"),
        )
        for name in _POSITIVE.split():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        for g in self.gates + (self.ablation_gate,):
            if g.upper() not in GATES:
                raise ValueError(f"Unknown gate {g!r}; gates are {GATES}.")
        for rho in self.correlations:
            if not -1.0 < rho < 1.0:
                raise ValueError(f"`correlations` must lie in (-1, 1), got {rho}.")
        for rho in self.trained_bias_correlations:
            if not -1.0 < rho < 1.0:
                raise ValueError(f"`trained_bias_correlations` must lie in (-1, 1), got {rho}.")
        if not 0.0 < self.synonym_shared_probability < 1.0:
            raise ValueError("`synonym_shared_probability` must lie in (0, 1).")
        if not 0.0 < self.intervention_agreement <= 1.0:
            raise ValueError("`intervention_agreement` must lie in (0, 1].")
        if not 0.0 <= self.digits_token_dropout < 1.0:
            raise ValueError(f"`digits_token_dropout` must lie in [0, 1), got {self.digits_token_dropout}.")
        budget = self.ablation_logsnr + self.ablation_noise
        if not self.ablation_logsnr or not self.ablation_noise or min(budget) < 1:
            raise ValueError("`ablation_logsnr` and `ablation_noise` must be non-empty positive integers.")


# =====================================================================================================
# the study
# =====================================================================================================
