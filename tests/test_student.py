"""The student edition (tools/student.py): no solution leaks, every exercise is there.

The solutions are read from the book's sources here, independently of the code that strips
them: the text of every ``{solution}`` block and ``{solution-start}``/``{solution-end}``
region, and the code of every cell tagged ``solution`` or inside such a region. From them
come *fragments*: code lines, and runs of plain words between markup, that appear nowhere
else in the book. No fragment may appear in the student notebooks.

The student notebooks are built here (seconds). The site and the solutions manual take the
executed notebooks and a few minutes, so ``make student`` builds them and then runs this
file with ``STUDENT_EDITION=_build/student``; the tests of the built site run only then
(otherwise they are skipped, saying so). On the site they check, in the text of every page
and in every notebook it offers for download: no fragment, no solution element, the same
exercises as the book; and, as a control that the fragments are found when present, every
fragment appears in the solutions manual.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import student  # noqa: E402

EDITION = os.environ.get("STUDENT_EDITION")
FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|:{3,})(.*)$")
LABEL_RE = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.MULTILINE)
MARKUP_SPLIT = re.compile(r"\$[^$]*\$|`[^`]*`|\{[^}]*\}|[*_\[\]()<>|\\#=]")
MIN_WORDS = 6
MIN_CODE_CHARS = 25


def fenced_spans(text: str, info: re.Pattern) -> list[tuple[int, int, str]]:
    """(start line, end line, opening info) of top-level fenced blocks whose info matches."""
    lines = text.splitlines()
    spans, i = [], 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, j = m[1], i + 1
        while j < len(lines) and not (lines[j].strip() and set(lines[j].strip()) == {fence[0]}
                                      and len(lines[j].strip()) >= len(fence)):
            j += 1
        if info.match(m[2].strip()):
            spans.append((i, j, m[2].strip()))
        i = j + 1
    return spans


def split_book(path: Path) -> tuple[list[str], str, list[str]]:
    """(solution texts, the rest of the source, exercise labels) of a chapter's source."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    drop = [False] * len(lines)
    solutions = []
    for start, end, _ in fenced_spans(text, re.compile(r"\{solution\}")):
        solutions.append("\n".join(lines[start: end + 1]))
        drop[start: end + 1] = [True] * (end + 1 - start)
    starts = fenced_spans(text, re.compile(r"\{solution-start\}"))
    ends = fenced_spans(text, re.compile(r"\{solution-end\}"))
    assert len(starts) == len(ends), f"{path.name}: unbalanced solution-start/-end"
    for (s, _, _), (_, e, _) in zip(starts, ends):
        solutions.append("\n".join(lines[s: e + 1]))
        drop[s: e + 1] = [True] * (e + 1 - s)
    # code cells tagged solution (jupytext's MyST format: a code-cell fence with tags)
    for start, end, _ in fenced_spans(text, re.compile(r"\{code-cell\}")):
        head = "\n".join(lines[start: min(end, start + 6)])
        if re.search(r"tags:.*\bsolution\b", head):
            solutions.append("\n".join(lines[start: end + 1]))
            drop[start: end + 1] = [True] * (end + 1 - start)
    rest = "\n".join(l for l, d in zip(lines, drop) if not d)
    exercises = []
    for start, end, _ in fenced_spans(text, re.compile(r"\{exercise(-start)?\}")):
        found = LABEL_RE.search("\n".join(lines[start: end + 1]))
        exercises.append(found[1] if found else None)
    return solutions, rest, exercises


