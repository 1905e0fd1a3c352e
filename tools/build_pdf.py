"""Build the whole book as one PDF with Jupyter Book's LaTeX builder, and check it.

``make pdf`` runs this script. Like ``tools/build_site.py`` it builds from the executed
notebooks that ``make test`` saves (``_build/executed/book/<chapter>.ipynb``; a chapter
without an up-to-date one is executed first), so the PDF shows the same outputs as the site
and no chapter runs twice. Steps:

1. a source tree ``_build/pdf-src`` mirrors the repository, chapters replaced by their
   executed notebooks, with a configuration that executes nothing, compiles with XeLaTeX
   (the pages hold Unicode: Greek letters, arrows, check marks) and defines the MathJax
   macros of ``_config.yml`` for LaTeX too;
2. ``jupyter-book build --builder pdflatex -W -n --keep-going`` writes
   ``_build/pdf/_build/latex/book.tex`` and runs latexmk on it;
3. the PDF is copied to ``_build/book.pdf``.

With ``--check`` it then verifies the PDF: it exists and has at least ``--min-pages``
pages; the LaTeX log reports no error and no missing file (``File `...' not found``); every
image the LaTeX source includes exists, and their number equals the number of figures of
the executed notebooks (image outputs of cells that are shown, glued figures used on the
pages, and image files the pages include), and ``pdfimages`` finds at least as many images
in the PDF. It prints one line with the page count, the figure counts and the build time.

Needs TeX Live (``make tex`` installs Debian's packages when run as root) and, for
``--check``, ``pdfinfo``/``pdfimages`` (poppler-utils, installed with it).

Usage: ``python tools/build_pdf.py [--check] [--min-pages N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_site  # noqa: E402
import student  # noqa: E402  (chapters(), executed_notebooks())

BUILD = ROOT / "_build"
SRC = BUILD / "pdf-src"
OUT = BUILD / "pdf"
PDF = BUILD / "book.pdf"
BBM = Path(__file__).resolve().parent / "latex" / "bbm.sty"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "application/pdf")
INCLUDE_RE = re.compile(r"\\sphinxincludegraphics(?:\[[^\]]*\])?\{\{?([^}]+)\}([^}]*)\}")
NOT_FOUND_RE = re.compile(r"^.*(?:File `[^']+' not found|! LaTeX Error|! Undefined control"
                          r" sequence|Missing \$ inserted|! Package \w+ Error|Reference `[^']+'"
                          r" on page \d+ undefined|Citation `[^']+' on page \d+ undefined).*$",
                          re.MULTILINE)
MISSING_CHAR_RE = re.compile(r"^Missing character: There is no (.+?) in font", re.MULTILINE)
PAGES_RE = re.compile(r"Output written on \S+ \((\d+) pages?")
GLUE_FIGURE_RE = re.compile(r"^[ \t]*(?:`{3,}|:{3,})\{glue(?::figure)?\}[ \t]+(\S+)", re.MULTILINE)
GLUE_ROLE_RE = re.compile(r"\{glue\}`([^`]+)`")
MD_IMAGE_RE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)[^)]*\)|^[ \t]*(?:`{3,}|:{3,})\{(?:figure|image)\}"
                         r"[ \t]+(\S+)", re.MULTILINE)
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell"}


def latex_macros(config: dict) -> str:
    """``\\providecommand`` lines for the MathJax macros of the configuration."""
    macros = (config.get("sphinx", {}).get("config", {}).get("mathjax3_config", {})
              .get("tex", {}).get("macros", {}))
    lines = []
    for name, value in macros.items():
        if isinstance(value, list):
            lines.append(f"\\providecommand{{\\{name}}}[{value[1]}]{{{value[0]}}}")
        else:
            lines.append(f"\\providecommand{{\\{name}}}{{{value}}}")
    return "\n".join(lines)


# Sphinx's XeLaTeX fonts (FreeFont), but DejaVu Sans Mono for code and outputs: FreeMono
# lacks glyphs the outputs print (the self-checks' check marks, superscript T, ellipses).
FONTS = r"""
\setmainfont{FreeSerif}[Extension=.otf, UprightFont=*, ItalicFont=*Italic,
  BoldFont=*Bold, BoldItalicFont=*BoldItalic]
\setsansfont{FreeSans}[Extension=.otf, UprightFont=*, ItalicFont=*Oblique,
  BoldFont=*Bold, BoldItalicFont=*BoldOblique]
