"""Fixtures of the config package's tests."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import prunebench.config as config_package
from prunebench.config import method_sections, neutral_defaults, not_training_settings


def _clear_schema_caches() -> None:
    for marks in (neutral_defaults, not_training_settings, method_sections):
        marks.cache_clear()


@pytest.fixture
def replace_schema(monkeypatch):
    """Call with a schema mapping: every module of the config package reads it instead of the shipped
    one (as a later prunebench with another schema would), until the test ends."""

    def replace(schema: dict) -> None:
        for info in pkgutil.iter_modules(config_package.__path__):
            module = importlib.import_module(f"prunebench.config.{info.name}")
            if hasattr(module, "load_schema"):
                monkeypatch.setattr(module, "load_schema", lambda: schema)
        _clear_schema_caches()

    yield replace
    monkeypatch.undo()
    _clear_schema_caches()
