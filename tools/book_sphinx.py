"""Sphinx extension of the book (loaded through ``sphinx.local_extensions`` in _config.yml).

1. **Offline assets.** When ``tools/web_assets.py`` has installed MathJax and the Jupyter
   widget manager (``make setup`` does), their files are copied into the built site's
   ``_static`` folder and the pages load them from there instead of from a CDN, so equations
   and saved widgets render without internet. The folder is ``$BOOK_WEB_ASSETS`` or
   ``<venv>/share/book-web``; without it the pages fall back to the CDN (and the browser test,
   which forbids any request to a non-local host, fails). Two fixes keep the browser console
   clean: a shim maps the widget manager's MathJax 2 call onto MathJax 3
   (``static/book-mathjax-shim.js``), and repeated script tags (sphinx-thebe 0.3 adds its
   inline config twice: a ``const`` redeclared, a JavaScript error on every page) are dropped.
   The default colour mode is light (pydata-sphinx-theme logs an error without one).

2. **Exercise lists generated from the chapters.** The directive

   ````
   ```{exercise-list}
   :chapters: book/entropy book/smoothness
   ```
   ````

   scans the chapters of the table of contents (or only those named) for ``{exercise}``
   directives and writes a table of them per chapter, in book order: a ``{numref}`` link to
   the exercise's ``:label:``, its title as the summary, and its tags from ``:class:``
   (difficulty ``ex-d1``..``ex-d3``, type ``ex-concept`` | ``ex-derivation`` | ``ex-coding``
   | ``ex-open``, time ``ex-t<minutes>``; "untagged" where one is missing). For several
   chapters a table of counts by type comes first. The index cannot go stale: an exercise
   added to a chapter appears on the next build, and a removed one disappears. An
   ``{exercise}`` without a ``:label:``, or without a title and a short first sentence to
   stand in for it, is reported as a warning (an error under ``-W``).

3. **Repository buttons from one setting.** ``repository.url`` in ``_config.yml`` is the
   only place the repository's address is set. While it is empty, the repository,
   issues and edit buttons and the launch (Binder) button are hidden, and chapters still
   offer their notebook as an ``.ipynb`` download (the theme only writes that copy when a
   launch button is shown, so the extension writes it). Once it is set, the repository
   button and the Binder button appear.

4. **Author-year bibliography.** The chapters cite author-year ("Bengio et al. (1994)",
   ``bibtex_reference_style: book_author_year``), and the bibliography's labels say the
   same ("[Bengio et al., 1994]", ``bibtex_default_style: book``), sorted by author, year
   and title. Two works with the same label get "2020a", "2020b", in the labels and in the
   citations alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MATHJAX_FILE = "mathjax/tex-chtml-full.js"
WIDGETS_FILE = "jupyter-widgets/embed.js"

# An {exercise} (or {exercise-start}) fence, then its option lines.
EXERCISE_RE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{exercise(?:-start)?\}[ \t]*(?P<title>[^\n]*)\n"
    r"(?P<opts>(?:[ \t]*:[\w-]+:[^\n]*\n)*)(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# Markup that a one-line teaser cut out of an exercise could break.
UNSAFE_TEASER = re.compile(r"[\[\]<>]")
LABEL_RE = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.MULTILINE)


def web_assets_dir() -> Path:
    return Path(os.environ.get("BOOK_WEB_ASSETS", Path(sys.prefix) / "share" / "book-web"))


def use_local_assets(app: Sphinx, config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    # pydata-sphinx-theme logs a console error on a reader's first visit when no default
    # colour mode is set; light keeps the figures (white backgrounds) readable.
    config.html_context = {"default_mode": "light", **config.html_context}
    assets = web_assets_dir()
    if not ((assets / MATHJAX_FILE).is_file() and (assets / WIDGETS_FILE).is_file()):
        logger.info(
            f"[book] no offline web assets in {assets}; pages will load MathJax and the "
            "widget manager from a CDN (run `python tools/web_assets.py` to install them)"
        )
        return
    config.html_static_path = [*config.html_static_path, str(assets)]
    config.mathjax_path = MATHJAX_FILE
    # The standalone build of the widget manager: it bundles the standard widget models and
    # renders every saved widget on the page when it loads; no require.js needed.
    config.nb_ipywidgets_js = {WIDGETS_FILE: {}}


REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button",
                      "use_source_button")


def repository_buttons(app: Sphinx, config) -> None:
    """Show the repository and launch buttons only when ``repository.url`` is set."""
    opts = dict(config.html_theme_options or {})
    app.config.book_repository_url = (opts.get("repository_url") or "").strip()
    if app.config.book_repository_url:
        opts["use_repository_button"] = True
    else:
        opts.pop("repository_url", None)
        for key in REPOSITORY_BUTTONS:
            opts[key] = False
        opts["launch_buttons"] = {}
    config.html_theme_options = opts


def notebook_download(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """The executed notebook of a MyST-markdown chapter, offered as an .ipynb download when
    no launch button is configured (the theme writes it only for its launch buttons)."""
    if app.config.book_repository_url or doctree is None:
        return
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    if not str(context.get("sourcename", "")).endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop repeated script tags (sphinx-thebe 0.3 adds its inline config twice, and the
    second ``const THEBE_JS_URL`` is a JavaScript error on every page)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = (str(getattr(js, "filename", js) or ""),
               json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def chapter_docnames(env) -> list[str]:
    """Docnames of the table of contents, in reading order."""
    site_map = getattr(env, "external_site_map", None)
    if site_map is None:
        return sorted(env.found_docs)
    order: list[str] = []

    def walk(docname: str) -> None:
        if docname in order or docname not in site_map:
            return
        order.append(docname)
        for subtree in site_map[docname].subtrees:
            for item in subtree.items:
                if isinstance(item, str):
                    walk(str(item))

    walk(site_map.root.docname)
    return order


def markdown_text(path: Path) -> str:
    """The text in which exercises can appear: a MyST file, or a notebook's markdown cells."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        parts = []
        for cell in cells:
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                parts.append("".join(src) if isinstance(src, list) else src)
        text = "\n\n".join(parts)
    return text + "\n"


