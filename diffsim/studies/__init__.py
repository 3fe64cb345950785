"""Paper-level studies, each a frozen config dataclass plus ``run(config, out_dir)``, and their runner.

Every module in this package that is not private is imported by :func:`discover`, which registers the
studies it defines with :func:`diffsim.studies.register`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._runner import (
    STUDIES as STUDIES,
)
from ._runner import (
    Check as Check,
)
from ._runner import (
    ResultCache as ResultCache,
)
from ._runner import (
    Results as Results,
)
from ._runner import (
    StudySpec as StudySpec,
)
from ._runner import (
    build_config as build_config,
)
from ._runner import (
    get_study as get_study,
)
from ._runner import (
    parse_overrides as parse_overrides,
)
from ._runner import (
    progress_bar as progress_bar,
)
from ._runner import (
    register as register,
)
from ._runner import (
    run_all as run_all,
)
from ._runner import (
    run_study as run_study,
)
from ._runner import (
    write_index as write_index,
)
from ._runner import (
    write_reports as write_reports,
)


def discover() -> dict[str, StudySpec]:
    """Import every public module of :mod:`diffsim.studies` so that its studies register themselves."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return STUDIES
