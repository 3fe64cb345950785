"""Parts of the ``information`` study on toy counterparts of DiffusionPID's case studies, each with exact PID
values (mixtures in :mod:`diffsim.data._information_cases`): conditional PID given a context token, synonyms,
a homonym resolved by a context word and its failure case, co-hyponyms and a prompt intervention (results,
compute, checks; figures in ``_figures/information_cases.py``); the bias sweep on a trained token network is
in ``_information_bias.py``."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    decompose,
    discrete_pid,
    exact_pid_information,
    exact_pointwise_information,
    pid_information,
    pid_tolerances,
    pointwise_information,
    well_separated_joint,
)
from ..analysis.metrics import energy_distance
from ..data import co_hyponyms, context_switch, homonym, synonyms
from ..sampling import grids, simulate
from ..scores.conditional import ConditionalMixture
from ..scores.mixture import GaussianMixture
from ._information_config import Config
from ._information_pid import CHUNK, LN2, bits, logistic_scheme, max_dev, part_key
from ._runner import Check, PartContext, check


K_PAD = 8  # every exact case mixture is padded to 8 components (shared compiled shapes)


def _entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _conditional(tm) -> ConditionalMixture:
    names = tuple(f"y{j + 1}" for j in range(tm.n_tokens))  # generic names: shared compiled shapes
    return ConditionalMixture(tm.mixture, tm.tokens, tm.alphabet_sizes, names).padded(K_PAD)


def _discrete(joint: np.ndarray, measure: str, context: bool) -> list[float]:
    return list(discrete_pid(joint, measure, unit="bits", context=context).as_tuple())


def case_row(config: Config, m, x, y, w, key, context=()) -> dict[str, Any]:
    """As the gates' rows (engine standard/orthogonal, exact continuous, discrete, tolerance per measure,
    bits), for PID (``context=()``) or CPID given the ``context`` slots."""
    est = pid_information(
        m,
        x,
        y,
        key,
        context=context,
        scheme=logistic_scheme(config),
        n_noise=config.n_noise,
        sample_weights=w,
        chunk_size=CHUNK,
    )
    ex = exact_pid_information(m, x, y, context=context, sample_weights=w)
    tol = pid_tolerances(est, ex, w, n_se=config.n_se, floor_bits=config.tolerance_floor_bits)
    joint = well_separated_joint(m, context=context)
    return {
        measure: {
            "engine": bits(decompose(est, measure).terms),
            "engine_orthogonal": bits(decompose(est, measure, estimator="orthogonal").terms),
            "exact": bits(decompose(ex, measure).terms),
            "tolerance": round(tol[measure], 4),
            "discrete": _discrete(joint, measure, bool(context)),
        }
        for measure in PID_MEASURES
    }


def _row_checks(config: Config, label: str, row: dict[str, Any], note: str) -> list[Check]:
    c = config
    dev = max(max_dev(row[m]["exact"], row[m]["discrete"]) for m in PID_MEASURES)
    name = f"{label}: exact continuous PID = discrete PID of the well-separated limit (max |dev|, bits)"
    out = [check(name, 0.0, dev, 1e-4, note=note)]
    budget = f"{c.n_logsnr} logistic log-SNRs x {c.n_noise} noise draws"
    for m in PID_MEASURES:
        d = row[m]
        out.append(
            check(
                f"{label}: engine {m} [R, U1, U2, S] = exact (bits)",
                d["discrete"],
                d["engine"],
                d["tolerance"],
                note=f"standard estimator, {budget}; tolerance {c.n_se:g} SE + the min bias bound.",
            )
        )
    return out


# =====================================================================================================
# 7. CPID: a context token that decides which source is depicted
# =====================================================================================================
class ContextPID(eqx.Module):
    """PID (context marginalised) and CPID (given the context token ``c``) rows of :func:`context_switch`."""

    pid: dict[str, Any]
    cpid: dict[str, Any]


def compute_cpid(config: Config, ctx: PartContext) -> ContextPID:
    key = part_key(config, 11)

    def compute():
        m = _conditional(context_switch(block_size=2))
        x, y, w = m.sample_stratified(jr.fold_in(key, 0), config.cases_per_component)
        k = jr.fold_in(key, 1)  # the same noise draws for PID and CPID
        return {"pid": case_row(config, m, x, y, w, k), "cpid": case_row(config, m, x, y, w, k, (2,))}

    r = ctx.cache("cases-cpid", compute)
    return ContextPID(r["pid"], r["cpid"])


def checks_cpid(config: Config, r: ContextPID) -> list[Check]:
    note = "y1, y2, c uniform bits; the block shows y1 if c = 0, y2 if c = 1 (docs/information.md)."
    out = _row_checks(config, "cpid (context marginalised)", r.pid, note)
    out += _row_checks(config, "cpid (given the context)", r.cpid, note)
    closed = {"pid_mmi": [1 - _entropy_bits(0.75)] * 1, "cpid_pointwise_min": [0.0, 0.5, 0.5, 0.0]}
    out.append(
        check(
            "cpid: exact pointwise_min CPID = [0, 1/2, 1/2, 0] (closed form, bits)",
            closed["cpid_pointwise_min"],
            r.cpid["pointwise_min"]["discrete"],
            1e-9,
        )
    )
    out.append(
        check(
            "cpid: exact mmi PID redundancy = 1 - h(3/4) (closed form, bits)",
            closed["pid_mmi"][0],
            r.pid["mmi"]["discrete"][0],
            1e-9,
        )
    )
    for m in ("pointwise_min", "wb_imin"):
        s_pid, s_cpid = r.pid[m]["engine"][3], r.cpid[m]["engine"][3]
        u_pid, u_cpid = r.pid[m]["engine"][1], r.cpid[m]["engine"][1]
        tol = r.pid[m]["tolerance"] + r.cpid[m]["tolerance"]
        pred = r.cpid[m]["discrete"][1] - r.pid[m]["discrete"][1]
        out.append(
            check(
                f"cpid: conditioning on the context changes the {m} unique information "
                "(U1 given c - U1 marginalised, bits)",
                pred,
                u_cpid - u_pid,
                tol,
                note=f"measured S: {s_pid:.3f} marginalised, {s_cpid:.3f} given c.",
            )
        )
    return out


# =====================================================================================================
# 8. synonyms, homonym (resolved / unresolved), co-hyponyms
# =====================================================================================================
CASES = (
    "synonyms",
    "homonym",
    "homonym_unresolved",
    "co_hyponyms_image",
    "co_hyponyms_parent",
    "co_hyponyms_child1",
    "co_hyponyms_child2",
)


def case_mixture(config: Config, name: str):
    """The token mixture of one case of :data:`CASES`."""
    if name == "synonyms":
        return synonyms(shared_probability=config.synonym_shared_probability, block_size=1)
    if name.startswith("homonym"):
        return homonym(resolved=name == "homonym", block_size=2)
    return co_hyponyms(target=name.split("_")[-1], block_size=1, separation=6.0)  # 1-D blocks: 12 std apart


def synergy_drop_check(name: str, resolved: dict, unresolved: dict, source: str, note: str) -> Check:
    """The drop of the synergy term from a row of a resolved homonym to a row of an unresolved one (one
    measure each; ``source``: the estimate compared, ``"engine"`` or ``"network"``) against the exact
    drop, within the sum of the two rows' tolerances."""
    return check(
        name,
        resolved["discrete"][3] - unresolved["discrete"][3],
        resolved[source][3] - unresolved[source][3],
        resolved["tolerance"] + unresolved["tolerance"],
        note=note,
    )


