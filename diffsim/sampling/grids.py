r"""Time grids for fixed-step samplers.

A grid is a 1-D array of ``n_steps + 1`` diffusion times. Reverse grids run from ``t_start`` (default
``process.t_max``) down to ``t_end`` (default ``process.t_min``); :func:`forward_uniform` runs up from 0.
Every grid here is built in some monotone reparametrisation of time and mapped back through the process's
closed-form inverses, so it is exact for any process.

- :func:`uniform`: uniform in ``t``.
- :func:`geometric`: uniform in ``log t``.
- :func:`karras`: EDM's schedule (Karras et al. 2022, eq. 5) in the noise-to-signal ratio
  ``sigma_tilde = sigma/alpha = exp(-log_snr/2)``: ``sigma_i = (s_max^{1/rho} + i/n (s_min^{1/rho} -
  s_max^{1/rho}))^rho``.
- :func:`logsnr_uniform`: uniform in log-SNR (DPM-Solver's ``skip_type='logSNR'``).
- :func:`exponential`: Park, Ju & Lee (2024)'s exponential schedule, early-dense ("semantic") or late-dense
  ("delicate"), made continuous: with ``a = T^{1/(n + lam)}`` and ``g_k = a^{k}/T`` for ``k = lam .. lam+n``
  (geometric from ``a^lam/T`` to 1), normalised to ``[0, 1]``. Late-dense puts these fractions at the
  data end of the interval, early-dense at the noise end. Larger ``lam`` gives a flatter grid.
  :func:`paper_timesteps` is the discrete original of the released code.
- :func:`information_schedule`: information-equalising (ITD's FIG schedule): equal quantiles of a
  cumulative information density over log-SNR (the density is an argument, e.g.
  :func:`diffsim.analysis.concepts.information_density`).
- :func:`step_schedule`: one of :data:`STEP_SCHEDULES` by name.
- The peers' grids: :func:`sigmas_karras`, :func:`sigmas_exponential`, :func:`sigmas_polyexponential`,
  :func:`sigmas_vp` (k-diffusion's ``get_sigmas_*``, float64, without the trailing 0) and
  :func:`from_sigmas` (noise levels to times, exact); :func:`diffusers_timesteps` (diffusers'
  ``leading`` / ``trailing`` / ``linspace`` spacing with ``steps_offset``) and :func:`from_timesteps`.
"""

from ._peer_grids import (
    DIFFUSERS_SPACINGS as DIFFUSERS_SPACINGS,
    diffusers_timesteps as diffusers_timesteps,
    from_sigmas as from_sigmas,
    from_timesteps as from_timesteps,
    sigmas_exponential as sigmas_exponential,
    sigmas_karras as sigmas_karras,
    sigmas_polyexponential as sigmas_polyexponential,
    sigmas_vp as sigmas_vp,
)
from ._step_schedules import (
    STEP_SCHEDULES as STEP_SCHEDULES,
    information_schedule as information_schedule,
    paper_timesteps as paper_timesteps,
    step_schedule as step_schedule,
)
from ._time_grids import (
    exponential as exponential,
    forward_uniform as forward_uniform,
    geometric as geometric,
    karras as karras,
    logsnr_uniform as logsnr_uniform,
    reverse_endpoints as reverse_endpoints,
    uniform as uniform,
)


__all__ = [
    "DIFFUSERS_SPACINGS",
    "STEP_SCHEDULES",
    "diffusers_timesteps",
    "exponential",
    "forward_uniform",
    "from_sigmas",
    "from_timesteps",
    "geometric",
    "information_schedule",
    "karras",
    "logsnr_uniform",
    "paper_timesteps",
    "reverse_endpoints",
    "sigmas_exponential",
    "sigmas_karras",
    "sigmas_polyexponential",
    "sigmas_vp",
    "step_schedule",
    "uniform",
]
