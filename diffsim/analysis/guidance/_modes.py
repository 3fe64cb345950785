"""Mode counting of output densities (1-D and 2-D) and the noise-free 1-D mode detector of the
continuous-limit guided DDIM and DDPM outputs (strong-guidance distortions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..._validation import check_positive_int
from ...scores.guidance import check_scale, guided_mixture
from ...scores.mixture import GaussianMixture
from ..entropy import (
    pf_ode_entropy,
)
from ..fokker_planck import FokkerPlanckGrid, reverse_fokker_planck_batch
from ._quantities import _check_problem


def count_modes(density: ArrayLike, *, min_height: float = 0.02, min_dip: float = 0.05) -> int:
    """Number of modes of a 1-D density sampled on an increasing grid.

    Local maxima lower than ``min_height`` times the global maximum are ignored; two neighbouring maxima
    count as one unless the density between them dips below ``(1 - min_dip)`` times the lower of the two.

    Args:
        density: density values on the grid (flattened), at least 3.
        min_height: fraction of the global maximum below which a local maximum is ignored.
        min_dip: relative dip needed between two neighbouring maxima for both to count.

    Returns:
        The number of modes (0 when the density is nowhere positive).
    """
    p = np.asarray(density, dtype=np.float64).ravel()
    if p.size < 3:
        raise ValueError("`density` needs at least 3 values.")
    top = p.max()
    if not top > 0:
        return 0
    interior = (p[1:-1] > p[:-2]) & (p[1:-1] >= p[2:])
    peaks = [i + 1 for i in np.flatnonzero(interior)]
    if p[0] > p[1]:
        peaks.insert(0, 0)
    if p[-1] > p[-2]:
        peaks.append(p.size - 1)
    peaks = [i for i in peaks if p[i] >= min_height * top]
    merged = True
    while merged and len(peaks) > 1:
        merged = False
        for a in range(len(peaks) - 1):
            i, j = peaks[a], peaks[a + 1]
            valley = p[i : j + 1].min()
            if valley > (1.0 - min_dip) * min(p[i], p[j]):
                peaks.pop(a if p[i] < p[j] else a + 1)
                merged = True
                break
    return len(peaks)


def count_modes_2d(density: ArrayLike, *, min_height: float = 0.02) -> int:
    """Number of strict local maxima (8-neighbourhood) of a 2-D density above ``min_height`` x its maximum.

    Args:
        density: density values on a 2-D grid, shape ``(n_1, n_2)``.
        min_height: fraction of the global maximum below which a local maximum is ignored.
    """
    p = np.asarray(density, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError("`density` must be 2-D.")
    pad = np.pad(p, 1, constant_values=-np.inf)
    center = pad[1:-1, 1:-1]
    is_max = np.ones_like(p, bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            nb = pad[1 + di : pad.shape[0] - 1 + di, 1 + dj : pad.shape[1] - 1 + dj]
            is_max &= center > nb if (di, dj) < (0, 0) else center >= nb
    return int(np.sum(is_max & (p >= min_height * p.max())))


def output_modes_1d(
    mixture: GaussianMixture,
    label: int,
    scales: Sequence[float],
    *,
    fp_grid: FokkerPlanckGrid | None = None,
    n_nodes: int = 401,
    z_max: float = 5.0,
    ddpm: bool = True,
    kind: str = "classifier",
) -> dict[str, Any]:
    r"""Number of modes of the continuous-limit guided DDIM and DDPM outputs of a 1-D mixture, per diffsim
    scale ``w`` in ``scales`` (a distortion detector: the target class is unimodal when it is one Gaussian).

    DDIM: the PF-ODE map ``z -> x`` is monotone in 1-D, so the output density ``q(x(z)) = p(z) / x'(z)``
    (per-sample change of variables, :func:`~diffsim.analysis.entropy.pf_ode_entropy`) on ``n_nodes``
    equally spaced ``z in [-z_max, z_max]`` is an exact, noise-free picture of the output; its local maxima
    are counted by :func:`count_modes`. DDPM: the final Fokker-Planck density on ``fp_grid`` (default
    ``[-20, 20]`` with 320 cells). Returns ``{"ddim": modes (W,), "ddpm": modes (W,) or None, "x": (W, n),
    "q": (W, n), "fp": list of solutions or None}``.

    Args:
        mixture: the labelled 1-D data mixture (``ValueError`` in other dimensions).
        label: the target class, an integer label of ``mixture``.
        scales: the diffsim guidance scales ``w >= 0``.
        fp_grid: the Fokker-Planck grid for the DDPM densities; ``None`` uses ``[-20, 20]`` with 320 cells.
        n_nodes: number of prior nodes ``z`` for the DDIM densities.
        z_max: the nodes span ``[-z_max, z_max]``.
        ddpm: also solve the reverse Fokker-Planck equation for the DDPM modes (else ``"ddpm"`` and
            ``"fp"`` are ``None``).
        kind: ``"classifier"`` (default) or ``"cfg"``: how :func:`~diffsim.scores.guidance.guided_mixture`
            builds the guided score (equal scores for exact mixtures).
    """
    _check_problem(mixture, label)
    if mixture.dim != 1:
        raise ValueError(f"output_modes_1d needs a 1-D mixture, got d={mixture.dim}.")
    ws = np.asarray(scales, dtype=float)
    check_scale(ws, "scales")
    dtype = mixture.means.dtype
    z = jnp.asarray(np.linspace(-z_max, z_max, check_positive_int(n_nodes, "n_nodes"))[:, None], dtype)
    xs, qs, m_ode = [], [], []
    for w in ws:
        est = pf_ode_entropy(guided_mixture(mixture, int(label), float(w), kind=kind), z=z)
        q = np.exp(np.asarray(est.log_density, np.float64))
        xs.append(np.asarray(est.x)[:, 0])
        qs.append(q)
        m_ode.append(count_modes(q))
    out: dict[str, Any] = {
        "ddim": np.asarray(m_ode),
        "ddpm": None,
        "x": np.stack(xs),
        "q": np.stack(qs),
        "fp": None,
    }
    if ddpm:
        grid = fp_grid if fp_grid is not None else FokkerPlanckGrid(-20.0, 20.0, 320)
        sols = reverse_fokker_planck_batch(
            [guided_mixture(mixture, int(label), float(w), kind=kind) for w in ws], grid, dynamics="sde"
        )
        out["ddpm"] = np.asarray([count_modes(np.asarray(sol.density[-1])) for sol in sols])
        out["fp"] = sols
    return out
