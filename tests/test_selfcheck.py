"""The self-check registry (lib.selfcheck) and how the chapters use it.

Generic tests of ``register`` and ``check``, then the wiring between the registry and the
book: every registered check belongs to an exercise of a chapter, is called in a visible
cell tagged ``self-check`` and, in a hidden solution cell, against the solution; every
self-check cell names a registered check; each chapter's module of checks has a test file
of its own (``tests/test_selfcheck_<chapter>.py``) that runs its checks on wrong answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

import lib.selfcheck as selfcheck
from lib.selfcheck import CHECKS, check, register

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
LABEL_RE = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.MULTILINE)
EXERCISE_RE = re.compile(r"^(`{3,}|:{3,})\{exercise(?:-start)?\}[^\n]*\n((?:[ \t]*:[\w-]+:[^\n]*\n)*)",
                         re.MULTILINE)
CHECK_CALL_RE = re.compile(r"""\bcheck\(\s*["'](ex-[^"']+)["']""")


@pytest.fixture
def registry():
    """The registry with a throw-away check ``ex-test-square`` (answer: 4), restored after."""
    selfcheck.load_all()  # the chapters' checks first, so that restoring keeps them
    saved = dict(CHECKS)

    @register("ex-test-square", hint="square the number 2", expects="an int")
    def _square(answer):
        assert answer == 4, f"got {answer}, not 2 squared"

    yield
    CHECKS.clear()
    CHECKS.update(saved)


def test_pass_prints_one_line(registry, capsys):
    assert check("ex-test-square", 4)
    assert capsys.readouterr().out == "✓ ex-test-square: pass\n"


def test_wrong_answer_prints_message_and_hint(registry, capsys):
    assert not check("ex-test-square", 5)
    out = capsys.readouterr().out
    assert out.startswith("✗ ex-test-square: not yet") and out.count("\n") == 1
    assert "got 5, not 2 squared" in out and "Hint: square the number 2" in out


def test_none_answer_is_not_yet(registry, capsys):
    assert not check("ex-test-square", None)
    out = capsys.readouterr().out
    assert "not yet" in out and "an int" in out  # says what is expected


def test_wrong_form_is_a_fail_not_a_crash(registry, capsys):
    @register("ex-test-shape", hint="a (2,) tensor", expects="a tensor of shape (2,)")
    def _shape(answer):
        assert answer.shape == (2,)

    assert not check("ex-test-shape", 3.0)  # AttributeError: a float has no .shape
    assert "wrong form" in capsys.readouterr().out


def test_quiet_prints_nothing(registry, capsys):
    assert check("ex-test-square", 4, quiet=True)
    assert not check("ex-test-square", 3, quiet=True)
    assert capsys.readouterr().out == ""


def test_unknown_label_raises(registry):
    with pytest.raises(ValueError, match="ex-no-such-exercise"):
        check("ex-no-such-exercise", 1)


def test_duplicate_registration_raises(registry):
    with pytest.raises(ValueError, match="ex-test-square"):
        @register("ex-test-square", hint="again", expects="an int")
        def _again(answer):
            pass


def test_label_must_be_an_exercise_label(registry):
    with pytest.raises(ValueError, match="label"):
        register("entropy-1", hint="h", expects="e")


# --- the registry and the chapters -------------------------------------------------------


def chapter_sources() -> dict[str, Path]:
    out = {}
    for path in sorted(BOOK.glob("*.md")):
        head = path.read_text(encoding="utf-8")[:2000]
        if head.startswith("---") and "jupytext:" in head:
            out[path.stem] = path
    return out


def exercise_labels(text: str) -> set[str]:
    labels = set()
    for m in EXERCISE_RE.finditer(text):
        found = LABEL_RE.search(m[2])
        if found:
            labels.add(found[1])
    return labels


@pytest.fixture(scope="module")
def book():
    """Per chapter: its exercise labels, and the labels checked in self-check cells and in
    solution cells."""
    out = {}
    for name, path in chapter_sources().items():
        nb = jupytext.read(path)
        self_checked, solution_checked = set(), set()
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            tags = cell.metadata.get("tags", [])
            labels = set(CHECK_CALL_RE.findall(cell.source))
            if "self-check" in tags:
                assert len(labels) == 1, f"{name}: a self-check cell checks one exercise"
                self_checked |= labels
            if "solution" in tags:
                solution_checked |= labels
        out[name] = {"exercises": exercise_labels(path.read_text(encoding="utf-8")),
                     "self_checked": self_checked, "solution_checked": solution_checked}
    return out


def test_every_check_belongs_to_an_exercise_and_is_used(book):
    registry = selfcheck.load_all()
    exercises = set().union(*(c["exercises"] for c in book.values()))
    self_checked = set().union(*(c["self_checked"] for c in book.values()))
    solution_checked = set().union(*(c["solution_checked"] for c in book.values()))
    labels = {label for label in registry if not label.startswith("ex-test-")}
    assert not labels - exercises, f"checks for no exercise: {sorted(labels - exercises)}"
    assert not labels - self_checked, \
        f"checks never called in a self-check cell: {sorted(labels - self_checked)}"
    assert not labels - solution_checked, \
        f"checks never run against their solution: {sorted(labels - solution_checked)}"


def test_every_self_check_cell_has_a_check_in_its_chapter(book):
    registry = selfcheck.load_all()
    for name, chapter in book.items():
        unknown = chapter["self_checked"] - set(registry)
        assert not unknown, f"{name}: self-check cells for unregistered checks {sorted(unknown)}"
        foreign = chapter["self_checked"] - chapter["exercises"]
        assert not foreign, f"{name}: self-checks of exercises of other chapters {sorted(foreign)}"


def test_every_chapter_module_has_its_own_wrong_answer_tests():
    registry = selfcheck.load_all()
    for module in sorted((ROOT / "lib" / "selfcheck").glob("*.py")):
        if module.name == "__init__.py":
            continue
        test_file = ROOT / "tests" / f"test_selfcheck_{module.stem}.py"
        assert test_file.is_file(), f"{module.name} has no {test_file.name}"
        tests = test_file.read_text(encoding="utf-8")
        mine = [label for label, c in registry.items()
                if c.test.__module__ == f"lib.selfcheck.{module.stem}"]
        missing = [label for label in mine if label not in tests]
        assert not missing, f"{test_file.name} does not test {missing}"
        assert "is False" in tests or "not check(" in tests or "== False" in tests, \
            f"{test_file.name} should assert that wrong answers fail"
