"""Results are one kind of container: every result is an ``equinox.Module``.

The walker reads the return annotation of every public function (and every public method of a public class)
of the faces (``diffsim``, ``diffsim.scores``, ``diffsim.sampling``, ``diffsim.analysis`` and its
subpackages, ``diffsim.data``, ``diffsim.training``) and asserts that each diffsim-defined class it names is
an ``eqx.Module``. Configuration objects are deliberately frozen dataclasses (hashable static inputs, not
results); they are listed here and asserted frozen. The study parts' results, the ``Check`` and ``Figure``
records and the study configs are checked in ``tests/test_runner.py`` (only the runner tests import the
studies).
"""

import collections.abc
import dataclasses
import functools
import importlib
import inspect
import pkgutil
import types
import typing

import equinox as eqx
import pytest

import diffsim
import diffsim.analysis
import diffsim.data
import diffsim.sampling
import diffsim.scores
import diffsim.training


#: configuration objects: inputs and static configuration, frozen dataclasses by design
CONFIG_DATACLASSES = {
    "diffsim.training._config.TrainConfig",
    "diffsim.data.autoencoder.AutoencoderConfig",
    "diffsim.data._guidance_mixtures.GuidanceCase",
    "diffsim.sampling._run.Run",  # a validated simulate() call (the input of the compiled run)
}


def _faces() -> list[types.ModuleType]:
    mods = [diffsim, diffsim.scores, diffsim.sampling, diffsim.analysis, diffsim.data, diffsim.training]
    for info in pkgutil.iter_modules(diffsim.analysis.__path__):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"diffsim.analysis.{info.name}"))
    return mods


def _own(obj) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "diffsim"


def _classes_in(annotation) -> set[type]:
    """The classes an annotation names (through unions, generics, ``tuple``/``list``/``dict``)."""
    out: set[type] = set()
    stack = [annotation]
    while stack:
        a = stack.pop()
        if a is None or a is type(None) or a is typing.Any:
            continue
        args = typing.get_args(a)
        if args:
            stack.extend(x for x in args if not isinstance(x, (str, int, type(...))))
            origin = typing.get_origin(a)
            if isinstance(origin, type) and _own(origin):
                out.add(origin)
            continue
        if isinstance(a, type) and _own(a):
            out.add(a)
    return out


def _return_classes(fn) -> set[type] | None:
    while isinstance(fn, functools.partial):
        fn = fn.func
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not evaluate (jaxtyping strings and the like)
        return None
    return _classes_in(hints["return"]) if "return" in hints else set()


def _callables() -> dict[str, collections.abc.Callable]:
    """Public functions of the faces and public methods of their public classes, by qualified name."""
    out: dict[str, collections.abc.Callable] = {}
    for mod in _faces():
        for name in getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]:
            obj = getattr(mod, name, None)
            if inspect.isfunction(obj) and _own(obj):
                out[f"{obj.__module__}.{obj.__qualname__}"] = obj
            elif isinstance(obj, type) and _own(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    if inspect.isfunction(fn):
                        out[f"{obj.__module__}.{obj.__qualname__}.{attr}"] = fn
    return out


def _result_classes(fns: dict[str, collections.abc.Callable]) -> dict[type, list[str]]:
    found: dict[type, list[str]] = {}
    for where, fn in fns.items():
        for cls in _return_classes(fn) or ():
            found.setdefault(cls, []).append(where)
    return found


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _not_modules(found: dict[type, list[str]]) -> list[str]:
    return [
        f"{_name(cls)} (returned by {where[0]})"
        for cls, where in found.items()
        if not issubclass(cls, eqx.Module) and _name(cls) not in CONFIG_DATACLASSES
    ]


def test_walker_finds_known_results():
    found = _result_classes(_callables())
    names = {_name(c) for c in found}
    for known in (
        "diffsim.analysis.windows._curves.WindowCurve",
        "diffsim.analysis.information._pid.PIDTerms",
        "diffsim.analysis.ridge._estimators.RidgeEvaluation",
        "diffsim.sampling._trajectory.Trajectory",
    ):
        assert known in names, known
    assert len(found) > 30


def test_annotations_are_readable():
    """The walker reads almost every return annotation (a few with runtime-only names may not evaluate)."""
    fns = _callables()
    unreadable = [k for k, fn in fns.items() if _return_classes(fn) is None]
    assert len(unreadable) <= 0.05 * len(fns), unreadable


def test_face_results_are_modules():
    assert _not_modules(_result_classes(_callables())) == []


@pytest.mark.parametrize("qualname", sorted(CONFIG_DATACLASSES))
def test_configs_are_frozen_dataclasses(qualname):
    module, _, name = qualname.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert dataclasses.is_dataclass(cls) and not issubclass(cls, eqx.Module)
    assert cls.__dataclass_params__.frozen