\setmonofont{DejaVu Sans Mono}[Scale=MatchLowercase]
"""


def pdf_config(config: dict) -> dict:
    config = json.loads(json.dumps(config))  # a deep copy
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    latex = config.setdefault("latex", {})
    latex["latex_engine"] = "xelatex"
    latex.setdefault("latex_documents", {})["targetname"] = "book.tex"
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    elements = dict(sphinx_config.get("latex_elements", {}))
    elements["preamble"] = (elements.get("preamble", "") + "\n" + latex_macros(config)).strip()
    elements.setdefault("fontpkg", FONTS)
    sphinx_config["latex_elements"] = elements
    # makeindex instead of xindy (Debian's xindy is one more package); the stand-in bbm.sty
    sphinx_config["latex_use_xindy"] = False
    sphinx_config["latex_additional_files"] = [BBM.name]
    # chapter-prefixed numbers as on the site (tools/latex/book_pdf.py)
    sphinx = config["sphinx"]
    sphinx["local_extensions"] = {**(sphinx.get("local_extensions") or {}),
                                  "book_pdf": str(BBM.parent)}
    return config


EXERCISE_RE = re.compile(r"\\label\{exercise:(?P<label>[^}]+)\}\s*\\begin\{sphinxadmonition\}"
                         r"\{[^}]*\}\{Exercise (?P<number>[^\s}]+)")


def fix_exercise_references(tex: str) -> tuple[str, int]:
    """Resolve the references to exercises (sphinx-exercise 1.2 labels an exercise
    ``exercise:<label>`` in LaTeX, while ``{numref}`` and ``{ref}`` point to
    ``<document>:<label>``, which LaTeX reports as undefined, printing "??"): point them to
    the exercise's label and write its number. Returns the text and how many were fixed."""
    numbers = {m["label"]: m["number"].rstrip(".") for m in EXERCISE_RE.finditer(tex)}
    count = 0

    def target(m: re.Match) -> str:
        nonlocal count
        if m["label"] not in numbers:
            return m[0]
        count += 1
        return f"\\hyperref[exercise:{m['label']}]"

    def number(m: re.Match) -> str:
        return numbers.get(m["label"], m[0]) if m["label"] in numbers else m[0]

    tex = re.sub(r"\\hyperref\[\\detokenize\{[^:{}]+:(?P<label>[^{}]+)\}\]", target, tex)
    tex = re.sub(r"\\ref\{\\detokenize\{[^:{}]+:(?P<label>[^{}]+)\}\}", number, tex)
    return tex, count


def build(timeout: int = 180, strict: bool = True) -> tuple[Path, float]:
    start = time.perf_counter()
    executed = student.executed_notebooks(timeout)
    if SRC.exists():
        shutil.rmtree(SRC)
    build_site.mirror(ROOT, SRC, executed)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    (SRC / "_config.yml").unlink()
    (SRC / "_config.yml").write_text(yaml.safe_dump(pdf_config(config), sort_keys=False),
                                     encoding="utf-8")
    if OUT.exists():
        shutil.rmtree(OUT)
    shutil.copy2(BBM, SRC / BBM.name)
    # Sphinx writes the LaTeX sources (warnings are errors, as for the site); the exercise
    # references are fixed; then latexmk (Sphinx's Makefile) compiles, as `--builder
    # pdflatex` would.
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(SRC), "--builder",
           "latex", "--path-output", str(OUT), "-n", "--keep-going"] + (["-W"] if strict else [])
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "MAKEFLAGS", "MAKELEVEL")}
    log = BUILD / "pdf-build.log"
    latex_dir = OUT / "_build" / "latex"
    with open(log, "w", encoding="utf-8") as fh:
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        if result.returncode == 0:
            tex_path = latex_dir / "book.tex"
            tex, fixed = fix_exercise_references(tex_path.read_text(encoding="utf-8"))
            tex_path.write_text(tex, encoding="utf-8")
            fh.write(f"[pdf] {fixed} references to exercises fixed\n")
            fh.flush()
            result = subprocess.run(["make", "all-pdf"], cwd=latex_dir, env=env, stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    pdf = latex_dir / "book.pdf"
    if result.returncode != 0 or not pdf.is_file():
        text = log.read_text(encoding="utf-8", errors="replace")
        sys.stderr.write(text[-15000:])
        errors = latex_errors(latex_dir) if (latex_dir / "book.log").is_file() else []
        if errors:
            sys.stderr.write("\nLaTeX errors:\n" + "\n".join(errors[:40]) + "\n")
        raise SystemExit(f"the PDF build failed (exit {result.returncode}); full log: {log}")
    shutil.copy2(pdf, PDF)
    return PDF, time.perf_counter() - start


# --- checks ------------------------------------------------------------------------------


def latex_errors(latex_dir: Path) -> list[str]:
    """Error lines and missing files in the LaTeX log."""
    log = latex_dir / "book.log"
    if not log.is_file():
        return [f"no LaTeX log {log}"]
    return [m.group(0).strip() for m in NOT_FOUND_RE.finditer(
        log.read_text(encoding="utf-8", errors="replace"))]


def log_pages(latex_dir: Path) -> int | None:
    m = PAGES_RE.findall((latex_dir / "book.log").read_text(encoding="utf-8", errors="replace"))
    return int(m[-1]) if m else None


def included_images(tex: str) -> list[str]:
    """File names of the images that the LaTeX source includes, in order."""
    return [name + ext for name, ext in INCLUDE_RE.findall(tex)]


def notebook_figures(nb: dict) -> int:
    """Figures a page shows from an executed notebook: image outputs of cells whose output
    is shown (glue outputs are counted where they are used), glued figures used in the
    markdown, and image files the markdown includes."""
    count = 0
    glued_images = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        hidden = bool(HIDDEN_OUTPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            # glue stores its data under a prefix: application/papermill.record/image/png
            if not any(key.endswith(m) for key in data for m in IMAGE_MIMES):
                continue
            key = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                glued_images.add(key)
            elif not hidden and out.get("output_type") in ("display_data", "execute_result"):
                count += 1
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            used = GLUE_FIGURE_RE.findall(src) + GLUE_ROLE_RE.findall(src)
            count += sum(1 for key in used if key in glued_images)
            count += len(MD_IMAGE_RE.findall(src))
    return count


def markdown_figures(text: str) -> int:
    return len(MD_IMAGE_RE.findall(text))


def expected_figures() -> int:
    total = 0
    for docname in build_site.toc_files(ROOT / "_toc.yml"):
        source = ROOT / f"{docname}.md"
        if not source.is_file():
            continue
        if build_site.is_notebook_source(source):
            target, _ = build_site.executed_notebook(source)
            total += notebook_figures(json.loads(target.read_text(encoding="utf-8")))
        else:
            total += markdown_figures(source.read_text(encoding="utf-8"))
    return total


def pdf_pages_and_images(pdf: Path) -> tuple[int, int]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.MULTILINE)[1])
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True,
                            check=True)
    rows = [l for l in images.stdout.splitlines()[2:] if l.split()[2:3] == ["image"]]
    return pages, len(rows)


