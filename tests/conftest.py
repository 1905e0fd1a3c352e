"""Test configuration: every chapter of ``book/`` runs through nbval.

Chapters are MyST-markdown Jupytext notebooks (``book/*.md``). nbval only reads ``.ipynb``
files, so a plugin registered here collects the ``.md`` chapters, reads them with jupytext
and hands them to nbval, one test item per code cell. The plugin is registered globally in
``pytest_configure`` (a plain ``pytest_collect_file`` in this conftest would only see files
under ``tests/``).

It also sums the time of each chapter (kernel start and every cell) and fails the session
when a chapter takes longer than ``CHAPTER_TIME_LIMIT`` seconds (default 180: the book's
budget of 3 minutes per chapter on 2 cores).

When every cell of a chapter has run without error, the plugin saves the executed notebook
(the outputs nbval received, and the widget state the kernel announced over its comm
channel, as nbclient records it) to ``_build/executed/book/<chapter>.ipynb``, tagged with
the SHA-256 of the chapter's source. ``tools/build_site.py`` builds the site for the browser
test from these notebooks, so ``make test`` executes each chapter once, not twice.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import defaultdict
from pathlib import Path

import jupytext
import nbformat
import nbval.plugin as nbval_plugin
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTER_TIME_LIMIT = float(os.environ.get("CHAPTER_TIME_LIMIT", "180"))
EXECUTED = ROOT / "_build" / "executed"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def source_digest(path: Path) -> str:
    """The executed notebook's key: tools/build_site.py's ``digest`` (the chapter, lib/ and
    the pinned requirements), loaded from that file so that the two never disagree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_book_build_site", ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digest(path)


def executed_path(path: Path) -> Path:
    """Where the executed notebook of chapter ``path`` is saved."""
    return EXECUTED / path.resolve().relative_to(ROOT).with_suffix(".ipynb")


def is_chapter(path: Path) -> bool:
    """A ``.md`` file under book/ with a Jupytext header and a kernelspec."""
    if path.suffix != ".md" or BOOK not in path.resolve().parents:
        return False
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


class MarkdownNotebook(nbval_plugin.IPyNbFile):
    """nbval's notebook collector, fed by jupytext instead of nbformat."""

    def collect(self):
        self.cell_items = []
        # Hash the source now: an edit while the chapter runs must not pass as executed.
        self.source_sha256 = source_digest(Path(self.fspath))
        self.widget_state: dict[str, dict] = {}
        self.widget_buffers: dict[str, dict] = {}
        original = nbval_plugin.nbformat.read
        nbval_plugin.nbformat.read = lambda path, as_version=4: jupytext.read(path)
        try:
            for item in super().collect():
                self.cell_items.append(item)
                yield item
        finally:
            nbval_plugin.nbformat.read = original

    def get_kernel_message(self, timeout=None, stream="iopub"):
        msg = super().get_kernel_message(timeout=timeout, stream=stream)
        if msg["msg_type"] in ("comm_open", "comm_msg"):
            self.record_widget(msg)
        return msg

    def record_widget(self, msg) -> None:
        """Keep the state of each widget model, as nbclient does for ``store_widget_state``."""
        content = msg["content"]
        data = content.get("data") or {}
        if "state" not in data:  # custom messages carry no state
            return
        comm_id = content["comm_id"]
        self.widget_state.setdefault(comm_id, {}).update(data["state"])
        paths = data.get("buffer_paths") or []
        for path, buffer in zip(paths, msg.get("buffers") or []):
            self.widget_buffers.setdefault(comm_id, {})[tuple(path)] = {
                "data": base64.b64encode(bytes(buffer)).decode("ascii"),
                "encoding": "base64",
                "path": path,
            }

    def teardown(self):
        try:
            self.save_executed()
        finally:
            super().teardown()

    def save_executed(self) -> None:
        """Write the executed notebook if every cell of the chapter ran and passed."""
        target = executed_path(Path(self.fspath))
        plugin = self.config.pluginmanager.get_plugin("book-chapters")
        items = getattr(self, "cell_items", [])
        complete = (
            items
            and not self.timed_out
            and all(hasattr(item, "test_outputs") for item in items)
            and not (plugin and plugin.failed.intersection(item.nodeid for item in items))
        )
        if not complete:
            target.unlink(missing_ok=True)
            return
        for count, item in enumerate(items, start=1):
            item.cell.outputs = list(item.test_outputs)
            item.cell.execution_count = count
            for out in item.cell.outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
        state = {
            comm_id: {
                "model_name": s["_model_name"],
                "model_module": s["_model_module"],
                "model_module_version": s["_model_module_version"],
                "state": s,
                **({"buffers": list(self.widget_buffers[comm_id].values())}
                   if comm_id in self.widget_buffers else {}),
            }
            for comm_id, s in self.widget_state.items()
            if "_model_name" in s
        }
        if state:
            self.nb.metadata["widgets"] = {
                WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}
            }
        self.nb.metadata["book_executed"] = {"source_sha256": self.source_sha256}
        target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # an unpredictable name in the target's folder, then a rename
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with open(fd, "w", encoding="utf-8") as fh:
            nbformat.write(self.nb, fh)
        os.replace(tmp, target)


class ChapterPlugin:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: set[str] = set()

    def pytest_collect_file(self, file_path: Path, parent):
        opt = parent.config.option
        if (opt.nbval or opt.nbval_lax) and is_chapter(file_path):
            return MarkdownNotebook.from_parent(parent, path=file_path)
        return None

    def pytest_runtest_logreport(self, report):
        path = report.nodeid.split("::")[0]
        if path.endswith(".md"):
            self.seconds[path] += report.duration
            if report.failed:
                self.failed.add(report.nodeid)

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


@pytest.fixture(autouse=True)
def _default_dtype_is_restored():
    """A test that changes torch's default dtype must put it back: the modules of one
    pytest-xdist worker share a process (module fixtures may set float64 for themselves)."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    torch.set_default_dtype(before)
    assert after == before, f"the test left torch's default dtype at {after} (was {before})"


@pytest.fixture(scope="module")
def float64_default():
    """float64 as torch's default dtype for a whole test module, restored afterwards
    (pytest-xdist runs several modules in one process; the training tests expect float32).
    Use it with ``pytestmark = pytest.mark.usefixtures("float64_default")``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
