"""JAX's persistent compilation cache for the ``diffsim`` command: a second run of the same study reuses the
programs the first one compiled.

A quick run spends most of its time compiling (measured on 2 CPU cores: 53 of the 68 s of the ``samplers``
quick preset are XLA compilation), so the cache halves a repeated ``diffsim run all --quick``
(350 s -> 175 s, results bit-identical). Every compiled program is cached (no minimum compile time or size):
writing them costs about 12 % on the first run. JAX keys each entry by the program, the JAX/XLA versions
and the compiler flags, and ignores an entry it cannot read, so a stale or damaged cache costs a recompile,
never a wrong number.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


__all__ = ["compilation_cache", "default_compilation_cache_dir"]


def default_compilation_cache_dir() -> Path:
    """``$JAX_COMPILATION_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/diffsim/jax`` (``~/.cache/...``)."""
    if env := os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffsim" / "jax"


@contextmanager
def compilation_cache(path: str | os.PathLike | None = None) -> Iterator[Path | None]:
    """JAX's persistent compilation cache at ``path`` (default :func:`default_compilation_cache_dir`) for
    every program compiled inside the ``with`` block, and for processes started inside it (the workers of
    ``run_all(jobs=N)``, through the ``JAX_*`` environment variables). On exit the previous settings and
    environment come back and JAX's cache is reset, so nothing outside the block is cached (no global
    state left behind: ``diffsim.cli.main`` is also called inside other programs and tests).

    Yields the directory, or ``None`` (cache left off, with a warning) when it cannot be created.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    cache_dir = Path(path) if path is not None else default_compilation_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        import warnings

        warnings.warn(
            f"compilation cache {cache_dir}: cannot create it ({err.strerror or err}); running without it.",
            stacklevel=3,
        )
        yield None
        return
    settings = {
        "jax_compilation_cache_dir": str(cache_dir),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    old_values = {name: getattr(jax.config, name) for name in settings}
    old_env = {name.upper(): os.environ.get(name.upper()) for name in settings}
    try:
        for name, value in settings.items():
            jax.config.update(name, value)
            os.environ[name.upper()] = str(value)
        jax_cache.reset_cache()  # a cache JAX set up earlier in this process would ignore the new settings
        yield cache_dir
    finally:
        for name, value in old_values.items():
            jax.config.update(name, value)
        for name, value in old_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        jax_cache.reset_cache()
