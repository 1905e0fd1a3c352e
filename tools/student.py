"""The student edition of the book: notebooks and a site without solutions, and a manual.

``make student`` runs this script. It writes, under ``_build/student/``:

``notebooks/<chapter>.ipynb``
    every chapter as a Jupyter notebook (read from its MyST source with jupytext, no
    outputs) with every solution removed: the ``{solution}`` blocks and
    ``{solution-start}`` ... ``{solution-end}`` regions of the markdown (with any cells in
    between), and every cell tagged ``solution``. Before each cell tagged ``self-check`` a
    stub cell ``answer = None  # your answer: <what the check expects>`` is inserted (the
    ``expects`` of the check in :mod:`lib.selfcheck`), so the notebook runs from top to
    bottom and each self-check prints "not yet" until the student replaces the stub.
``site/_build/html/``
    the book's site built from the book's *executed* notebooks (those ``make test`` saves;
    chapters without an up-to-date one are executed first, as ``tools/build_site.py`` does)
    with the same solutions stripped, the same stubs inserted and the self-check cells'
    outputs cleared. No cell is executed again, so no student page can fail on a variable
    that only a solution defined; the pages keep every other output, and their download
    button offers the student notebook with outputs. Warnings are errors (``-W -n``).
``solutions/_build/html/``
    the solutions manual: the book's table of contents with, on every chapter page, its
    section headings and each exercise followed by its full solution (open, not folded; the
    solutions' own code cells with their outputs). Everything else on the page is parsed but
    not shown (a Sphinx ``only`` block), so theorem, equation and exercise numbers and every
    cross-reference agree with the book; references to content the manual does not show link
    to the student site.

The script also reports later cells that read a variable only a solution cell defines (a
student running the notebook would meet a ``NameError`` there) and glue keys that only a
removed cell defines; either is an error.

Usage: ``python tools/student.py [--notebooks-only] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import copy
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import build_site  # noqa: E402  (tools/build_site.py: executed notebooks, mirroring)

OUT = ROOT / "_build" / "student"
SOLUTION_TAG = "solution"
SELF_CHECK_TAG = "self-check"
STUB_TAG = "self-check-stub"

FENCE_RE = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|:{3,})(?P<info>.*)$")
SOLUTION_INFO_RE = re.compile(r"^\{solution\}")
SOLUTION_START_RE = re.compile(r"^\{solution-start\}")
SOLUTION_END_RE = re.compile(r"^\{solution-end\}")
EXERCISE_INFO_RE = re.compile(r"^\{exercise(?:-start|-end)?\}")
CHECK_CALL_RE = re.compile(r"""check\(\s*["'](?P<label>ex-[^"']+)["']""")
GLUE_ROLE_RE = re.compile(r"\{glue(?::[a-z]+)?\}`(?P<key>[^`]+)`")
GLUE_DIRECTIVE_RE = re.compile(r"\{glue(?::[a-z]+)?\}[ \t]+(?P<key>\S+)")
HEADING_RE = re.compile(r"^#{1,6}[ \t]")
TARGET_RE = re.compile(r"^\([\w.:-]+\)=[ \t]*$")
CLASS_RE = re.compile(r"^[ \t]*:class:(?P<classes>[^\n]*)\n", re.MULTILINE)


def unfold(text: str) -> str:
    """A solution's options without the ``dropdown`` class (the manual shows it open)."""
    def drop(m: re.Match) -> str:
        rest = [c for c in m["classes"].split() if c != "dropdown"]
        return f":class: {' '.join(rest)}\n" if rest else ""
    return CLASS_RE.sub(drop, text, count=1)


# --- the markdown: fenced blocks ---------------------------------------------------------


@dataclass
class Block:
    """A top-level run of markdown lines: ``kind`` is 'text', 'heading', 'exercise',
    'solution', 'solution-start', 'solution-end' or 'fence' (any other fenced block)."""

    kind: str
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def split_blocks(text: str) -> list[Block]:
    """Split MyST markdown into top-level blocks. A fenced block closes at a line of the
    same fence character at least as long as its opening fence (CommonMark), so fenced code
    inside a ````` ````{solution} ````` block belongs to the block."""
    lines = text.splitlines(keepends=True)
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE_RE.match(line.rstrip("\n"))
        if m:
            fence, info = m["fence"], m["info"].strip()
            j = i + 1
            while j < len(lines):
                close = lines[j].strip()
                if close and set(close) == {fence[0]} and len(close) >= len(fence):
                    break
                j += 1
            chunk = lines[i: j + 1]
            if SOLUTION_INFO_RE.match(info):
                kind = "solution"
            elif SOLUTION_START_RE.match(info):
                kind = "solution-start"
            elif SOLUTION_END_RE.match(info):
                kind = "solution-end"
            elif EXERCISE_INFO_RE.match(info):
                kind = "exercise"
            else:
                kind = "fence"
            blocks.append(Block(kind, chunk))
            i = j + 1
            continue
        kind = "heading" if HEADING_RE.match(line) else "text"
        if kind == "text" and blocks and blocks[-1].kind == "text":
            blocks[-1].lines.append(line)
        else:
            blocks.append(Block(kind, [line]))
        i += 1
    return blocks


# --- stripping solutions -----------------------------------------------------------------


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@dataclass
class Stripped:
    """What was removed from one notebook: the solution texts and cells, for the report."""

    solution_texts: list[str] = field(default_factory=list)
    solution_cells: list[str] = field(default_factory=list)
    removed_glue: set[str] = field(default_factory=set)


def glue_keys(cell) -> set[str]:
    """Glue keys that a code cell's outputs define (myst-nb's ``glue``)."""
    keys = set()
    for out in cell.get("outputs", []):
        meta = out.get("metadata", {})
        key = meta.get("scrapbook", {}).get("name")
        if key:
            keys.add(key)
    return keys


def strip_solutions(nb, *, stubs: dict[str, str] | None = None) -> tuple[object, Stripped]:
    """A copy of notebook ``nb`` without solutions (see the module docstring).

    ``stubs`` maps exercise labels to what their self-check expects; a stub cell is
    inserted before every cell tagged ``self-check`` (unknown labels raise ValueError).
    Outputs of the self-check cells are cleared: they were computed from the solution.
    """
    nb = copy.deepcopy(nb)
    report = Stripped()
    cells = []
    in_region = False  # inside {solution-start} ... {solution-end}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            kept: list[str] = []
            for block in split_blocks(cell.source):
                if block.kind == "solution-start":
                    in_region = True
                    report.solution_texts.append("")
                    continue
                if block.kind == "solution-end":
                    in_region = False
                    continue
                if in_region:
                    report.solution_texts[-1] += block.text
                    continue
                if block.kind == "solution":
                    report.solution_texts.append(block.text)
                    continue
                kept.append(block.text)
            source = re.sub(r"\n{3,}", "\n\n", "".join(kept)).strip("\n")
            if source:
                cell.source = source
                cells.append(cell)
            continue
        if in_region or SOLUTION_TAG in tags(cell):
            if cell.cell_type == "code":
                report.solution_cells.append(cell.source)
                report.removed_glue |= glue_keys(cell)
            elif report.solution_texts:
                report.solution_texts[-1] += cell.source
            continue
        if cell.cell_type == "code" and SELF_CHECK_TAG in tags(cell):
            cell.outputs = []
            cell.execution_count = None
            if stubs is not None:
                m = CHECK_CALL_RE.search(cell.source)
                if not m:
                    raise ValueError(f"a self-check cell calls no check('ex-...', answer): "
                                     f"{cell.source!r}")
                if m["label"] not in stubs:
                    raise ValueError(f"self-check cell for {m['label']!r}, which has no "
                                     "registered check in lib.selfcheck")
                stub = nbformat.v4.new_code_cell(
                    f"answer = None  # your answer: {stubs[m['label']]}",
                    metadata={"tags": [STUB_TAG]})
                stub.pop("id", None)
                cells.append(stub)
        cells.append(cell)
    if in_region:
        raise ValueError("a {solution-start} has no {solution-end}")
    nb.cells = cells
    # Fresh cell ids: nbformat requires them unique, and removing cells keeps them so.
    for k, cell in enumerate(nb.cells):
        if "id" in cell or nb.nbformat_minor >= 5:
            cell["id"] = f"cell-{k}"
    return nb, report


def self_check_stubs() -> dict[str, str]:
    """label -> what the answer must be, for every registered self-check."""
    import lib.selfcheck as selfcheck

    selfcheck.load_all()
    return {label: " ".join(c.expects.split()) for label, c in selfcheck.CHECKS.items()}


# --- checks of the stripped notebooks ----------------------------------------------------


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds, names it reads) by its syntax tree; IPython magics are dropped."""
    text = "\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set(), set()
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            bound.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)) \
                if not isinstance(node, ast.ClassDef) else None
        elif isinstance(node, ast.Lambda):
            bound.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.MatchAs) and node.name:
            bound.add(node.name)
    return bound, read


def solution_dependencies(report: Stripped, student_nb) -> list[str]:
    """Names that a student notebook reads but that only the removed solution cells bind."""
    solution_bound: set[str] = set()
    for source in report.solution_cells:
        solution_bound |= _names(source)[0]
    bound = set(dir(builtins)) | {"get_ipython", "display", "In", "Out"}
    problems = []
    for k, cell in enumerate(student_nb.cells):
        if cell.cell_type != "code":
            continue
        b, r = _names(cell.source)
        missing = sorted((r - bound - b) & solution_bound)
        if missing:
            first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
            problems.append(f"cell {k} ({first!r}) reads {', '.join(missing)}, which only a "
                            "solution cell defines")
        bound |= b
    return problems


def glue_problems(report: Stripped, nb) -> list[str]:
    used = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            keys = [m["key"] for m in GLUE_ROLE_RE.finditer(cell.source)]
            keys += [m["key"] for m in GLUE_DIRECTIVE_RE.finditer(cell.source)]
            # {glue:text}`key:.2f` carries a format; path::key glues from another page
            used |= {k.split(":")[0] for k in keys if "::" not in k}
    kept = set().union(*(glue_keys(c) for c in nb.cells if c.cell_type == "code"))
    return [f"glue key {key!r} is used on the page but only a solution cell glues it"
            for key in sorted((used & report.removed_glue) - kept)]


# --- the book's chapters -----------------------------------------------------------------


def chapters() -> list[Path]:
    """The notebook chapters of the table of contents, in book order."""
    found = []
    for docname in build_site.toc_files(ROOT / "_toc.yml"):
        source = ROOT / f"{docname}.md"
        if source.is_file() and build_site.is_notebook_source(source):
            found.append(source)
    return found


def write_notebook(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata.pop("jupytext", None)
    nb.metadata.pop("book_executed", None)
    nbformat.validate(nb)
    with open(path, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh)


def build_notebooks(out: Path, stubs: dict[str, str]) -> dict[str, list[str]]:
    """The student notebooks (from the sources, no outputs); returns the problems found."""
    if out.exists():
        shutil.rmtree(out)
    problems: dict[str, list[str]] = {}
    for source in chapters():
        book_nb = jupytext.read(source)
        student_nb, report = strip_solutions(book_nb, stubs=stubs)
        found = solution_dependencies(report, student_nb)
        if found:
            problems[source.name] = found
        write_notebook(student_nb, out / source.with_suffix(".ipynb").name)
    return problems


def executed_notebooks(timeout: int) -> dict[Path, Path]:
    """chapter source -> its up-to-date executed notebook (executing it when missing)."""
    found = {}
    for source in chapters():
        target, fresh = build_site.executed_notebook(source)
        if not fresh:
            print(f"[student] executing {source.relative_to(ROOT)} (no up-to-date executed "
                  "notebook from the test run)", flush=True)
            build_site.execute(source, target, timeout)
        found[source] = target
    return found


STRICT = True  # Sphinx warnings are errors (--allow-warnings: for a book in the middle of edits)


def jupyter_book(src: Path, out: Path) -> Path:
    """``jupyter-book build`` of ``src`` into ``out`` with warnings as errors."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--builder",
           "html", "--path-output", str(out), "-n", "--keep-going"] + (["-W"] if STRICT else [])
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    warnings = sorted({re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
                       for line in (result.stdout + result.stderr).splitlines()
                       if "WARNING" in line or "ERROR" in line})
    if warnings:
        print(f"[student] {len(warnings)} Sphinx warnings in {src.name}:\n  " +
              "\n  ".join(warnings), flush=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-20000:] + result.stderr[-20000:])
        raise RuntimeError(f"jupyter-book build of {src} failed (exit {result.returncode})")
    return out / "_build" / "html"


