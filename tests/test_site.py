"""The built site in a real browser: headless Chromium opens every page, offline.

The site is built by ``tools/build_site.py`` from the executed notebooks that the nbval run
of ``make test`` saved (chapters missing there are executed first), served over HTTP on
127.0.0.1, and opened page by page in Debian's Chromium driven by Playwright. Any request to
a host other than 127.0.0.1 is blocked and fails the test, so a pass proves the pages work
offline. For every page the test checks:

- every equation is typeset: each Sphinx math element holds a MathJax ``mjx-container`` and
  MathJax reported no TeX error;
- every saved widget was rendered by the widget manager;
- every ``<img>`` loaded (``naturalWidth > 0``);
- every link to a local page, file or anchor exists;
- the console shows no error, no request failed, no response had an HTTP error;
- chapters offer their notebook as an ``.ipynb`` download that is a valid notebook.

The reader's checks (issue 15) are separate tests, one per kind of defect, on the same
browsing of the site, so a failure names what is wrong:

- ``test_no_widget_without_static_twin``: no live widget on a static page (its controls do
  nothing without a kernel); each "run this page in Jupyter" note has its static figure;
- ``test_no_figure_twice``: no image twice on a page (same bytes);
- ``test_no_progress_bar_text``: no progress-bar output ("it/s", "%|", "0/60");
- ``test_chapter_prefixed_numbers``: figures, tables, theorems, exercises and equations
  of chapter N are numbered "N.k";
- ``test_no_internal_words``: no planning-file names, issue numbers, internal result or run
  folders, test or benchmark files, temporary paths or raw warnings on a page;
- ``test_figure_text_legible``: no figure shrunk so much that 9-pt text in it is smaller
  than ``MIN_TEXT_PX`` on the screen (from the image's size, its dpi and its display width);
- ``test_every_exercise_tagged`` and ``test_exercise_index``: every exercise carries its
  difficulty, type and time, and the index gives each a summary, without build jargon.

A full-page screenshot of each page is saved to ``_build/screenshots/``.

Needs ``/usr/bin/chromium`` (Debian's ``chromium``; ``make test`` and this test install it
when run as root). Only where it cannot be installed (not root) does the test skip, with a
message saying how to enable it, and never under ``CI``: there it fails. Set ``BOOK_SITE_HTML`` to test an already built site instead of building one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("BOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PAGE_TIMEOUT_MS = 60_000
MIN_EXERCISES = 3  # per numbered chapter, each with its solution in a dropdown
COURSE_EXERCISES = 6  # per chapter, for a course (test_six_exercises_per_chapter)
REFRESH_RE = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.IGNORECASE)
# Figures: 9-pt text must be at least this many CSS pixels tall on the screen (9 pt at the
# book's 7-in, 100-dpi figures shown at the 670-px content width is 12 px).
MIN_TEXT_PT = 9
MIN_TEXT_PX = 11
DEFAULT_FIGURE_DPI = 100  # lib.plotting.BOOK_STYLE, when an image does not say
PROGRESS_RE = re.compile(r"\d\s*(?:it/s|s/it)\b|\d%\||(?<![\d./])0/\d+|FloatProgress|HBox\(children")
# Words from the project's internals that must not appear on a page (prose and outputs).
INTERNAL_RE = re.compile(
    r"DESIGN\.md|STYLE\.md|DEVELOPERS\.md|\bissues? \d+|(?<![\w./-])runs/|\bresults/sc_|/tmp/|/work/|"
    r"site-packages|\btest_\w+|\bbench_\w+|\bhelpers?\b|\b[A-Z]\w*Warning:"
)
# In visible code only the unmistakable ones (code may name saved results it loads).
INTERNAL_CODE_RE = re.compile(r"DESIGN\.md|STYLE\.md|DEVELOPERS\.md|/tmp/|/work/|\bissues? \d+")
EXERCISE_TAGS = {
    "difficulty": re.compile(r"^ex-d[123]$"),
    "type": re.compile(r"^ex-(?:concept|derivation|coding|open)$"),
    "time": re.compile(r"^ex-t\d+$"),
}
INDEX_JARGON_RE = re.compile(r"directive|\{exercise|toctree|table of contents|\bbuil[dt]\b|"
                             r"generated|Sphinx|MyST|:class:|\blabel\b", re.IGNORECASE)

sys.path.insert(0, str(ROOT / "tools"))


def chromium_ok() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def require_browser() -> None:
    """Chromium must be there; as root, install it (as `make test` does) rather than skip."""
    if chromium_ok():
        return
    if os.geteuid() == 0 and shutil.which("apt-get") and CHROMIUM == "/usr/bin/chromium":
        import subprocess

        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(f"could not install chromium ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
        if chromium_ok():
            return
    message = (
        f"no Chromium at {CHROMIUM}: the browser test needs Debian's chromium package. "
        "Enable it with `sudo apt-get install chromium` (or run `make test` as root, which "
        "installs it), or point BOOK_CHROMIUM at a Chromium binary."
    )
    if IN_CI:
        pytest.fail(message + " Under CI the browser test must run.")
    pytest.skip(message)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def site() -> Path:
    require_browser()
    given = os.environ.get("BOOK_SITE_HTML")
    if given:
        return Path(given).resolve()
    import build_site

    start = time.perf_counter()
    html = build_site.build(ROOT / "_build" / "site")
    print(f"site built in {time.perf_counter() - start:.1f} s")
    return html


@pytest.fixture(scope="module")
def server(site: Path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def html_pages(site: Path) -> list[str]:
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_")
    )


# Runs in the page after load: waits for MathJax and the widget manager, then reports.
INSPECT = r"""
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const result = {};
  const maths = document.querySelectorAll('.math');
  result.math = maths.length;
  if (maths.length) {
    for (let i = 0; i < 300 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++) await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    result.mathjax = !!(window.MathJax && MathJax.version);
    result.untypeset = Array.from(maths).filter((m) => !m.querySelector('mjx-container'))
                            .map((m) => m.textContent.slice(0, 80));
    result.texErrors = Array.from(document.querySelectorAll('mjx-merror'))
                            .map((m) => (m.getAttribute('data-mjx-error') || m.textContent).slice(0, 120));
  }
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  result.widgetViews = views.length;
  if (views.length) {
    for (let i = 0; i < 300 && document.querySelectorAll('.jupyter-widgets').length === 0; i++) await sleep(100);
    await sleep(300);
    result.widgetsRendered = Array.from(views).filter((s) => {
      const el = s.previousElementSibling;
      return el && (el.classList.contains('jupyter-widgets') || el.querySelector('.jupyter-widgets'));
    }).length;
  }
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { img.loading = 'eager'; });
  await Promise.all(imgs.map((img) => img.complete ? null :
      new Promise((r) => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  result.images = imgs.length;
  result.brokenImages = imgs.filter((img) => !(img.complete && img.naturalWidth > 0))
                            .map((img) => img.getAttribute('src'));
  result.exercises = Array.from(document.querySelectorAll('div.exercise[id]')).map((e) => e.id);
  result.dropdownSolutions = document.querySelectorAll('div.solution.dropdown').length;
  result.links = Array.from(document.querySelectorAll('a[href]')).map((a) => a.href);
  // The reader's checks: text, numbers, figures and exercises of the page's article.
  const article = document.querySelector('article.bd-article') || document.body;
  const secnum = article.querySelector('h1 .section-number');
  result.chapterNumber = secnum ? secnum.textContent.trim().replace(/\.$/, '') : null;
  result.captionNumbers = Array.from(article.querySelectorAll('.caption-number'))
      .map((e) => e.textContent.trim());
  result.equationNumbers = Array.from(article.querySelectorAll('.eqno'))
      .map((e) => e.textContent.replace(/[^\d.()]/g, ''));
  const texts = (root, keep) => {
    const out = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (keep(n.parentElement)) out.push(n.textContent);
    }
    return out.join(' ');
  };
  const inCode = (el) => !!el.closest('.cell_input, div.highlight, mjx-container, .math, script, style');
  result.proseText = texts(article, (el) => !inCode(el) || !!el.closest('.cell_output'));
  result.codeText = Array.from(article.querySelectorAll('.cell_input')).map((e) => e.textContent).join('\n');
  result.outputText = Array.from(article.querySelectorAll('.cell_output')).map((e) => e.textContent).join('\n');
  result.figures = Array.from(article.querySelectorAll('img')).map((img) => ({
    src: img.currentSrc || img.src, alt: img.getAttribute('alt') || '',
    naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
    width: img.getBoundingClientRect().width,
    hidden: !img.offsetParent,
  }));
  result.contentWidth = article.getBoundingClientRect().width;
  result.exerciseClasses = Array.from(document.querySelectorAll('div.exercise[id]'))
      .map((e) => ({id: e.id, classes: Array.from(e.classList)}));
  // "Run this page in Jupyter ..." notes: the static figure must follow within a few blocks.
  result.liveNotes = Array.from(article.querySelectorAll('.admonition'))
      .filter((a) => /in Jupyter/i.test(a.textContent) && /slider|widget|interactive/i.test(a.textContent))
      .map((a) => {
        let el = a.nextElementSibling, found = false;
        for (let i = 0; el && i < 4 && !found; i++, el = el.nextElementSibling) {
          if (el.matches('section, h1, h2, h3')) break;
          found = !!el.querySelector('img');
        }
        return {text: a.textContent.trim().slice(0, 80), figure: found};
      });
  result.indexRows = Array.from(article.querySelectorAll('table.exercise-list-table tbody tr'))
      .map((tr) => Array.from(tr.cells).map((c) => c.textContent.trim()));
  result.ids = Array.from(document.querySelectorAll('[id]')).map((e) => e.id)
      .concat(Array.from(document.querySelectorAll('a[name]')).map((e) => e.getAttribute('name')));
  return result;
}
"""


@pytest.fixture(scope="module")
def browsed(site: Path, server: str) -> dict:
    """Open every page once; return what the page checks found, per page, and the
    problems of the original browser test."""
    from playwright.sync_api import sync_playwright

    pages = html_pages(site)
    assert "index.html" in pages and len(pages) > 3, f"the site at {site} looks incomplete: {pages}"
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    problems: list[str] = []
    ids: dict[str, set[str]] = {}
    links: dict[str, list[str]] = {}
    exercises: dict[str, list[str]] = {}
    infos: dict[str, dict] = {}
    images: dict[str, bytes] = {}
    math_pages = widget_pages = n_images = 0
    lightbox: dict | None = None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="book-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, service_workers="block",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        current: dict[str, str] = {"page": ""}

        def route(route_, request) -> None:
            host = urlsplit(request.url).hostname
            if request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                route_.continue_()
            else:
                problems.append(f"{current['page']}: request to a non-local host: {request.url}")
                route_.abort()

        context.route("**/*", route)
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda msg: msg.type == "error" and problems.append(
            f"{current['page']}: console error: {msg.text}"))
        page.on("pageerror", lambda err: problems.append(f"{current['page']}: page error: {err}"))
        page.on("requestfailed", lambda req: problems.append(
            f"{current['page']}: request failed: {req.url} ({req.failure})"))
        page.on("response", lambda resp: resp.status >= 400 and problems.append(
            f"{current['page']}: HTTP {resp.status} for {resp.url}"))

        for rel in pages:
            current["page"] = rel
            redirect = REFRESH_RE.search((site / rel).read_text(encoding="utf-8", errors="replace"))
            if redirect:  # e.g. index.html -> the first chapter: check the target exists
                links[rel] = [urljoin(f"{server}/{rel}", redirect.group(1))]
                continue
            page.goto(f"{server}/{rel}", wait_until="load")
            info = page.evaluate(INSPECT)
            infos[rel] = info
            for fig in info["figures"]:
                if fig["src"].startswith(server) and fig["src"] not in images:
                    response = page.request.get(fig["src"])
                    images[fig["src"]] = response.body() if response.ok else b""
            page.screenshot(path=str(SCREENSHOTS / (rel.replace("/", "__")[:-5] + ".png")), full_page=True)
            if lightbox is None and rel in numbered_chapters() and page.locator("a[data-lightbox] img").count():
                lightbox = open_lightbox(page, rel)
            ids[rel] = set(info["ids"])
            links[rel] = info["links"]
            n_images += info["images"]
            if info["math"]:
                math_pages += 1
                if not info.get("mathjax"):
                    problems.append(f"{rel}: {info['math']} equations but MathJax did not load")
                for text in info.get("untypeset", []):
                    problems.append(f"{rel}: equation not typeset: {text!r}")
                for text in info.get("texErrors", []):
                    problems.append(f"{rel}: TeX error: {text!r}")
            if info["widgetViews"]:
                widget_pages += 1
                if info["widgetsRendered"] != info["widgetViews"]:
                    problems.append(f"{rel}: {info['widgetsRendered']} of {info['widgetViews']} widgets rendered")
            for src in info["brokenImages"]:
                problems.append(f"{rel}: image did not load: {src}")
            if re.match(r"book/.+\.html$", rel):
                check_notebook_download(page, rel, server, info["links"], problems)
            exercises[rel] = info["exercises"]
            if rel in numbered_chapters():
                if len(info["exercises"]) < MIN_EXERCISES:
                    problems.append(f"{rel}: {len(info['exercises'])} exercises, fewer than {MIN_EXERCISES}")
                if info["dropdownSolutions"] < len(info["exercises"]):
                    problems.append(f"{rel}: {len(info['exercises'])} exercises but "
                                    f"{info['dropdownSolutions']} solutions in dropdowns")
        context.close()
    browse = time.perf_counter() - start

    problems += broken_links(site, server, links, ids)
    problems += exercise_index_gaps(server, links, exercises)
    print(f"browser test: {len(pages)} pages in {browse:.1f} s, {math_pages} with math, "
          f"{widget_pages} with widgets, {n_images} images, "
          f"{sum(map(len, exercises.values()))} exercises; screenshots in {SCREENSHOTS}")
    return {"problems": problems, "pages": infos, "images": images, "server": server,
            "lightbox": lightbox}


def open_lightbox(page, rel: str) -> dict:
    """Click the page's first figure; the enlarged view must show it wider than on the page."""
    link = page.locator("a[data-lightbox]").filter(has=page.locator("img")).first
    link.scroll_into_view_if_needed()
    shown = link.locator("img").bounding_box()["width"]
    link.click()
    try:
        page.wait_for_selector("#lightbox img.lb-image", state="visible", timeout=10_000)
        page.wait_for_timeout(1500)  # the resize animation
        large = page.locator("#lightbox img.lb-image").bounding_box()["width"]
        loaded = page.evaluate("() => { const i = document.querySelector('#lightbox img.lb-image');"
                               " return !!i && i.complete && i.naturalWidth > 0; }")
    except Exception as exc:  # noqa: BLE001 - reported by the test
        return {"page": rel, "error": repr(exc)}
    finally:
        page.keyboard.press("Escape")
    return {"page": rel, "shown": shown, "large": large, "loaded": loaded}


def test_figures_open_larger(browsed: dict) -> None:
    """A click on a figure opens it larger (sphinxcontrib-lightbox2, served by the site)."""
    box = browsed["lightbox"]
    assert box is not None, "no chapter page has a figure that opens on a click"
    assert "error" not in box, f"{box['page']}: the enlarged figure did not open: {box['error']}"
    assert box["loaded"] and box["large"] > box["shown"], f"{box['page']}: {box}"


def test_site_in_browser(browsed: dict) -> None:
    problems = browsed["problems"]
    assert not problems, f"{len(problems)} problems in the built site:\n" + "\n".join(problems)


def chapter_pages(browsed: dict) -> dict[str, dict]:
    return {rel: info for rel, info in browsed["pages"].items() if rel in numbered_chapters()}


def report(kind: str, found: list[str]) -> None:
    assert not found, f"{len(found)} {kind}:\n" + "\n".join(found)


def test_no_widget_without_static_twin(browsed: dict) -> None:
    """A slider that does nothing without a kernel is a defect: on the pages a widget cell
    shows no output, and its note is followed by the static figure of the default value."""
    found = []
    for rel, info in browsed["pages"].items():
        if info["widgetViews"]:
            found.append(f"{rel}: {info['widgetViews']} live widget(s) on the static page (tag the "
                         "cell remove-output and show the static figure after its note)")
        for note in info["liveNotes"]:
            if not note["figure"]:
                found.append(f"{rel}: no static figure after the note {note['text']!r}")
    report("widgets without their static twin", found)


def test_no_figure_twice(browsed: dict) -> None:
    import hashlib

    found = []
    for rel, info in browsed["pages"].items():
        seen: dict[str, str] = {}
        for fig in info["figures"]:
            data = browsed["images"].get(fig["src"])
            if not data:
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                found.append(f"{rel}: the same image twice ({fig['src'].rsplit('/', 1)[-1]})")
            seen[digest] = fig["src"]
    report("figures shown twice on a page", found)


def test_every_figure_has_alt_text(browsed: dict) -> None:
    """A screen reader reads a figure's alt text: it must describe the figure, not be
    Sphinx's default (the image's file path, a hash) or a word or two. The book's figures
    are the images under ``_images/``; the theme's decorations (a search page's spinner)
    rightly have an empty alt."""
    found = []
    n_figures = 0
    for rel, info in browsed["pages"].items():
        for fig in info["figures"]:
            if "/_images/" not in fig["src"]:
                continue
            n_figures += 1
            alt = fig["alt"].strip()
            name = fig["src"].rsplit("/", 1)[-1]
            if "_images/" in alt or alt.endswith((".png", ".svg", ".jpg")) or len(alt.split()) < 4:
                found.append(f"{rel}: figure {name} has alt text {alt!r}")
    assert n_figures >= 40, f"only {n_figures} figures found on the site"
    report("figures without a description (alt text)", found)


def test_no_progress_bar_text(browsed: dict) -> None:
    found = []
    for rel, info in browsed["pages"].items():
        for m in PROGRESS_RE.finditer(info["outputText"]):
            context = info["outputText"][max(0, m.start() - 30): m.end() + 30].replace("\n", " ")
            found.append(f"{rel}: progress-bar output {context!r}")
    report("progress bars on pages", found)


NUMBERED_RE = re.compile(r"^(?P<kind>[A-Z][a-z]+(?: [a-z]+)?) (?P<number>[\d.]+)$")


def test_chapter_prefixed_numbers(browsed: dict) -> None:
    """On the page of chapter N every figure, table, theorem, lemma, exercise ... is
    "Kind N.k" and every equation "(N.k)"; the book shows at least one of each of a figure,
    a theorem-like statement and an equation with the prefix."""
    found, kinds = [], set()
    chapters = chapter_pages(browsed)
    assert chapters, "no chapter pages found"
    for rel, info in chapters.items():
        n = info["chapterNumber"]
        if not (n and n.isdigit()):
            found.append(f"{rel}: the chapter has no number ({n!r})")
            continue
        for caption in info["captionNumbers"]:
            m = NUMBERED_RE.match(caption)
            if not m or not re.fullmatch(rf"{n}\.\d+", m["number"]):
                found.append(f"{rel}: {caption!r} is not numbered {n}.k")
            else:
                kinds.add(m["kind"])
        for eq in info["equationNumbers"]:
            if not re.fullmatch(rf"\({n}\.\d+\)", eq):
                found.append(f"{rel}: equation {eq!r} is not numbered ({n}.k)")
            else:
                kinds.add("equation")
    for needed in ("Figure", "Theorem", "Exercise", "equation"):
        if needed not in kinds:
            found.append(f"no chapter shows a {needed} with a chapter-prefixed number")
    report("numbers without the chapter's prefix", found)


def test_no_internal_words(browsed: dict) -> None:
    found = []
    for rel, info in browsed["pages"].items():
        for regex, text, where in ((INTERNAL_RE, info["proseText"], "text"),
                                   (INTERNAL_CODE_RE, info["codeText"], "code")):
            for m in regex.finditer(text):
                context = text[max(0, m.start() - 40): m.end() + 40].replace("\n", " ")
                found.append(f"{rel}: {m.group(0)!r} in the {where}: ...{context}...")
    report("internal words on pages", found)


def png_dpi(data: bytes) -> float | None:
    """Horizontal resolution of a PNG from its pHYs chunk (matplotlib writes the figure's
    dpi there), or None."""
    import struct

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        if kind == b"pHYs" and length >= 9:
            x, _, unit = struct.unpack(">IIB", data[pos + 8: pos + 17])
            return x * 0.0254 if unit == 1 and x else None
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


def test_figure_text_legible(browsed: dict) -> None:
    """A figure drawn in the book's style has text of at least MIN_TEXT_PT points; on the
    page it shows at (display width / image width) of its size, so 9-pt text measures
    9/72 * dpi * display / natural CSS pixels. Figures too wide for the page shrink their
    text below MIN_TEXT_PX."""
    found, smallest = [], []
    for rel, info in browsed["pages"].items():
        for fig in info["figures"]:
            if fig["hidden"] or not fig["naturalWidth"] or not fig["width"]:
                continue
            dpi = png_dpi(browsed["images"].get(fig["src"], b"")) or DEFAULT_FIGURE_DPI
            px = MIN_TEXT_PT / 72 * dpi * fig["width"] / fig["naturalWidth"]
            name = fig["src"].rsplit("/", 1)[-1][:16]
            smallest.append((px, rel, name))
            if px < MIN_TEXT_PX:
                found.append(f"{rel}: image {name}… ({fig['naturalWidth']} px at {dpi:.0f} dpi = "
                             f"{fig['naturalWidth'] / dpi:.1f} in) shown {fig['width']:.0f} px wide: "
                             f"{MIN_TEXT_PT}-pt text is {px:.1f} px (at least {MIN_TEXT_PX}); "
                             "draw it at most 7 in wide")
    if smallest:
        px, rel, name = min(smallest)
        print(f"figure text: 9 pt is at least {px:.1f} px on screen ({rel}, {name})")
    report("figures whose text is too small on the page", found)


def test_every_exercise_tagged(browsed: dict) -> None:
    """Every exercise's :class: gives its difficulty (ex-d1..3), its type (ex-concept,
    ex-derivation, ex-coding, ex-open) and its time (ex-t<minutes>)."""
    found = []
    for rel, info in browsed["pages"].items():
        for ex in info["exerciseClasses"]:
            missing = [tag for tag, regex in EXERCISE_TAGS.items()
                       if not any(regex.match(c) for c in ex["classes"])]
            if missing:
                found.append(f"{rel}#{ex['id']}: no {', '.join(missing)} tag")
    report("exercises without their tags", found)


def test_six_exercises_per_chapter(browsed: dict) -> None:
    """At least COURSE_EXERCISES exercises per chapter, for a course."""
    found = [f"{rel}: {len(info['exercises'])} exercises" for rel, info in chapter_pages(browsed).items()
             if len(info["exercises"]) < COURSE_EXERCISES]
    report(f"chapters with fewer than {COURSE_EXERCISES} exercises", found)


def test_exercise_index(browsed: dict) -> None:
    """The exercise index gives every exercise a summary and its tags, and speaks to
    readers, not to the build."""
    index = browsed["pages"].get("book/exercises.html")
    assert index is not None, "book/exercises.html is missing"
    found = []
    assert index["indexRows"], "the exercise index has no table of exercises"
    for row in index["indexRows"]:
        if len(row) < 5 or not row[1] or row[1] == "untagged":
            found.append(f"{row[0] if row else '?'}: no summary")
        if "untagged" in row[2:]:
            found.append(f"{row[0]}: untagged ({' / '.join(row[2:])})")
    for m in INDEX_JARGON_RE.finditer(index["proseText"]):
        text = index["proseText"]
        found.append(f"build jargon {m.group(0)!r}: ...{text[max(0, m.start() - 40): m.end() + 40]}...")
    report("gaps in the exercise index", found)


def test_bibliography_has_no_duplicates() -> None:
    """One entry per work across book/references.bib and book/bib/*.bib."""
    import pybtex.database

    titles: dict[tuple[str, str], str] = {}
    keys: dict[str, str] = {}
    found = []
    for path in [ROOT / "book" / "references.bib", *sorted((ROOT / "book" / "bib").glob("*.bib"))]:
        data = pybtex.database.parse_file(str(path))
        for key, entry in data.entries.items():
            if key.lower() in keys:
                found.append(f"key {key} in {path.name} and {keys[key.lower()]}")
            keys[key.lower()] = path.name
            title = re.sub(r"[^a-z0-9]", "", entry.fields.get("title", "").lower())
            work = (title, entry.fields.get("year", ""))
            if work in titles:
                found.append(f"{key} ({path.name}) is the same work as {titles[work]}")
            titles[work] = f"{key} ({path.name})"
    report("duplicate bibliography entries", found)


def numbered_chapters() -> set[str]:
    """Pages of the numbered parts of _toc.yml ("book/entropy.html"): the chapters."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return {f"{Path(c['file']).with_suffix('')}.html" for part in toc.get("parts", [])
            if part.get("numbered") for c in part.get("chapters", [])}


def is_chapter_page(rel: str) -> bool:
    """A page built from a notebook chapter (book/<name>.md with a kernelspec)."""
    if not re.match(r"book/[^/]+\.html$", rel):
        return False
    md = ROOT / f"{rel[:-5]}.md"
    return md.is_file() and "kernelspec:" in md.read_text(encoding="utf-8")[:2000]


def exercise_index_gaps(server: str, links: dict[str, list[str]], exercises: dict[str, list[str]]) -> list[str]:
    """The exercise index (book/exercises.html) links to every exercise of every page."""
    index = "book/exercises.html"
    if index not in links:
        return [f"{index} is missing"]
    targets = {(urlsplit(h).path.lstrip("/"), urlsplit(h).fragment) for h in links[index] if h.startswith(server)}
    return [f"{index}: no link to exercise {rel}#{label}"
            for rel, labels in sorted(exercises.items()) for label in labels
            if (rel, label) not in targets]


def check_notebook_download(page, rel: str, server: str, hrefs: list[str], problems: list[str]) -> None:
    """A chapter built from a notebook offers it as a valid .ipynb download."""
    source = rel[:-5]
    notebooks = [h for h in hrefs if h.startswith(server) and urlsplit(h).path.endswith(f"/_sources/{source}.ipynb")]
    if not notebooks:
        if is_chapter_page(rel):
            problems.append(f"{rel}: no .ipynb download link")
        return
    response = page.request.get(notebooks[0])
    if not response.ok:
        problems.append(f"{rel}: notebook download {notebooks[0]} gave HTTP {response.status}")
        return
    try:
        nb = json.loads(response.text())
        assert nb["nbformat"] == 4 and isinstance(nb["cells"], list) and nb["cells"]
    except Exception as exc:  # noqa: BLE001 - any failure means a broken download
        problems.append(f"{rel}: notebook download is not a valid notebook: {exc!r}")


def broken_links(site: Path, server: str, links: dict[str, list[str]], ids: dict[str, set[str]]) -> list[str]:
    problems = []
    for rel, hrefs in links.items():
        for href in sorted(set(hrefs)):
            if not href.startswith(server + "/"):
                continue  # external links and javascript: are not part of the offline site
            parts = urlsplit(href)
            path = unquote(parts.path).lstrip("/")
            target = site / path
            if target.is_dir():
                target, path = target / "index.html", (path.rstrip("/") + "/index.html").lstrip("/")
            if not target.is_file():
                problems.append(f"{rel}: broken link to {path}")
                continue
            if parts.fragment and path.endswith(".html"):
                fragment = unquote(parts.fragment)
                if path in ids and fragment not in ids[path]:
                    problems.append(f"{rel}: broken anchor {path}#{fragment}")
    return problems


def test_jupyterlab_opens_chapters_as_notebooks(tmp_path: Path) -> None:
    """`make lab`: Jupyter serves each .md chapter as a notebook (jupytext's contents
    manager), and the JupyterLab extensions for jupytext and for widgets are enabled."""
    import socket
    import subprocess
    import urllib.request

    bindir = Path(sys.executable).parent
    labextensions = Path(sys.prefix) / "share" / "jupyter" / "labextensions"
    for name in ("jupyterlab-jupytext", "@jupyter-widgets/jupyterlab-manager"):
        assert (labextensions / name / "package.json").is_file(), (
            f"JupyterLab extension {name} is not installed in {labextensions}")
    overrides = json.loads((ROOT / "tools" / "jupyterlab-overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["markdown"] == "Jupytext Notebook"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "book-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [str(bindir / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        chapters = sorted(p for p in (ROOT / "book").glob("*.md")
                          if "kernelspec:" in p.read_text(encoding="utf-8")[:2000])
        assert chapters
        deadline = time.time() + 120
        served_code_cells = 0
        for chapter in chapters:
            url = f"http://127.0.0.1:{port}/api/contents/book/{chapter.name}?type=notebook&content=1"
            request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        model = json.loads(response.read())
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.5)
            assert model["type"] == "notebook", (chapter.name, model["type"])
            code = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
            expected = len(re.findall(r"^`{3,}\{code-cell\}", chapter.read_text(encoding="utf-8"), re.M))
            assert len(code) == expected, f"{chapter.name}: {len(code)} code cells served, {expected} in the file"
            served_code_cells += len(code)
        assert served_code_cells > 0, "no chapter has code cells"
    finally:
        server.terminate()
        server.wait(timeout=30)
