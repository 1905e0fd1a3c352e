"""Sphinx extension of the PDF build only (tools/build_pdf.py adds it): chapter-prefixed
numbers in the PDF as on the site.

sphinx-jupyterbook-latex turns the parts of the table of contents into LaTeX parts and, at
``builder-inited``, sets ``numfig_secnum_depth = 2``. Sphinx uses that depth twice: for the
numbers it writes itself (theorems, exercises: "Theorem 3.5.1", numbered by section) and,
one less because of the parts, for the LaTeX counters of figures and equations (reset per
chapter: "Figure 6.1", "(3.6)"). So the depth is 1 while the numbers are assigned (as on the
site: "Theorem 3.2") and back to 2 when the LaTeX is written (counters reset per chapter).
"""

from __future__ import annotations

from sphinx.application import Sphinx


def assign_by_chapter(app: Sphinx) -> None:
    if app.builder.format == "latex":
        app.env.book_pdf_depth = app.config.numfig_secnum_depth
        app.config.numfig_secnum_depth = 1


def write_by_chapter(app: Sphinx, env) -> list[str]:
    # after the toctree collector (priority 500) has assigned the numbers
    if app.builder.format == "latex" and hasattr(env, "book_pdf_depth"):
        app.config.numfig_secnum_depth = env.book_pdf_depth
    return []


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", assign_by_chapter, priority=900)
    app.connect("env-get-updated", write_by_chapter, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
