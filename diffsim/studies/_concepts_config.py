"""The configuration of the ``concepts`` study (shared by its part modules)."""

from __future__ import annotations

from dataclasses import dataclass

from ._config import check_fields


_PROCESSES = ("linear", "cosine", "ou")
_POSITIVE = (
    "n_particles n_grid n_probe_train probe_steps n_info n_info_logsnr info_noise schedule_steps n_schedule "
    "saliency_grid n_saliency n_masks mask_cells n_auc n_random_orders n_correlation toy_train_steps "
    "toy_train_size toy_base_channels n_energy digits_particles digits_grid digits_train_steps "
    "digits_base_channels digits_n_saliency digits_auc_stride"
).split()


@dataclass(frozen=True)
class Config:
    """Configuration of the ``concepts`` study (defaults: about 4-5 minutes on two CPU cores, of which about
    1.5 minutes train the two UNets; they are cached under ``cache_dir``, default ``out_dir/models``). The
    quick preset skips both networks and the digits (exact toy model only, ~30 s)."""

    seed: int = 0
    process: str = "linear"
    # toy mixture: one binary token per 2x2 region of a 4x4 image
    separations: tuple[float, ...] = (6.0, 3.0, 1.5)
    std: float = 0.5
    # 1. emergence
    n_particles: int = 2048
    n_grid: int = 100
    n_probe_train: int = 4000
    probe_steps: int = 400
    emergence_level: float = 0.5
    emergence_tolerance: float = 0.4
    # 2. information rates
    n_info: int = 1024
    info_lo: float = -12.0
    info_hi: float = 16.0
    n_info_logsnr: int = 57
    info_noise: int = 16
    n_se: float = 3.0
    # 3. schedules
    schedule_steps: int = 8
    schedule_lam: float = 60.0
    schedule_prior: float = 0.8
    schedule_method: str = "ddim"
    n_schedule: int = 20000
    n_energy: int = 2000
    # 4. saliency and AUC
    saliency_grid: int = 20
    saliency_steps: tuple[int, ...] = (6, 8, 10, 12)
    n_saliency: int = 6
    n_masks: int = 300
    mask_cells: int = 2
    guidance: float = 3.0
    auc_step: int = 10
    n_auc: int = 6
    n_random_orders: int = 16
    pointing_threshold: float = 0.8
    iou_threshold: float = 0.5
    randomisation_threshold: float = 0.5
    n_correlation: int = 6
    toy_network: bool = True
    toy_train_steps: int = 800
    toy_train_size: int = 8000
    toy_base_channels: int = 16
    # 5. digits
    digits: bool = True
    digits_network: bool = True
    digits_bandwidth: float = 0.3
    digits_particles: int = 256
    digits_grid: int = 60
    digits_train_steps: int = 1000
    digits_base_channels: int = 16
    digits_saliency_steps: tuple[int, ...] = (20, 26, 32, 38)
    digits_n_saliency: int = 6
    digits_auc_stride: int = 4
    cache_dir: str = ""

    def __post_init__(self):
        for name in _POSITIVE:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        check_fields(
            self,
            counts=("auc_step",),
            positive=("std", "digits_bandwidth", "n_se", "emergence_tolerance"),
            nonnegative=("guidance", "pointing_threshold", "iou_threshold", "randomisation_threshold"),
        )
        if self.process not in _PROCESSES:
            raise ValueError(f"`process` must be one of {_PROCESSES}, got {self.process!r}.")
        if len(self.separations) < 2 or len(self.separations) > 4 or min(self.separations) <= 0:
            raise ValueError(
                f"`separations` must hold 2 to 4 positive values (4 regions), got {self.separations}."
            )
        if list(self.separations) != sorted(self.separations, reverse=True):
            raise ValueError("`separations` must be ordered from coarse (largest) to fine (smallest).")
        if not 0.0 < self.emergence_level < 1.0:
            raise ValueError(f"`emergence_level` must lie in (0, 1), got {self.emergence_level}.")
        if not 0.5 <= self.schedule_prior < 1.0:
            raise ValueError(f"`schedule_prior` must lie in [0.5, 1), got {self.schedule_prior}.")
        if not self.info_lo < self.info_hi:
            raise ValueError("Need info_lo < info_hi.")
        for name, grid_n in (
            ("saliency_steps", self.saliency_grid),
            ("digits_saliency_steps", self.digits_grid),
        ):
            steps = getattr(self, name)
            if not steps or any(not 0 <= s <= grid_n for s in steps):
                raise ValueError(f"`{name}` must be non-empty grid indices in 0..{grid_n}, got {steps}.")
        if not 0 <= self.auc_step <= self.saliency_grid:
            raise ValueError(
                f"`auc_step` must be a grid index in 0..{self.saliency_grid}, got {self.auc_step}."
            )


# =====================================================================================================
# the study
# =====================================================================================================
