"""Root conftest: makes the chapter collector of tests/conftest.py active for every
invocation, including `pytest book/<chapter>.md` (pytest loads a conftest only for the
directories on the path to the files it is given, so tests/conftest.py alone would not be
seen when only a chapter is named)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "book_tests_conftest", Path(__file__).parent / "tests" / "conftest.py")
_plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_plugin)


def pytest_configure(config):
    _plugin.pytest_configure(config)