def source_tree(dst: Path, replace: dict[Path, Path], title_suffix: str) -> None:
    """A mirror of the repository with chapters replaced (``build_site.mirror``) and a
    configuration that executes nothing."""
    if dst.exists():
        shutil.rmtree(dst)
    build_site.mirror(ROOT, dst, replace)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', '')}{title_suffix}"
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (dst / "_config.yml").unlink()
    (dst / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def build_site_variant(out: Path, executed: dict[Path, Path], stubs: dict[str, str]) -> Path:
    """The student site from the executed notebooks, solutions stripped."""
    stripped_dir = out / "stripped"
    if stripped_dir.exists():
        shutil.rmtree(stripped_dir)
    replace, problems = {}, []
    for source, target in executed.items():
        nb = nbformat.read(target, as_version=4)
        student_nb, report = strip_solutions(nb, stubs=stubs)
        problems += [f"{source.name}: {p}" for p in glue_problems(report, student_nb)]
        path = stripped_dir / source.relative_to(ROOT).with_suffix(".ipynb")
        write_notebook(student_nb, path)
        replace[source] = path
    if problems:
        raise SystemExit("the student site would break:\n  " + "\n  ".join(problems))
    src = out / "site-src"
    source_tree(src, replace, " (student edition)")
    return jupyter_book(src, out / "site")


# --- the solutions manual ----------------------------------------------------------------

NOT_SHOWN = "solutions_manual_hides_this"  # a Sphinx tag that is never set
TARGET_JOIN = "\x00target\x00"  # a (label)= target glued to the heading after it


def hidden(text: str) -> str:
    """``text`` inside an ``only`` block that is never shown (parsed, so its labels and
    numbers count)."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{{only}} {NOT_SHOWN}\n{text.rstrip()}\n{fence}\n"


def manual_markdown(text: str, keep_region: bool = False) -> tuple[str, bool]:
    """Markdown of the manual: headings, their targets, exercises and open solutions kept,
    the rest hidden. ``keep_region`` says whether the text starts inside a
    ``{solution-start}`` region; returns the text and whether it ends inside one."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if "".join(pending).strip():
            out.append(hidden("".join(pending)))
        pending.clear()

    in_region = keep_region
    blocks = split_blocks(text)
    for k, block in enumerate(blocks):
        if block.kind == "solution-start":
            flush()
            in_region = True
            out.append(unfold(block.text))
        elif block.kind == "solution-end":
            in_region = False
            out.append(block.text)
        elif in_region or block.kind in ("exercise", "heading"):
            flush()
            out.append(block.text)
        elif block.kind == "solution":
            flush()
            out.append(unfold(block.text))
        elif block.kind == "text" and k + 1 < len(blocks) and blocks[k + 1].kind == "heading":
            # a (label)= target right before a heading stays with it
            lines = block.text.rstrip("\n").splitlines(keepends=True)
            tail = []
            while lines and (TARGET_RE.match(lines[-1].strip()) or not lines[-1].strip()):
                tail.insert(0, lines.pop())
            pending.extend(lines)
            if tail:
                flush()
                out.append("".join(tail).strip("\n") + "\n" + TARGET_JOIN)
        else:
            pending.append(block.text)
    flush()
    text = "\n".join(s.rstrip("\n") + "\n" for s in out)
    return text.replace(TARGET_JOIN + "\n\n", "").replace(TARGET_JOIN, ""), in_region


def manual_notebook(nb):
    nb = copy.deepcopy(nb)
    in_region = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, in_region = manual_markdown(cell.source, in_region)
        elif not in_region:
            cell.metadata["tags"] = sorted(set(tags(cell)) | {"remove-cell"})
    return nb


MANUAL_NOTE = """
```{note}
This is the solutions manual of the book, for instructors: every exercise of every chapter
followed by its full solution, numbered as in the book. The rest of each chapter is left
out; its section headings remain for orientation, and references to theorems, equations
and figures open them in the student edition of the book.
```
"""


def add_manual_note(nb) -> None:
    """Put :data:`MANUAL_NOTE` under the title of the manual's first page."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines(keepends=True)
            for k, line in enumerate(lines):
                if HEADING_RE.match(line):
                    lines.insert(k + 1, MANUAL_NOTE)
                    cell.source = "".join(lines)
                    return
    raise ValueError("the manual's first page has no title")


def build_manual(out: Path, executed: dict[Path, Path], student_html: Path) -> Path:
    """The solutions manual (see the module docstring)."""
    pages = out / "manual-pages"
    if pages.exists():
        shutil.rmtree(pages)
    replace = {}
    root = ROOT / f"{build_site.toc_files(ROOT / '_toc.yml')[0]}.md"
    for source, target in executed.items():
        path = pages / source.relative_to(ROOT).with_suffix(".ipynb")
        nb = manual_notebook(nbformat.read(target, as_version=4))
        if source == root:
            add_manual_note(nb)
        write_notebook(nb, path)
        replace[source] = path
    keep_whole = {"bibliography", "glossary"}
    for docname in build_site.toc_files(ROOT / "_toc.yml"):
        source = ROOT / f"{docname}.md"
        if source in replace or not source.is_file() or source.stem in keep_whole:
            continue
        text = source.read_text(encoding="utf-8")
        front = ""
        if text.startswith("---\n"):
            end = text.index("\n---\n", 4) + 5
            front, text = text[:end], text[end:]
        path = pages / source.relative_to(ROOT)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(front + manual_markdown(text)[0], encoding="utf-8")
        replace[source] = path
    src = out / "solutions-src"
    if src.exists():
        shutil.rmtree(src)
    # mirror() writes replacements as .ipynb; the plain pages stay .md.
    md_pages = {s: p for s, p in replace.items() if p.suffix == ".md"}
    build_site.mirror(ROOT, src, {s: p for s, p in replace.items() if p.suffix == ".ipynb"})
    for s, p in md_pages.items():
        link = src / s.relative_to(ROOT)
        link.unlink()
        shutil.copy2(p, link)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', '')}: solutions manual"
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (src / "_config.yml").unlink()
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    manual_html = jupyter_book(src, out / "solutions")
    link_to_site(manual_html, student_html)
    return manual_html


ANCHOR_RE = re.compile(r'\bid="([^"]+)"')
HREF_RE = re.compile(r'(<a class="reference internal" href=")([^"#]*)#([^"]+)(")')


def link_to_site(manual_html: Path, site_html: Path) -> int:
    """Point the manual's links to anchors it does not show (theorems, equations, figures
    of the chapters) to the same anchor in the student site. Returns how many changed."""
    ids = {p: set(ANCHOR_RE.findall(p.read_text(encoding="utf-8")))
           for p in manual_html.rglob("*.html")}
    changed = 0
    for page in ids:
        text = page.read_text(encoding="utf-8")

        def fix(m: re.Match) -> str:
            nonlocal changed
            target = (page.parent / m[2]).resolve() if m[2] else page
            if target in ids and m[3] in ids[target]:
                return m[0]
            rel_page = target.relative_to(manual_html)
            site_page = site_html / rel_page
            href = os.path.relpath(site_page, page.parent)
            changed += 1
            return f"{m[1]}{html.escape(href)}#{m[3]}{m[4]}"

        new = HREF_RE.sub(fix, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    return changed


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--notebooks-only", action="store_true",
                        help="only the student notebooks (seconds; no site, no manual)")
    parser.add_argument("--timeout", type=int, default=180,
                        help="per-cell timeout when a chapter must be executed")
    parser.add_argument("--allow-warnings", action="store_true",
                        help="Sphinx warnings are not errors (for a book in the middle of edits)")
    args = parser.parse_args()
    global STRICT
    STRICT = not args.allow_warnings
    out = args.out.resolve()
    start = time.perf_counter()
    stubs = self_check_stubs()
    problems = build_notebooks(out / "notebooks", stubs)
    if problems:
        raise SystemExit("student notebooks that cannot run without a solution:\n" + "\n".join(
            f"  {name}: {p}" for name, ps in problems.items() for p in ps))
    print(f"[student] notebooks: {out / 'notebooks'} ({time.perf_counter() - start:.1f} s)",
          flush=True)
    if args.notebooks_only:
        return
    executed = executed_notebooks(args.timeout)
    t = time.perf_counter()
    site = build_site_variant(out, executed, stubs)
    print(f"[student] site: {site / 'index.html'} ({time.perf_counter() - t:.1f} s)", flush=True)
    t = time.perf_counter()
    manual = build_manual(out, executed, site)
    print(f"[student] solutions manual: {manual / 'index.html'} "
          f"({time.perf_counter() - t:.1f} s)", flush=True)
    print(f"[student] student edition built in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
