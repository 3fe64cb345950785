"""Checked mode: runtime guards on traced values (off by default).

diffsim validates concrete input at its public boundary with plain Python errors (:mod:`diffsim._validation`).
Inside ``jit``, ``vmap`` or ``grad`` the values are tracers and those checks cannot look at them. In
*checked mode* the same conditions are compiled into the program with :func:`equinox.error_if`, so a bad
value raises ``equinox.EquinoxRuntimeError`` (naming the argument) instead of producing silent NaNs:

- negative or NaN mixture weights, NaN means, non-finite data;
- non-finite particles ``x`` and times ``t``, and times outside ``[0, t_max]`` of the process;
- guidance labels out of range and negative or non-finite guidance scales.

**The switch.** One documented flag, read once at import from the environment variable
``DIFFSIM_CHECKS`` (``1``/``true``/``yes``/``on`` enable it), and changed only through
:func:`set_checks` or the context manager :func:`checked`::

    with diffsim.checked():
        traj = ds.simulate(score, "ddim", 50, n=1000, key=key)

The flag is read when a function is *traced*: code jit-compiled with checks off keeps running unchecked
(jit caches the compiled program), so enable checked mode before the first call of a jitted function, or
call :func:`jax.clear_caches`. With checks off the guards are not traced at all: no cost in the hot path.

The helpers below (:func:`check_particles`, :func:`check_times`, ...) return their argument, wrapped by
``error_if`` when checked mode is on; use the returned value so the guard stays in the computation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp


__all__ = [
    "check_finite",
    "check_label",
    "check_particles",
    "check_scale",
    "check_times",
    "check_weights",
    "checked",
    "checks_enabled",
    "set_checks",
]

_TIME_SLACK = 1e-6  # the same slack as AbstractProcess.check_time


def _env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


#: The one flag of checked mode: set from ``DIFFSIM_CHECKS`` at import, changed by :func:`set_checks`.
_ENABLED: bool = _env_flag(os.environ.get("DIFFSIM_CHECKS"))


def checks_enabled() -> bool:
    """Whether checked mode is on (see the module docstring)."""
    return _ENABLED


def set_checks(enabled: bool) -> bool:
    """Turn checked mode on or off; returns the previous setting.

    Args:
        enabled: the new setting (converted with ``bool``); it applies to code traced afterwards.

    Returns:
        The setting before the call, so that it can be restored.
    """
    global _ENABLED
    previous = _ENABLED
    _ENABLED = bool(enabled)
    return previous


@contextlib.contextmanager
def checked(enabled: bool = True) -> Iterator[None]:
    """Context manager running its body with checked mode on (or off with ``enabled=False``).

    Args:
        enabled: the setting inside the ``with`` block; the previous one is restored on exit, also on error.
    """
    previous = set_checks(enabled)
    try:
        yield
    finally:
        set_checks(previous)


def _guard(x: Any, bad: Any, msg: str) -> Any:
    return eqx.error_if(x, bad, msg)


def check_finite(x: Any, name: str) -> Any:
    """``x``, guarded against NaN and infinity in checked mode."""
    if not _ENABLED:
        return x
    x = jnp.asarray(x)
    return _guard(x, ~jnp.all(jnp.isfinite(x)), f"`{name}` contains non-finite values (NaN or inf).")


def check_particles(x: Any, name: str = "x") -> Any:
    """Particles ``x`` (any shape), guarded against non-finite values in checked mode."""
    return check_finite(x, name)


def check_times(t: Any, process: Any = None, name: str = "t", *, allow_zero: bool = True) -> Any:
    """Times ``t``, guarded in checked mode against non-finite values and, when ``process`` is given,
    values outside ``[0, process.t_max]`` (``(0, t_max]`` when ``allow_zero`` is False)."""
    if not _ENABLED:
        return t
    t = jnp.asarray(t)
    t = _guard(t, ~jnp.all(jnp.isfinite(t)), f"`{name}` contains non-finite times.")
    if process is not None:
        t_max = float(process.t_max)
        tf = t if jnp.issubdtype(t.dtype, jnp.floating) else t.astype(float)  # integer times as floats
        low = jnp.any(tf < -_TIME_SLACK) if allow_zero else jnp.any(tf <= 0)
        high = jnp.any(tf > t_max * (1 + _TIME_SLACK) + _TIME_SLACK)
        interval = f"[0, {t_max:g}]" if allow_zero else f"(0, {t_max:g}]"
        t = _guard(t, low | high, f"`{name}` must lie in {interval} for {process!r}.")
    return t


def check_weights(w: Any, name: str = "weights") -> Any:
    """Mixture weights, guarded against negative and non-finite values in checked mode."""
    if not _ENABLED:
        return w
    w = jnp.asarray(w)
    return _guard(w, ~jnp.all(jnp.isfinite(w) & (w >= 0)), f"`{name}` must be finite and non-negative.")


def check_label(label: Any, classes: Sequence[int], name: str = "label") -> Any:
    """A class label, guarded in checked mode against values not in ``classes``."""
    if not _ENABLED:
        return label
    label = jnp.asarray(label)
    ok = jnp.any(label == jnp.asarray(list(classes)))
    return _guard(label, ~ok, f"`{name}` is out of range: the classes are {list(classes)}.")


def check_scale(scale: Any, name: str = "scale") -> Any:
    """A guidance scale ``w``, guarded against negative and non-finite values in checked mode."""
    if not _ENABLED:
        return scale
    scale = jnp.asarray(scale)
    bad = ~jnp.all(jnp.isfinite(scale) & (scale >= 0))
    return _guard(scale, bad, f"`{name}` must be a finite guidance scale >= 0.")