class Cases(eqx.Module):
    """Per case of :data:`CASES`: PID rows as the gates (bits)."""

    rows: dict[str, dict[str, Any]]


def compute_cases(config: Config, ctx: PartContext) -> Cases:
    key, rows = part_key(config, 12), {}
    for i, name in enumerate(ctx.progress(CASES, "cases")):

        def compute(name=name, i=i):
            m = _conditional(case_mixture(config, name))
            x, y, w = m.sample_stratified(jr.fold_in(key, 2 * i), config.cases_per_component)
            return case_row(config, m, x, y, w, jr.fold_in(key, 2 * i + 1))

        rows[name] = ctx.cache(f"cases-{name}", compute)
    return Cases(rows)


def checks_cases(config: Config, r: Cases) -> list[Check]:
    out, rows = [], r.rows
    notes = {
        "synonyms": f"f ~ Bern({config.synonym_shared_probability:g}), y1 = y2 = f, y3 an independent bit.",
        "homonym": "y1: homonym present, y2: context word; the block shows none / meaning 1 + y2.",
        "homonym_unresolved": "the depicted meaning ignores the context word (the failure case).",
    }
    for name in CASES:
        out += _row_checks(config, name, rows[name], notes.get(name, "P, c1, c2 bits; y_k = 2P + c_k."))
    h = _entropy_bits(config.synonym_shared_probability)
    syn = rows["synonyms"]["pointwise_min"]
    out.append(
        check(
            "synonyms: measured redundancy = H(shared feature) (pointwise_min R, bits)",
            h,
            syn["engine"][0],
            syn["tolerance"],
            note="closed form h(p); U1 = U2 = S = 0.",
        )
    )
    for m in PID_MEASURES:
        out.append(
            synergy_drop_check(
                f"homonym: measured {m} synergy collapses when the model ignores the context "
                "(S resolved - S unresolved, bits)",
                rows["homonym"][m],
                rows["homonym_unresolved"][m],
                "engine",
                note="exact: S = 1/2 bit resolved, 0 unresolved.",
            )
        )
    blocks = [rows[f"co_hyponyms_{b}"]["pointwise_min"] for b in ("parent", "child1", "child2")]
    measured = [blocks[0]["engine"][0], blocks[1]["engine"][1], blocks[2]["engine"][2]]
    out.append(
        check(
            "co_hyponyms: measured redundancy on the parent block, unique on each child block "
            "([R parent, U1 child1, U2 child2], pointwise_min, bits)",
            [1.0, 1.0, 1.0],
            measured,
            [b["tolerance"] for b in blocks],
        )
    )
    return out


