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
7.-11. **case studies** (``_information_cases.py``; part 10 in ``_information_bias.py``, part 11 in
   ``_information_homonym.py``): CPID given a context token, synonyms, a homonym resolved by a context word
   (and unresolved), co-hyponyms, a prompt intervention, the bias sweep on a trained token network, and the
   homonym on two trained networks (one resolves it, one was trained where the context word is not tied to
   the meaning), each against exact PID values.

Parts 1, 4 and 5 (and the shared helpers) live in ``_information_pid.py``, parts 2 and 3 in
``_information_curves.py``, part 6 in ``_information_digits.py``; figures in ``_figures/information.py``.
Informations are estimated in nats and reported in bits.
"""

from __future__ import annotations

from typing import Any

from ..analysis.information import PID_MEASURES
from ._figures import information as figures, information_cases as case_figures
from ._information_bias import checks_trained_bias, compute_trained_bias
from ._information_cases import (
    checks_cases,
    checks_cpid,
    checks_intervention,
    compute_cases,
    compute_cpid,
    compute_intervention,
)
from ._information_config import Config as Config
from ._information_curves import (
    Blocks as Blocks,
    Curves as Curves,
    checks_blocks,
    checks_curves,
    compute_blocks,
    compute_curves,
)
from ._information_digits import Digits as Digits, checks_digits, compute_digits
from ._information_homonym import checks_trained_homonym, compute_trained_homonym
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


def _parts(config: Config) -> list[Part]:
    parts = [
        Part("gates", compute_gates, checks_gates, figures.gates),
        Part("curves", compute_curves, checks_curves, figures.curves),
        Part("blocks", compute_blocks, checks_blocks, figures.blocks),
        Part("bias", compute_bias, checks_bias, figures.bias),
        Part("ablation", compute_ablation, checks_ablation, figures.ablation),
    ]
    parts += [Part("digits", compute_digits, checks_digits, figures.digits)] if config.digits else []
    if config.cases:
        parts += [
            Part("cpid", compute_cpid, checks_cpid, case_figures.cpid),
            Part("cases", compute_cases, checks_cases, case_figures.cases),
            Part("intervention", compute_intervention, checks_intervention, case_figures.intervention),
        ]
    if config.trained_bias:
        parts.append(
            Part("trained_bias", compute_trained_bias, checks_trained_bias, case_figures.trained_bias)
        )
    if config.trained_homonym:
        parts.append(
            Part(
                "trained_homonym",
                compute_trained_homonym,
                checks_trained_homonym,
                case_figures.trained_homonym,
            )
        )
    return parts


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
            cases_per_component=8,
            intervention_samples=64,
            intervention_steps=20,
            trained_bias_correlations=(0.0, 0.9),
            trained_bias_steps=600,
            trained_bias_n_train=4096,
            trained_homonym_steps=600,
            trained_homonym_n_train=4096,
            trained_homonym_samples=64,
            trained_homonym_sample_steps=20,
        ),
        description="Pointwise/pixel MI and PID from denoisers (DiffusionPID) against exact values.",
        question="Do denoiser-based estimators of pointwise MI, pixel maps and PID recover the exact values "
        "on models whose ground truth is known?",
        answer=_answer,
        headline="pid_gates",
    )
)
