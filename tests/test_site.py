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
MIN_EXERCISES = 3  # per chapter (the preface excepted), each with its solution in a dropdown
REFRESH_RE = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.IGNORECASE)

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
INSPECT = """
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
  result.ids = Array.from(document.querySelectorAll('[id]')).map((e) => e.id)
      .concat(Array.from(document.querySelectorAll('a[name]')).map((e) => e.getAttribute('name')));
  return result;
}
"""


def test_site_in_browser(site: Path, server: str) -> None:
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
    math_pages = widget_pages = n_images = 0
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
            page.screenshot(path=str(SCREENSHOTS / (rel.replace("/", "__")[:-5] + ".png")), full_page=True)
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
            if is_chapter_page(rel) and not rel.endswith("/preface.html"):
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
    assert not problems, f"{len(problems)} problems in the built site:\n" + "\n".join(problems)


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