# =====================================================================================================
# 9. prompt intervention
# =====================================================================================================
class Intervention(eqx.Module):
    """Removing each token ``y1, y2, y3`` of a prompt of :func:`synonyms` (``agreement < 1``): the
    conditional informations ``I(X; Y_k | rest)`` (engine, exact, closed form; bits, with tolerance) and the
    change of the samples (mean displacement from the same initial noise with DDIM; energy distance), and
    the energy-distance noise floor (two independent sample sets of the full prompt)."""

    removed: list[str]
    cmi_engine: list[float]
    cmi_exact: list[float]
    cmi_closed_form: list[float]
    cmi_tolerance: list[float]
    displacement: list[float]
    energy_distance: list[float]
    energy_floor: float


def _prompt_mixture(tm, values) -> GaussianMixture:
    w = np.asarray(tm.mixture.weights, float) * tm.component_mask(values)
    return GaussianMixture(w / w.sum(), tm.mixture.means, tm.mixture.eigvals, process=tm.mixture.process)


def compute_intervention(config: Config, ctx: PartContext) -> Intervention:
    c, key = config, part_key(config, 13)
    q, p = c.intervention_agreement, c.synonym_shared_probability
    tm = synonyms(shared_probability=p, agreement=q, block_size=1)

    def info():
        m = _conditional(tm)
        x, y, w = m.sample_stratified(jr.fold_in(key, 0), c.cases_per_component)
        w = np.asarray(w)
        eng, ex, tol = [], [], []
        for k in range(3):
            rest = [j for j in range(3) if j != k]
            est = pointwise_information(
                m, x, y, jr.fold_in(key, 1), about=[k], given=rest, scheme=logistic_scheme(c),
                n_noise=c.n_noise, chunk_size=CHUNK,
            )  # fmt: skip
            exact = np.asarray(exact_pointwise_information(m, x, y, about=[k], given=rest))
            noise = (np.asarray(est.standard) - exact) / LN2
            eng.append(float(np.sum(w * np.asarray(est.standard)) / LN2))
            ex.append(float(np.sum(w * exact) / LN2))
            se = math.sqrt(float(np.sum((w * noise) ** 2)))
            tol.append(max(c.n_se * se, c.tolerance_floor_bits))
        return eng, ex, tol

    eng, ex, tol = ctx.cache("cases-intervention-cmi", info)

    def samples():
        prompts = [tuple(int(v) for v in t) for t in np.asarray(tm.tokens)]
        prior = np.asarray(tm.mixture.weights, float)
        grid = grids.logsnr_uniform(tm.mixture.process, c.intervention_steps)
        disp, ed, floor = np.zeros(3), np.zeros(3), 0.0
        for i, prompt in enumerate(ctx.progress(prompts, "intervention")):
            k_run = jr.fold_in(key, 100 + i)

            def run(values, k=k_run):
                mix = _prompt_mixture(tm, values)
                out = simulate(mix, "ddim", grid, n=c.intervention_samples, key=k, final_denoise=True)
                return np.asarray(out.x)

            full = run(prompt)
            floor += prior[i] * float(energy_distance(full, run(prompt, jr.fold_in(k_run, 1))))
            for k in range(3):
                cut = run([None if j == k else v for j, v in enumerate(prompt)])
                disp[k] += prior[i] * float(np.mean(np.linalg.norm(full - cut, axis=1)))
                ed[k] += prior[i] * float(energy_distance(full, cut))
        return disp.tolist(), ed.tolist(), floor

    disp, ed, floor = ctx.cache("cases-intervention-samples", samples)
    h_f = _entropy_bits(p)
    p_y2 = p * q + (1 - p) * (1 - q)  # P(y2 = 1)
    h_f_y2 = _entropy_bits(p) + _entropy_bits(q) - _entropy_bits(p_y2)  # H(f | y2) = H(f) + H(y2 | f) - H(y2)
    del h_f
    return Intervention(["y1", "y2", "y3"], eng, ex, [h_f_y2, 0.0, 1.0], tol, disp, ed, floor)


