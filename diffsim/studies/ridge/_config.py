"""Configuration of the ``ridge`` study and the helpers its parts share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...analysis import ridge
from ...data.ridge import TRAINING_SETS
from ...sampling import grids, simulate
from .._config import check_fields


_POSITIVE = (
    "n_particles n_steps n_saved ridge_grid ode_particles rf_n_freqs rf_n_noise rf_n_eval rf_particles "
    "rf_steps rf_gd_steps mlp_steps mlp_width latent_dim ae_steps latent_net_steps latent_net_width "
    "latent_particles latent_steps toy_width toy_n_freqs toy_n_noise toy_particles toy_steps "
    "toy_config_width "
    "toy_config_particles toy_config_steps latent32_ae_steps latent32_net_steps latent32_net_width "
    "latent32_particles latent32_steps"
).split()


@dataclass(frozen=True)
class Config:
    """Configuration of the ``ridge`` study (defaults: a few CPU minutes; see ``docs/ridge.md``)."""

    # exact empirical score on 2-D training sets
    sets: tuple[str, ...] = TRAINING_SETS
    n_particles: int = 4000
    n_steps: int = 400
    n_saved: int = 40
    gap_threshold: float = 1e-2
    tube_scale: float = 2.0
    ridge_times: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03)
    ridge_grid: int = 40
    n_plot_trajectories: int = 25
    # directional errors on the two-point set (denoiser-level normal shift c)
    normal_shift: float = 0.1
    ode_particles: int = 256
    # random features vs exact vs MLP
    rf_sets: tuple[str, ...] = ("two_points", "three_points")
    rf_widths: tuple[int, ...] = (64, 256, 1024)
    rf_n_freqs: int = 16
    rf_n_times: int = 201
    rf_n_noise: int = 128
    rf_taus: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    rf_eval_times: tuple[float, ...] = (0.03, 0.1, 0.3)
    rf_n_eval: int = 400
    rf_particles: int = 1000
    rf_steps: int = 200
    rf_gd_steps: int = 400
    mlp: bool = True
    mlp_steps: int = 2000
    mlp_width: int = 128
    # latent digits
    latent: bool = True
    latent_digit: int = 1
    latent_dim: int = 8
    latent_intrinsic_dim: int = 1
    ae_steps: int = 2000
    latent_net_steps: int = 3000
    latent_net_width: int = 128
    latent_particles: int = 500
    latent_steps: int = 200
    latent_split_time: float = 0.05
    # the public code's experiments (paper_two_modes, paper_configs; latent32): see docs/ridge.md
    paper_toy: bool = True
    toy_width: int = 2000
    toy_n_freqs: int = 128
    toy_n_times: int = 201
    toy_n_noise: int = 32
    toy_taus: tuple[float, ...] = (1000.0, 1500.0, 2000.0, 5000.0)
    toy_particles: int = 2000
    toy_steps: int = 2000
    toy_mode_radius: float = 0.5
    toy_residual_threshold: float = 0.2
    toy_configs: tuple[str, ...] = (
        "one_mode", "two_modes", "three_modes", "four_modes_square", "four_and_half_modes",
        "five_modes_square_centre", "nine_modes_grid", "fig1_thirteen",
    )  # fmt: skip
    toy_config_width: int = 1000
    toy_config_particles: int = 2000
    toy_config_steps: int = 1000
    toy_snapshot_times: tuple[float, ...] = (1.0, 0.3, 0.1, 0.01)
    latent32: bool = True
    latent32_dim: int = 32
    latent32_ae_steps: int = 3000
    latent32_net_steps: int = 3000
    latent32_net_width: int = 256
    latent32_particles: int = 2000
    latent32_steps: int = 1000
    latent32_paper_dstar: int = 25
    seed: int = 0

    def __post_init__(self):
        check_fields(self, positive=("tube_scale", "gap_threshold"), nonnegative=("n_plot_trajectories",))
        if isinstance(self.latent_digit, bool) or not 0 <= self.latent_digit <= 9:
            raise ValueError(f"`latent_digit` must be a digit 0-9, got {self.latent_digit!r}.")
        for name in ("sets", "rf_sets"):
            unknown = set(getattr(self, name)) - set(TRAINING_SETS)
            if unknown:
                label = "training sets" if name == "sets" else name
                raise ValueError(f"Unknown {label} {sorted(unknown)}; known: {TRAINING_SETS}.")
        for name in _POSITIVE:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.rf_n_times < 3 or self.rf_n_times % 2 == 0:
            raise ValueError(f"`rf_n_times` must be odd and >= 3 (Simpson), got {self.rf_n_times}.")
        if not self.rf_widths or min(self.rf_widths) < 1:
            raise ValueError(f"`rf_widths` must be positive integers, got {self.rf_widths}.")
        if any(t <= 0 for t in (*self.ridge_times, *self.rf_eval_times, self.latent_split_time)):
            raise ValueError("ridge_times, rf_eval_times and latent_split_time must be > 0.")
        if self.toy_n_times < 3 or self.toy_n_times % 2 == 0:
            raise ValueError(f"`toy_n_times` must be odd and >= 3 (Simpson), got {self.toy_n_times}.")
        if any(not t > 0 for t in (*self.toy_taus, *self.toy_snapshot_times, self.toy_mode_radius)):
            raise ValueError("toy_taus, toy_snapshot_times and toy_mode_radius must be > 0.")
        if not 0 < self.toy_residual_threshold < 1:
            raise ValueError(
                f"`toy_residual_threshold` must lie in (0, 1), got {self.toy_residual_threshold}."
            )
        if not 2 <= self.latent32_dim < 64 or not 1 <= self.latent32_paper_dstar <= self.latent32_dim - 1:
            raise ValueError(
                f"`latent32_dim` must lie in [2, 63] (8x8 digits) and `latent32_paper_dstar` in "
                f"[1, latent32_dim - 1], got {self.latent32_dim}, {self.latent32_paper_dstar}."
            )
        if not 1 <= self.latent_intrinsic_dim <= self.latent_dim - 1:
            raise ValueError(
                f"`latent_intrinsic_dim` must lie in [1, latent_dim - 1], got {self.latent_intrinsic_dim}."
            )


def saved_indices(n_steps: int, n_saved: int) -> np.ndarray:
    """About ``n_saved`` evenly spaced step indices of an ``n_steps`` grid, both ends included."""
    return np.unique(np.linspace(0, n_steps, min(n_saved, n_steps) + 1).round().astype(int))


def ridge_run(score, emp, config, n, key, reference_only=False):
    """Reverse SDE of ``score`` on the geometric grid with the 1-ridge of ``emp`` recorded."""
    return simulate(
        score,
        "euler_maruyama",
        grids.geometric(emp.process, config.n_steps),
        n=n,
        key=key,
        save=saved_indices(config.n_steps, config.n_saved),
        stats=ridge.ridge_stats(
            emp, 1, score=None if reference_only else score, gap_threshold=config.gap_threshold
        ),
    )


def trace_ridge(emp, t, data, config):
    """The 1-ridge of ``emp`` at time ``t`` traced by SCMS over the data's box (points, converged fraction,
    residuals)."""
    return ridge.trace_ridge(emp, t, data, grid=config.ridge_grid, gap_threshold=config.gap_threshold)


def trajectory_plot(tr, labels, ridges, data, n_plot=None):
    """What a ridge panel draws: saved states (first ``n_plot`` particles), phase labels, ridges, data."""
    xs = tr.xs if n_plot is None else tr.xs[:, :n_plot]
    return {"xs": np.asarray(xs), "labels": labels, "ridges": ridges, "data": data, "ts": np.asarray(tr.ts)}