def teaser(body: str, limit: int = 100) -> str:
    """The start of an exercise's first sentence, cut at a word boundary outside maths and
    code; '' when it holds markup that a cut could break."""
    text = " ".join(body.split())
    for role in ("{glue", "{cite", "{foot"):  # glued values, citations and footnotes
        if role in text:                      # belong to the chapter's own page
            text = text[: text.index(role)].rstrip() + "…"
    sentence = re.split(r"(?<=[.?!])\s", text, maxsplit=1)[0]
    if not sentence or UNSAFE_TEASER.search(sentence):
        return ""

    def balanced(s: str) -> bool:
        return s.count("$") % 2 == 0 and s.count("`") % 2 == 0

    if len(sentence) <= limit and balanced(sentence) and not sentence.endswith(" …"):
        return sentence.rstrip(":")
    sentence = sentence.removesuffix("…").rstrip()
    for cut in range(min(limit, len(sentence) - 1), 20, -1):
        if sentence[cut] == " " and balanced(sentence[:cut]):
            return sentence[:cut].rstrip(",;:") + " …"
    return ""


# Exercise tags (the exercise's `:class:`): difficulty, type and time in minutes.
DIFFICULTY = {"ex-d1": "1", "ex-d2": "2", "ex-d3": "3"}
KINDS = {"ex-concept": "concept", "ex-derivation": "derivation", "ex-coding": "coding",
         "ex-open": "open-ended"}
TIME_RE = re.compile(r"^ex-t(\d+)$")
CLASS_RE = re.compile(r"^[ \t]*:class:[ \t]*([^\n]*)", re.MULTILINE)
UNTAGGED = "untagged"


@dataclass
class ExerciseInfo:
    label: str | None
    title: str                       # its title, or its first sentence when short plain text
    difficulty: str | None = None    # "1" | "2" | "3"
    kind: str | None = None          # "concept" | "derivation" | "coding" | "open-ended"
    minutes: int | None = None

    @property
    def tagged(self) -> bool:
        return None not in (self.difficulty, self.kind, self.minutes)


def parse_tags(classes: str) -> dict:
    tags: dict = {}
    for name in classes.split():
        if name in DIFFICULTY:
            tags["difficulty"] = DIFFICULTY[name]
        elif name in KINDS:
            tags["kind"] = KINDS[name]
        elif TIME_RE.match(name):
            tags["minutes"] = int(TIME_RE.match(name).group(1))
    return tags


def find_exercise_infos(path: Path) -> list[ExerciseInfo]:
    """Every exercise in the file, in order, with its label, title and tags."""
    found = []
    for m in EXERCISE_RE.finditer(markdown_text(path)):
        opts = m.group("opts")
        label = LABEL_RE.search(opts)
        classes = CLASS_RE.search(opts)
        found.append(ExerciseInfo(
            label=label.group(1) if label else None,
            title=m.group("title").strip() or teaser(m.group("body")),
            **parse_tags(classes.group(1) if classes else ""),
        ))
    return found


