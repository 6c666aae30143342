"""Registers the suite's shared fixtures (tests/plugin.py); see that module's docstring."""

pytest_plugins = ["tests.plugin"]
