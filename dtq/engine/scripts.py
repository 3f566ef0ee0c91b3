"""Loads the Lua scripts: each is lib.lua plus its own body, registered once and run by SHA."""

from __future__ import annotations

from functools import cache
from importlib import resources

SCRIPT_NAMES = ("enqueue", "claim", "complete", "fail", "give_back", "give_back_unknown", "renew", "recover",
                "cancel", "watch", "admit", "progress", "retry_dead", "purge_dead")


@cache
def script_source(name: str) -> str:
    """The full source of one script (shared helpers first)."""
    lua = resources.files("dtq.engine") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()