def find_exercises(path: Path) -> list[tuple[str | None, str]]:
    """(label, title) of every exercise in the file, in order; without a title, the
    exercise's first sentence stands in when it is short plain text."""
    return [(e.label, e.title) for e in find_exercise_infos(path)]


def _list_table(header: list[str], rows: list[list[str]], classes: str) -> list[str]:
    lines = ["````{list-table}", ":header-rows: 1", f":class: {classes}", ""]
    for row in [header, *rows]:
        lines.append(f"* - {row[0]}")
        lines += [f"  - {cell}" for cell in row[1:]]
    return lines + ["````", ""]


class ExerciseList(SphinxDirective):
    """A table of the exercises of the chapters (all of the table of contents, or those named
    in ``:chapters:``): number and link, summary, difficulty, type and time; for several
    chapters also the number of exercises of each type per chapter."""

    has_content = False
    option_spec = {"chapters": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        env = self.env
        wanted = self.options.get("chapters", "").split()
        docnames = [d for d in chapter_docnames(env) if d != env.docname]
        if wanted:
            missing = [w for w in wanted if w not in docnames]
            if missing:
                logger.warning(f"[book] exercise-list: no chapter {missing} in the table of contents",
                               location=(env.docname, self.lineno))
            docnames = [d for d in wanted if d in docnames]
        chapters: list[tuple[str, list[ExerciseInfo]]] = []
        for docname in docnames:
            path = Path(env.doc2path(docname))
            if not path.is_file():
                continue
            env.note_dependency(str(path))
            listed = []
            for ex in find_exercise_infos(path):
                if ex.label is None:
                    logger.warning(f"[book] an exercise in {docname} has no :label:; it cannot be listed",
                                   location=(env.docname, self.lineno))
                elif not ex.title:
                    logger.warning(f"[book] exercise {ex.label} in {docname} has no title: give it "
                                   "one (its one-line summary in the exercise index)",
                                   location=(env.docname, self.lineno))
                    listed.append(ex)
                else:
                    listed.append(ex)
            if listed:
                chapters.append((docname, listed))

        lines: list[str] = []
        several = not wanted or len(wanted) > 1
        if several and chapters:
            kinds = list(KINDS.values())
            untagged = any(not ex.tagged for _, exs in chapters for ex in exs)
            header = ["Chapter", *kinds, *([UNTAGGED] if untagged else []), "all", "time (min)"]
            rows = []
            for docname, exs in chapters:
                counts = [sum(ex.kind == k for ex in exs) for k in kinds]
                row = [f"{{doc}}`/{docname}`", *map(str, counts)]
                if untagged:
                    row.append(str(sum(not ex.tagged for ex in exs)))
                row += [str(len(exs)), str(sum(ex.minutes or 0 for ex in exs))]
                rows.append(row)
            total = [sum(ex.kind == k for _, exs in chapters for ex in exs) for k in kinds]
            all_exs = [ex for _, exs in chapters for ex in exs]
            rows.append(["**all chapters**", *map(str, total),
                         *([str(sum(not ex.tagged for ex in all_exs))] if untagged else []),
                         str(len(all_exs)), str(sum(ex.minutes or 0 for ex in all_exs))])
            lines += _list_table(header, rows, "exercise-counts")
        for docname, exs in chapters:
            if several:
                summary = f"**{{doc}}`/{docname}`**: {len(exs)} exercises"
                if all(ex.minutes is not None for ex in exs):
                    summary += f", about {sum(ex.minutes for ex in exs)} minutes"
                lines += [summary, ""]
            rows = []
            for ex in exs:
                rows.append([
                    f"{{numref}}`Exercise %s <{ex.label}>`",
                    ex.title or UNTAGGED,
                    ex.difficulty or UNTAGGED,
                    ex.kind or UNTAGGED,
                    f"{ex.minutes} min" if ex.minutes is not None else UNTAGGED,
                ])
            lines += _list_table(["Exercise", "Summary", "Difficulty", "Type", "Time"], rows,
                                 "exercise-list-table")
        if not lines:
            lines = ["*(No exercises yet.)*"]
        container = nodes.container(classes=["exercise-list"])
        self.state.nested_parse(StringList(lines, source=env.docname), self.content_offset, container)
        return [container]


# --- author-year labels for the bibliography ---------------------------------------------

def _author_year_parts(entry) -> tuple[str, str]:
    """("Bengio et al.", "1994"): the author part exactly as the author-year citations
    write it (sphinxcontrib-bibtex's person style), and the year."""
    from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

    style = AuthorYearReferenceStyle()
    authors = style.person.author_or_editor_or_title(full=False)
    text = authors.format_data({"entry": entry, "style": style}).render_as("text")
    return text, entry.fields.get("year", "n.d.")


def _label_year(label: str) -> str:
    return label.rsplit(", ", 1)[-1]


def register_bibliography_styles() -> None:
    """The pybtex formatting style ``book`` (labels "Bengio et al., 1994", sorted by author,
    year and title) and the citation style ``book_author_year``, whose years are those of
    the labels, so that "Ribeiro et al. (2020a)" in the text is "[Ribeiro et al., 2020a]"
    in the bibliography."""
    import string
    from dataclasses import dataclass, field

    import pybtex.plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.template import join, node
    from sphinxcontrib.bibtex.plugin import register_plugin as register_bibtex_plugin
    from sphinxcontrib.bibtex.style.referencing import BracketStyle, author_year, basic_author_year
    from sphinxcontrib.bibtex.style.template import post_text, pre_text, reference
    from sphinxcontrib.bibtex.style.template import join2

    class AuthorYearLabelStyle(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            entries = list(sorted_entries)
            parts = [_author_year_parts(e) for e in entries]
            count: dict[tuple[str, str], int] = {}
            for p in parts:
                count[p] = count.get(p, 0) + 1
            seen: dict[tuple[str, str], int] = {}
            for authors, year in parts:
                suffix = ""
                if count[(authors, year)] > 1:
                    suffix = string.ascii_lowercase[seen.get((authors, year), 0)]
                    seen[(authors, year)] = seen.get((authors, year), 0) + 1
                yield f"{authors}, {year}{suffix}"

    class BookStyle(PlainStyle):
        default_label_style = AuthorYearLabelStyle
        default_sorting_style = "author_year_title"

    @node
    def label_year(children, data):
        """The year of the entry's bibliography label ("2020a"), else its year field."""
        assert not children
        label = getattr(data.get("formatted_entry"), "label", None)
        return _label_year(label) if label else data["entry"].fields.get("year", "n.d.")

    @dataclass
    class Parenthetical(basic_author_year.BasicAuthorYearParentheticalReferenceStyle):
        def inner(self, role_name):
            return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                pre_text,
                reference[join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name), label_year]],
                post_text,
            ]

    @dataclass
    class Textual(basic_author_year.BasicAuthorYearTextualReferenceStyle):
        def inner(self, role_name):
            return join(sep=self.text_reference_sep)[
                self.person.author_or_editor_or_title(full="s" in role_name),
                join[self.bracket.left,
                     join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                         pre_text, reference[label_year], post_text],
                     self.bracket.right],
            ]

    def round_brackets():
        return BracketStyle(left="(", right=")")

    @dataclass
    class BookAuthorYear(author_year.AuthorYearReferenceStyle):
        # "Bengio et al. (1994)", "(Bengio et al., 1994)": round brackets, as author-year
        bracket_textual: BracketStyle = field(default_factory=round_brackets)
        bracket_parenthetical: BracketStyle = field(default_factory=round_brackets)
        bracket_author: BracketStyle = field(default_factory=round_brackets)
        bracket_label: BracketStyle = field(default_factory=round_brackets)
        bracket_year: BracketStyle = field(default_factory=round_brackets)

        def __post_init__(self):
            super().__post_init__()
            swap = {basic_author_year.BasicAuthorYearParentheticalReferenceStyle: Parenthetical,
                    basic_author_year.BasicAuthorYearTextualReferenceStyle: Textual}
            for i, style in enumerate(self.styles):
                new = swap.get(type(style))
                if new is not None:
                    self.styles[i] = new(**{k: getattr(style, k) for k in style.__dataclass_fields__})
            self.role_style.update((role, style) for style in self.styles for role in style.role_names())

    pybtex.plugin.register_plugin("pybtex.style.formatting", "book", BookStyle, force=True)
    register_bibtex_plugin("sphinxcontrib.bibtex.style.referencing", "book_author_year",
                           BookAuthorYear, force=True)


def setup(app: Sphinx) -> dict:
    register_bibliography_styles()
    app.connect("config-inited", use_local_assets, priority=900)
    app.add_config_value("book_repository_url", "", "html")
    app.connect("config-inited", repository_buttons, priority=900)
    app.connect("html-page-context", notebook_download, priority=450)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.add_js_file("book-mathjax-shim.js", priority=510, defer="defer")
    app.add_css_file("book.css", priority=900)
    app.add_directive("exercise-list", ExerciseList)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