def checks_intervention(config: Config, r: Intervention) -> list[Check]:
    out = [
        check(
            "intervention: exact I(X; Y_k | rest) = closed form [H(f | y2), 0, 1] (bits)",
            r.cmi_closed_form,
            r.cmi_exact,
            1e-3,
            note="well-separated limit; y1 = f, y2 = f with probability "
            f"{config.intervention_agreement:g}, y3 independent.",
        ),
        check(
            "intervention: engine I(X; Y_k | rest) = exact for k = 1, 2, 3 (bits)",
            r.cmi_exact,
            r.cmi_engine,
            r.cmi_tolerance,
            note=f"standard estimator; tolerance {config.n_se:g} SE of the per-sample noise.",
        ),
        check(
            "intervention: removing y2 (no unique information) leaves the samples unchanged "
            "(energy distance <= the noise floor of two independent sample sets)",
            r.energy_floor,
            r.energy_distance[1],
            0.0,
            relation="le",
            note=f"mean displacement from the same noise: {r.displacement[1]:.2e} (y2) vs "
            f"{r.displacement[2]:.3f} (y3).",
        ),
        check(
            "intervention: removing y3 (1 bit of unique information) changes the samples "
            "(energy distance >= 10 x the noise floor)",
            10 * r.energy_floor,
            r.energy_distance[2],
            0.0,
            relation="ge",
        ),
    ]
    order_info = np.argsort(r.cmi_engine).tolist()
    order_disp = np.argsort(r.displacement).tolist()
    out.append(
        check(
            "intervention: the sample change orders the tokens as their conditional information does",
            True,
            order_info == order_disp,
            relation="true",
            note=f"CMI (bits) {np.round(r.cmi_engine, 3).tolist()}; displacement "
            f"{np.round(r.displacement, 4).tolist()}; energy distance "
            f"{np.round(r.energy_distance, 4).tolist()}.",
        )
    )
    return out
