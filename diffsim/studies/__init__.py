"""Paper-level studies, each a config, a list of parts (compute, checks, figures) and its figures module; and
their runner.

Every module in this package that is not private is imported by :func:`discover`, which registers the
studies it defines with :func:`diffsim.studies.register`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._compilation_cache import (
    compilation_cache as compilation_cache,
    default_compilation_cache_dir as default_compilation_cache_dir,
)
from ._runner import (
    STUDIES as STUDIES,
    Check as Check,
    Figure as Figure,
    Part as Part,
    PartContext as PartContext,
    ResultCache as ResultCache,
    Results as Results,
    RunLockedError as RunLockedError,
    Study as Study,
    StudySpec as StudySpec,
    build_config as build_config,
    check as check,
    get_study as get_study,
    parse_overrides as parse_overrides,
    progress_bar as progress_bar,
    register as register,
    register_study as register_study,
    run_all as run_all,
    run_experiment as run_experiment,
    run_study as run_study,
    write_index as write_index,
    write_reports as write_reports,
)


def discover() -> dict[str, StudySpec]:
    """Import every public module of :mod:`diffsim.studies` so that its studies register themselves."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return STUDIES