def check(pdf: Path, min_pages: int) -> str:
    latex_dir = OUT / "_build" / "latex"
    problems = latex_errors(latex_dir)
    tex = (latex_dir / "book.tex").read_text(encoding="utf-8")
    included = included_images(tex)
    missing = [name for name in included if not (latex_dir / name).is_file()]
    problems += [f"image {name} is included but not in {latex_dir}" for name in missing]
    expected = expected_figures()
    if len(included) != expected:
        problems.append(f"the LaTeX source includes {len(included)} images, the executed "
                        f"notebooks and pages hold {expected} figures")
    pages, images = pdf_pages_and_images(pdf)
    if log_pages(latex_dir) != pages:
        problems.append(f"pdfinfo counts {pages} pages, the LaTeX log {log_pages(latex_dir)}")
    if pages < min_pages:
        problems.append(f"the PDF has {pages} pages, fewer than {min_pages}")
    if images < len(set(included)):
        problems.append(f"the PDF holds {images} images, the LaTeX source includes "
                        f"{len(set(included))} different ones")
    if problems:
        raise SystemExit("PDF check failed:\n  " + "\n  ".join(problems))
    log = (latex_dir / "book.log").read_text(encoding="utf-8", errors="replace")
    missing_chars = sorted(set(MISSING_CHAR_RE.findall(log)))
    note = (f"; glyphs missing from the fonts (shown blank): {' '.join(missing_chars)}"
            if missing_chars else "")
    return (f"{pages} pages, {len(included)} figures included (expected {expected}), "
            f"{images} images in the PDF{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the PDF after the build")
    parser.add_argument("--no-build", action="store_true", help="only check the last build")
    parser.add_argument("--min-pages", type=int, default=150)
    parser.add_argument("--allow-warnings", action="store_true",
                        help="Sphinx warnings are not errors (for a book in the middle of edits)")
    parser.add_argument("--timeout", type=int, default=180,
                        help="per-cell timeout when a chapter must be executed")
    args = parser.parse_args()
    if args.no_build:
        pdf, seconds = PDF, float("nan")
    else:
        pdf, seconds = build(args.timeout, strict=not args.allow_warnings)
        print(f"[pdf] {pdf} built in {seconds:.0f} s", flush=True)
    if args.check or args.no_build:
        print(f"[pdf] checked: {check(pdf, args.min_pages)}", flush=True)


if __name__ == "__main__":
    main()
