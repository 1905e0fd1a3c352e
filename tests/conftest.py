"""Test configuration: every chapter of ``book/`` runs through nbval.

Chapters are MyST-markdown Jupytext notebooks (``book/*.md``). nbval only reads ``.ipynb``
files, so a plugin registered here collects the ``.md`` chapters, reads them with jupytext
and hands them to nbval, one test item per code cell. The plugin is registered globally in
``pytest_configure`` (a plain ``pytest_collect_file`` in this conftest would only see files
under ``tests/``).

It also sums the time of each chapter (kernel start and every cell) and fails the session
when a chapter takes longer than ``CHAPTER_TIME_LIMIT`` seconds (default 180: the book's
budget of 3 minutes per chapter on 2 cores).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import jupytext
import nbval.plugin as nbval_plugin
import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTER_TIME_LIMIT = float(os.environ.get("CHAPTER_TIME_LIMIT", "180"))


def is_chapter(path: Path) -> bool:
    """A ``.md`` file under book/ with a Jupytext header and a kernelspec."""
    if path.suffix != ".md" or BOOK not in path.resolve().parents:
        return False
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


class MarkdownNotebook(nbval_plugin.IPyNbFile):
    """nbval's notebook collector, fed by jupytext instead of nbformat."""

    def collect(self):
        original = nbval_plugin.nbformat.read
        nbval_plugin.nbformat.read = lambda path, as_version=4: jupytext.read(path)
        try:
            yield from super().collect()
        finally:
            nbval_plugin.nbformat.read = original


class ChapterPlugin:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_collect_file(self, file_path: Path, parent):
        opt = parent.config.option
        if (opt.nbval or opt.nbval_lax) and is_chapter(file_path):
            return MarkdownNotebook.from_parent(parent, path=file_path)
        return None

    def pytest_runtest_logreport(self, report):
        path = report.nodeid.split("::")[0]
        if path.endswith(".md"):
            self.seconds[path] += report.duration

    def pytest_terminal_summary(self, terminalreporter):
        if not self.seconds:
            return
        terminalreporter.section("chapter execution times")
        for path, secs in sorted(self.seconds.items()):
            flag = "  TOO SLOW" if secs > CHAPTER_TIME_LIMIT else ""
            terminalreporter.write_line(f"{secs:7.1f} s  {path}{flag}")

    def pytest_sessionfinish(self, session, exitstatus):
        slow = {p: s for p, s in self.seconds.items() if s > CHAPTER_TIME_LIMIT}
        if slow and session.exitstatus == 0:
            session.exitstatus = 1
            tr = session.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"chapters over the {CHAPTER_TIME_LIMIT:.0f} s budget: {slow}", red=True)


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("book-chapters"):
        config.pluginmanager.register(ChapterPlugin(), "book-chapters")
