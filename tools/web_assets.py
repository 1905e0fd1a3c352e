"""Install the JavaScript the built site needs to render offline.

The book's pages typeset equations with MathJax 3 and render saved widget state with the
Jupyter widget manager (``@jupyter-widgets/html-manager``). By default Sphinx and MyST-NB load
both from a CDN when the page is viewed; this script fetches pinned versions once, from the
npm registry, with npm's own client (``npm pack``), checks each tarball against the
registry's sha512 integrity recorded below, and unpacks the files the site serves into
``DEST`` (default ``<venv>/share/book-web``, the running Python's prefix). ``tools/book_sphinx.py`` then copies them into
``_build/html/_static`` and points the pages at the local copies.

Usage: ``python tools/web_assets.py [DEST]`` (``make setup`` runs it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DEFAULT_DEST = Path(sys.prefix) / "share" / "book-web"  # where tools/book_sphinx.py looks

# name@version -> (sha512 integrity published by the registry, files to keep, target folder)
PACKAGES = {
    "mathjax@3.2.2": (
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "es5",
        "mathjax",
    ),
    "@jupyter-widgets/html-manager@1.0.15": (
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "dist",
        "jupyter-widgets",
    ),
}
# Files not needed by the pages: source maps, the AMD build (needs require.js), and
# MathJax's speech-rule engine (only loaded when a reader turns on speech output).
SKIP_SUFFIXES = (".map",)
SKIP_NAMES = {"embed-amd.js", "libembed-amd.js"}
SKIP_DIRS = {"sre"}
# MathJax ships one combined file per input/output pair; the pages load only this one.
MATHJAX_BUNDLE = "tex-chtml-full.js"
STAMP = "installed.json"


def integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def install(dest: Path) -> None:
    stamp = dest / STAMP
    wanted = sorted(PACKAGES) + [MATHJAX_BUNDLE]
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        print(f"web assets up to date in {dest}")
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js (it provides npm) to fetch MathJax and "
                         "the Jupyter widget manager for offline reading")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        out = subprocess.run(
            [npm, "pack", "--json", "--pack-destination", str(tmpdir), *sorted(PACKAGES)],
            check=True, capture_output=True, text=True, cwd=tmpdir,
        )
        packed = {f"{d['name']}@{d['version']}": tmpdir / d["filename"] for d in json.loads(out.stdout)}
        staging = tmpdir / "staging"
        for spec, (expected, subdir, target) in PACKAGES.items():
            tarball = packed[spec]
            got = integrity(tarball)
            if got != expected:
                raise SystemExit(f"{spec}: integrity mismatch ({got} != {expected}); not installing")
            with tarfile.open(tarball) as tar:
                prefix = f"package/{subdir}/"
                for member in tar.getmembers():
                    if not member.isfile() or not member.name.startswith(prefix):
                        continue
                    rel = Path(member.name[len(prefix):])
                    if target == "mathjax" and len(rel.parts) == 1 and rel.name != MATHJAX_BUNDLE:
                        continue
                    if (rel.suffix in SKIP_SUFFIXES or rel.name in SKIP_NAMES
                            or SKIP_DIRS & set(rel.parts[:-1])):
                        continue
                    path = staging / target / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src:
                        path.write_bytes(src.read())
        (staging / STAMP).write_text(json.dumps(wanted))
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dest)
    print(f"installed {', '.join(wanted)} into {dest}")


if __name__ == "__main__":
    install(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_DEST)