def normalise(text: str) -> str:
    for a, b in (("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("–", "--"), ("—", "---"),
                 ("…", "..."), ("\u00a0", " ")):
        text = text.replace(a, b)
    return " ".join(text.split())


def fragments(solution: str) -> set[str]:
    """Code lines and runs of plain words of one solution."""
    found = set()
    in_code = False
    prose = []
    for line in solution.splitlines():
        stripped = line.strip()
        if FENCE_OPEN.match(line):
            in_code = bool(re.search(r"python|code-cell", stripped)) and not in_code
            prose.append("|")  # a fenced block ends a run of words (MARKUP_SPLIT splits on |)
            continue
        if stripped.startswith(":") or stripped == "---" or stripped.startswith("tags:"):
            continue
        if in_code:
            if len(stripped) >= MIN_CODE_CHARS and not stripped.startswith("#"):
                found.add(normalise(stripped))
            continue
        prose.append(re.sub(r"^(\d+\.|[-*+])\s+", "", stripped))  # list markers do not render
    # maths and roles can span lines: split the joined prose, drop pieces with a stray $
    for piece in MARKUP_SPLIT.split(" ".join(prose)):
        piece = normalise(piece).strip(" ,.;:")
        if len(piece.split()) >= MIN_WORDS and "$" not in piece:
            found.add(piece)
    return found


@pytest.fixture(scope="module")
def book():
    """Per chapter: solution fragments that occur nowhere else in the book, exercise labels."""
    out = {}
    sources = student.chapters()
    split = {p: split_book(p) for p in sources}
    others = normalise(" ".join(rest for _, rest, _ in split.values()) + " " + " ".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md") if p not in split))
    for path, (solutions, _, exercises) in split.items():
        frags = [{f for f in fragments(s) if f not in others} for s in solutions]
        blocks = [s for s in solutions if "{code-cell}" not in s.splitlines()[0]]
        out[path.stem] = {"solutions": solutions, "fragments": frags, "exercises": exercises,
                          "blocks": len(blocks)}
    return out


def test_book_has_exercises_and_solutions(book):
    assert sum(len(c["exercises"]) for c in book.values()) >= 20
    assert all(None not in c["exercises"] for c in book.values()), "an exercise has no label"
    with_fragments = [f for c in book.values() for f in c["fragments"] if f]
    solutions = [s for c in book.values() for s in c["solutions"]]
    # the control of the leak test: nearly every solution has text of its own to look for
    assert len(with_fragments) >= 0.8 * len(solutions)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "notebooks"
    stubs = student.self_check_stubs()
    problems = student.build_notebooks(out, stubs)
    assert not problems, f"student notebooks that need a solution to run: {problems}"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.ipynb"))}


def cell_text(nb: dict) -> str:
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb["cells"])


def test_no_solution_in_student_notebooks(book, notebooks):
    assert set(notebooks) == set(book)
    for name, nb in notebooks.items():
        text = normalise(cell_text(nb))
        leaks = [f for frags in book[name]["fragments"] for f in frags if f in text]
        assert not leaks, f"{name}: solution text in the student notebook: {leaks[:3]}"
        assert "{solution" not in text
        assert not [c for c in nb["cells"] if "solution" in c.get("metadata", {}).get("tags", [])]


def test_student_notebooks_keep_every_exercise(book, notebooks):
    for name, nb in notebooks.items():
        labels = LABEL_RE.findall("\n".join(
            "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"))
        exercises = [l for l in labels if l in set(book[name]["exercises"])]
        assert exercises == book[name]["exercises"], name


def test_self_check_cells_have_a_stub(notebooks):
    stubs = student.self_check_stubs()
    for name, nb in notebooks.items():
        cells = nb["cells"]
        for k, cell in enumerate(cells):
            if "self-check" not in cell.get("metadata", {}).get("tags", []):
                continue
            label = student.CHECK_CALL_RE.search("".join(cell["source"]))["label"]
            before = "".join(cells[k - 1]["source"])
            assert before == f"answer = None  # your answer: {stubs[label]}", (name, label)


def test_strip_solutions_on_a_small_notebook():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "```{exercise} Square\n:label: ex-t-1\n\nSquare 2.\n```\n\n"
            "````{solution} ex-t-1\n:class: dropdown\n\nIt is four.\n```python\nx = 2 ** 2\n```\n"
            "````\n\nText after."),
        nbformat.v4.new_markdown_cell("```{solution-start} ex-t-1\n```\nREGION TEXT"),
        nbformat.v4.new_code_cell("region_code = 1"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```\nKept."),
        nbformat.v4.new_code_cell("answer = 4", metadata={"tags": ["remove-cell", "solution"]}),
        nbformat.v4.new_code_cell("check('ex-t-1', answer)", metadata={"tags": ["self-check"]}),
    ]
    out, report = student.strip_solutions(nb, stubs={"ex-t-1": "an int"})
    text = "\n".join(c.source for c in out.cells)
    for secret in ("four", "2 ** 2", "REGION TEXT", "region_code", "answer = 4"):
        assert secret not in text
    assert "Square 2." in text and "Text after." in text and "Kept." in text
    assert [c.source for c in out.cells[-2:]] == ["answer = None  # your answer: an int",
                                                  "check('ex-t-1', answer)"]
    assert len(report.solution_texts) == 2 and len(report.solution_cells) == 2
    with pytest.raises(ValueError, match="ex-t-2"):
        nb.cells[-1].source = "check('ex-t-2', answer)"
        student.strip_solutions(nb, stubs={"ex-t-1": "an int"})


def test_solution_dependencies_are_found():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("z = 5", metadata={"tags": ["solution"]}),
                nbformat.v4.new_code_cell("y = 1\nprint(y, z)")]
    out, report = student.strip_solutions(nb, stubs={})
    problems = student.solution_dependencies(report, out)
    assert len(problems) == 1 and "reads z" in problems[0]


# --- the built site and manual (make student) --------------------------------------------

needs_edition = pytest.mark.skipif(
    not EDITION, reason="set STUDENT_EDITION to a built student edition (`make student`)")


def page_texts(html_dir: Path) -> dict[str, str]:
    out = {}
    for page in sorted((html_dir / "book").glob("*.html")):
        raw = page.read_text(encoding="utf-8")
        main = raw[raw.find("<article"): raw.rfind("</article>")]
        main = re.sub(r"<(script|style)\b.*?</\1>", "", main, flags=re.DOTALL)
        out[page.stem] = normalise(html.unescape(re.sub(r"<[^>]+>", "", main)))
    return out


@needs_edition
def test_no_solution_in_student_site(book):
    site = Path(EDITION) / "site" / "_build" / "html"
    texts = page_texts(site)
    downloads = {p.stem: normalise(cell_text(json.loads(p.read_text(encoding="utf-8"))))
                 for p in (site / "_sources" / "book").glob("*.ipynb")}
    assert set(book) <= set(texts) and set(book) <= set(downloads)
    for name, chapter in book.items():
        frags = [f for fs in chapter["fragments"] for f in fs]
        for where, text in (("page", texts[name]), ("download", downloads[name])):
            leaks = [f for f in frags if f in text]
            assert not leaks, f"{name} ({where}): solution text in the student site: {leaks[:3]}"
        raw = (site / "book" / f"{name}.html").read_text(encoding="utf-8")
        assert 'class="solution' not in raw, f"{name}: a solution element in the student site"


@needs_edition
def test_student_site_keeps_every_exercise(book):
    site = Path(EDITION) / "site" / "_build" / "html"
    for name, chapter in book.items():
        raw = (site / "book" / f"{name}.html").read_text(encoding="utf-8")
        ids = re.findall(r'<div class="exercise[^"]*" id="([^"]+)"', raw)
        assert ids == chapter["exercises"], name


@needs_edition
def test_solutions_manual_holds_every_solution(book):
    texts = page_texts(Path(EDITION) / "solutions" / "_build" / "html")
    for name, chapter in book.items():
        # the manual holds every solution block; the hidden cells that execute a solution
        # are the build's check of it, not part of the manual
        frags = [f for s, fs in zip(chapter["solutions"], chapter["fragments"])
                 if "{code-cell}" not in s.splitlines()[0] for f in fs]
        missing = [f for f in frags if f not in texts[name]]
        assert not missing, f"{name}: solution text missing from the manual: {missing[:3]}"
        raw = (Path(EDITION) / "solutions" / "_build" / "html" / "book" /
               f"{name}.html").read_text(encoding="utf-8")
        shown = len(re.findall(r'<div class="solution\b', raw))
        assert shown == chapter["blocks"], f"{name}: {shown} solutions in the manual"



def test_course_guide_starting_points_exist():
    """Every `lib....` name the course guide gives as a project's starting point exists."""
    import importlib

    text = (ROOT / "book" / "course_guide.md").read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"`(lib(?:\.\w+)+)`", text)))
    assert len(names) >= 20
    missing = []
    for name in names:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ImportError:
                continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(name)
    assert not missing, f"the course guide names what lib does not have: {missing}"


def test_glue_only_a_solution_defines_is_reported():
    import nbformat

    glued = {"output_type": "display_data", "data": {"text/plain": "0.5"},
             "metadata": {"scrapbook": {"name": "secret", "mime_prefix": ""}}}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("The answer is {glue:text}`secret:.2f`."),
                nbformat.v4.new_code_cell("glue('secret', 0.5)",
                                          metadata={"tags": ["remove-cell", "solution"]})]
    nb.cells[1].outputs = [nbformat.from_dict(glued)]
    out, report = student.strip_solutions(nb, stubs={})
    assert report.removed_glue == {"secret"}
    assert student.glue_problems(report, out) == [
        "glue key 'secret' is used on the page but only a solution cell glues it"]
