"""SIGHUP's plugin reload: entry-point plugins run their edited code too, and a broken
edit is a PluginError (the supervisor keeps the plugins it has), never a crash."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import EntryPoint

import pytest

from dtq import plugin_loader
from dtq.errors import PluginError
from dtq.plugin import JobContext

SOURCE = """
from dtq.plugin import Plugin

class Versioned(Plugin):
    name = "versioned"

    def process(self, data, ctx):
        return {version!r}
"""


@pytest.fixture
def entry_point_module(tmp_path, monkeypatch):
    module = tmp_path / "ep_versioned.py"
    module.write_text(SOURCE.format(version="v1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a same-second edit must not reuse .pyc
    point = EntryPoint(name="versioned", value="ep_versioned:Versioned", group="dtq.plugins")
    monkeypatch.setattr(plugin_loader, "entry_points",
                        lambda group: [point] if group == "dtq.plugins" else [])
    yield module
    sys.modules.pop("ep_versioned", None)
    importlib.invalidate_caches()


def run(plugins) -> str:
    ctx = JobContext(job_id="j", attempt=1)
    return plugins["versioned"].process({}, ctx)


def test_a_reload_runs_an_entry_point_plugins_edited_code(entry_point_module):
    assert run(plugin_loader.load_plugins()) == "v1"
    entry_point_module.write_text(SOURCE.format(version="v2"))
    assert run(plugin_loader.load_plugins()) == "v1"  # without reload: what is loaded stays
    assert run(plugin_loader.load_plugins(reload=True)) == "v2"


def test_a_broken_edit_is_a_plugin_error_on_reload(entry_point_module):
    plugin_loader.load_plugins()
    entry_point_module.write_text("this is not python(\n")
    with pytest.raises(PluginError, match="failed to reload: SyntaxError"):
        plugin_loader.load_plugins(reload=True)


def test_a_reload_that_fails_halfway_leaves_the_running_plugins_code_alone(entry_point_module):
    """The edited module defines new names, then raises: the plugin kept from before must
    still see its own module's names, not half of the new ones."""
    plugins = plugin_loader.load_plugins()
    entry_point_module.write_text(SOURCE.format(version="v2").replace(
        "class Versioned", "VERSION = 'v2'\nraise RuntimeError('half way')\nclass Versioned"))
    with pytest.raises(PluginError, match="failed to reload: RuntimeError: half way"):
        plugin_loader.load_plugins(reload=True)
    assert not hasattr(sys.modules["ep_versioned"], "VERSION")  # the loaded module untouched
    assert run(plugins) == "v1"
