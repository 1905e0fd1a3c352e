"""The PDF build's helpers (tools/build_pdf.py), on small inputs; seconds.

The PDF itself is built and checked by ``make pdf-check`` (CI runs it after ``make test``):
it needs TeX Live and the executed notebooks, and takes minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_pdf  # noqa: E402

TEX = r"""
\section{Exercises}
\label{\detokenize{book/entropy:exercises}}\phantomsection \label{exercise:ex-entropy-1}

\begin{sphinxadmonition}{note}{Exercise 3.8.1 (Equality in Hadamard's bound)}
text \sphinxincludegraphics[width=400\sphinxpxdimen]{{abc123}.png}
\end{sphinxadmonition}
\hyperref[\detokenize{book/entropy:ex-entropy-1}]{Exercise \ref{\detokenize{book/entropy:ex-entropy-1}}}
\hyperref[\detokenize{book/entropy:thm-x}]{Theorem \ref{\detokenize{book/entropy:thm-x}}}
\sphinxincludegraphics{{def456}.png}
"""


def test_exercise_references_point_to_the_exercise():
    tex, fixed = build_pdf.fix_exercise_references(TEX)
    assert fixed == 1
    assert r"\hyperref[exercise:ex-entropy-1]{Exercise 3.8.1}" in tex
    # other references are left alone
    assert r"\hyperref[\detokenize{book/entropy:thm-x}]{Theorem \ref{\detokenize{book/entropy:thm-x}}}" in tex


def test_included_images():
    assert build_pdf.included_images(TEX) == ["abc123.png", "def456.png"]


def test_latex_errors_and_pages(tmp_path):
    (tmp_path / "book.log").write_text(
        "This is XeTeX\n! LaTeX Error: File `bbm.sty' not found.\n"
        "LaTeX Warning: Reference `book/x:ex-1' on page 3 undefined on input line 9.\n"
        "Missing character: There is no ᵀ (U+1D40) in font [FreeMono.otf]/OT:script=latn;\n"
        "Output written on book.pdf (177 pages).\n", encoding="utf-8")
    errors = build_pdf.latex_errors(tmp_path)
    assert len(errors) == 2 and "bbm.sty" in errors[0] and "undefined" in errors[1]
    assert build_pdf.log_pages(tmp_path) == 177
    assert build_pdf.MISSING_CHAR_RE.findall((tmp_path / "book.log").read_text()) == ["ᵀ (U+1D40)"]


def test_notebook_figures_counts_what_the_pages_show():
    png = {"image/png": "iVBOR", "text/plain": "<Figure>"}
    glued = {"application/papermill.record/image/png": "iVBOR",
             "application/papermill.record/text/plain": "<Figure>"}
    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [
            {"output_type": "display_data", "data": png, "metadata": {}}]},
        {"cell_type": "code", "metadata": {"tags": ["remove-output"]}, "outputs": [
            {"output_type": "display_data", "data": png, "metadata": {}}]},
        {"cell_type": "code", "metadata": {"tags": ["remove-cell"]}, "outputs": [
            {"output_type": "display_data", "data": glued,
             "metadata": {"scrapbook": {"name": "fig-a", "mime_prefix": "x"}}},
            {"output_type": "display_data", "data": glued,
             "metadata": {"scrapbook": {"name": "fig-unused", "mime_prefix": "x"}}}]},
        {"cell_type": "markdown", "metadata": {},
         "source": "```{glue:figure} fig-a\n:name: f\n\nCaption\n```\n\n![logo](logo.png)"},
    ]}
    # the shown output, the glued figure where it is used, the markdown image
    assert build_pdf.notebook_figures(nb) == 3


def test_pdf_config_uses_xelatex_and_the_book_macros():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    out = build_pdf.pdf_config(config)
    assert out["latex"]["latex_engine"] == "xelatex"
    assert out["execute"]["execute_notebooks"] == "off"
    sphinx_config = out["sphinx"]["config"]
    macros = (config.get("sphinx", {}).get("config", {}).get("mathjax3_config", {})
              .get("tex", {}).get("macros", {}))
    for name in macros:
        assert f"\\providecommand{{\\{name}}}" in sphinx_config["latex_elements"]["preamble"]
    assert sphinx_config["latex_additional_files"] == ["bbm.sty"]
    # the extension that numbers by chapter, and the book's own extensions, are loaded
    assert Path(out["sphinx"]["local_extensions"]["book_pdf"], "book_pdf.py").is_file()
    assert set(config["sphinx"].get("local_extensions") or {}) <= set(out["sphinx"]["local_extensions"])
    assert build_pdf.BBM.is_file()
    # the book's own configuration is not changed
    assert config.get("execute", {}).get("execute_notebooks") != "off"
