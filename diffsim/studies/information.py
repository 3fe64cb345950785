r"""Study ``information``: pointwise / pixel-wise MI and partial information decomposition (PID) from
denoisers (DiffusionPID, Dewan et al. NeurIPS 2024, on the I-MMSE estimators of Kong et al. ICLR 2023/2024),
on models whose ground truth is known. docs/information.md has the theory, every constant and the figures.

1. **gates** UNQ, XOR, RDN, AND, COPY as well-separated conditional mixtures: the engine's PID beside the
   exact continuous PID, the exact discrete PID of the well-separated limit and, when importable, ``dit``'s
   values.
2. **curves**: MMSE integrands of the AND gate per log-SNR (one draw vs dense); ITD's ``-log p(x)``.
3. **blocks**: pixel maps on block-structured data where each token controls a known block.
4. **bias**: a depicted and an undepicted token with prior correlation ``rho``; redundancy tracks ``rho``.
5. **ablation**: log-SNR samples x noise draws against the exact values.
6. **digits**: class and a synthetic attribute on 8x8 digits, an analytic kernel-density model (exact
   pointwise MIs) and a trained token network on the same log-SNRs and noise draws.

Parts 1, 4 and 5 (and the shared helpers) live in ``_information_pid.py``, parts 2 and 3 in
``_information_curves.py``, part 6 in ``_information_digits.py``; figures in ``_figures/information.py``.
Informations are estimated in nats and reported in bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..analysis.information import PID_MEASURES
from ..data.synthetic import GATES
from ._figures import information as figures
from ._information_curves import (
    Blocks as Blocks,
    Curves as Curves,
    checks_blocks,
    checks_curves,
    compute_blocks,
    compute_curves,
)
from ._information_digits import Digits as Digits, checks_digits, compute_digits
from ._information_pid import (
    Ablation as Ablation,
    Bias as Bias,
    Gates as Gates,
    checks_ablation,
    checks_bias,
    checks_gates,
    compute_ablation,
    compute_bias,
    compute_gates,
    max_dev,
)
from ._runner import Part, Study, register_study


_POSITIVE = (
    "n_logsnr n_noise n_per_component curve_logsnr curve_noise n_nll_points block_size n_block_samples "
)
_POSITIVE += "bias_per_component ablation_repeats ablation_per_component digits_n_images digits_n_logsnr "
_POSITIVE += "digits_n_noise digits_train_steps digits_width"


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
    cache_dir: str = ""

    def __post_init__(self):
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
        if not 0.0 <= self.digits_token_dropout < 1.0:
            raise ValueError(f"`digits_token_dropout` must lie in [0, 1), got {self.digits_token_dropout}.")
        budget = self.ablation_logsnr + self.ablation_noise
        if not self.ablation_logsnr or not self.ablation_noise or min(budget) < 1:
            raise ValueError("`ablation_logsnr` and `ablation_noise` must be non-empty positive integers.")


# =====================================================================================================
# the study
# =====================================================================================================
def _parts(config: Config) -> list[Part]:
    parts = [
        Part("gates", compute_gates, checks_gates, figures.gates),
        Part("curves", compute_curves, checks_curves, figures.curves),
        Part("blocks", compute_blocks, checks_blocks, figures.blocks),
        Part("bias", compute_bias, checks_bias, figures.bias),
        Part("ablation", compute_ablation, checks_ablation, figures.ablation),
    ]
    return parts + ([Part("digits", compute_digits, checks_digits, figures.digits)] if config.digits else [])


def _answer(config: Config, results: dict[str, Any]) -> str:
    gates = results["gates"].rows
    dev = max(max_dev(row[m]["engine"], row[m]["discrete"]) for row in gates.values() for m in PID_MEASURES)
    return (
        f"On well-separated gates the engine's PID is within {dev:.3f} bits of the exact values for every "
        "measure (pointwise_min: DiffusionPID's per-sample min of pointwise MIs; mmi: min of averaged MIs; "
        "wb_imin: Williams-Beer I_min with p(y | x) by Bayes over the token alphabet); BROJA and CCS are "
        "shown from dit for comparison only. Informations are estimated in nats and reported in bits."
    )


STUDY = register_study(
    Study(
        name="information",
        config=Config,
        parts=_parts,
        quick=dict(
            n_logsnr=128,
            n_noise=8,
            n_per_component=8,
            curve_logsnr=48,
            curve_noise=64,
            n_nll_points=16,
            n_block_samples=32,
            correlations=(0.0, 0.5, 0.9),
            bias_per_component=8,
            ablation_logsnr=(16, 128),
            ablation_noise=(1, 8),
            ablation_repeats=2,
            ablation_per_component=4,
            digits_network=False,
            digits_n_images=8,
            digits_n_logsnr=32,
            digits_n_noise=4,
        ),
        description="Pointwise/pixel MI and PID from denoisers (DiffusionPID) against exact values.",
        question="Do denoiser-based estimators of pointwise MI, pixel maps and PID recover the exact values "
        "on models whose ground truth is known?",
        answer=_answer,
        headline="pid_gates",
    )
)
