"""Finding plugins: the ``dtq.plugins`` entry-point group and operator-given ``module:Class``.

Only names an operator installed or typed are ever imported; a job's content
never picks code to import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from dtq.errors import PluginError
from dtq.plugin import Plugin, PluginConfig

ENTRY_POINT_GROUP = "dtq.plugins"


def _resolve(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"--plugin {spec!r}: expected module:Class, e.g. mypkg.plugins:Resize")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure stops the supervisor cleanly
        raise PluginError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"plugin {spec!r}: module {module_name!r} has no {attr!r}") from None


def _rerun_modules(modules: dict[str, str]) -> None:
    """SIGHUP: run the plugins' modules (name -> where it was named) afresh, each into a
    new module object, and put them in ``sys.modules`` only once all of them ran: a
    module that fails, even halfway, leaves every loaded module as it was, and the
    plugins the supervisor keeps go on with their own code. Only these modules: code
    they import from other modules of their package keeps its loaded version."""
    fresh = {}
    for name, origin in modules.items():
        if name not in sys.modules:
            continue  # not imported yet: the plain import below runs it
        try:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                raise ImportError(f"no module named {name!r} any more")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"plugin {origin} failed to reload: {type(exc).__name__}: {exc}") from None
        fresh[name] = module
    sys.modules.update(fresh)


def _instantiate(obj: Any, origin: str, config: PluginConfig) -> Plugin:
    if not isinstance(obj, type) or not callable(getattr(obj, "process", None)):
        raise PluginError(f"plugin {origin}: {obj!r} is not a class with a process(data, ctx) method")
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {origin}: class {obj.__name__} sets no name")
    try:
        plugin = obj(config)
        plugin.setup()
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"plugin {origin} failed to set up: {type(exc).__name__}: {exc}") from None
    return plugin


def load_plugins(specs: Iterable[str] = (), *, entry_point_group: str | None = ENTRY_POINT_GROUP,
                 config: PluginConfig | None = None, reload: bool = False) -> dict[str, Plugin]:
    """Import, instantiate and set up every plugin; raise PluginError naming the culprit."""
    config = config or PluginConfig()
    found: list[tuple[str, Any]] = []
    points = list(entry_points(group=entry_point_group)) if entry_point_group else []
    if reload:
        _rerun_modules({**{ep.module: f"entry point {ep.name} = {ep.value}" for ep in points},
                        **{spec.partition(":")[0]: repr(spec) for spec in specs}})
    for ep in points:
        try:
            found.append((f"{ep.name} (entry point {ep.value})", ep.load()))
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"plugin entry point {ep.name} = {ep.value} failed to import: "
                              f"{type(exc).__name__}: {exc}") from None
    for spec in specs:
        found.append((spec, _resolve(spec)))
    plugins: dict[str, Plugin] = {}
    for origin, obj in found:
        plugin = _instantiate(obj, origin, config)
        plugins[plugin.name] = plugin  # later (--plugin) wins over an entry point of that name
    return plugins
