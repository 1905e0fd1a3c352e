"""Build the HTML site from executed notebooks, without executing any chapter again.

``make test`` runs every chapter once, under nbval; ``tests/conftest.py`` saves each fully
passed chapter as an executed notebook in ``_build/executed/book/<chapter>.ipynb``, tagged
with the SHA-256 of its ``.md`` source. This script

1. makes a source tree ``_build/site-src`` that mirrors the repository (symbolic links), in
   which each chapter ``book/<chapter>.md`` is replaced by its executed ``.ipynb``;
2. executes (with nbclient, saving widget state, as Jupyter Book would) only the chapters
   whose executed notebook is missing or older than their source, and saves them there too;
3. runs ``jupyter-book build`` on that tree with execution off, warnings as errors
   (``-W -n --keep-going``), into ``_build/site/_build/html``.

Glue outputs, figures and saved widget state all come from the executed notebooks, so the
pages match what ``make book`` produces; the download button of each chapter offers its
executed ``.ipynb``.

Usage: ``python tools/build_site.py [--out DIR]``; prints the path of the HTML folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
NOT_MIRRORED = {"_build", ".git", ".venv", ".hypothesis", ".pytest_cache", ".jupyter_cache"}


def toc_files(toc_path: Path) -> list[str]:
    """Every ``file:`` of the table of contents (and the root), without suffix."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f for f in found]


def is_notebook_source(path: Path) -> bool:
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


KEY_FILES = ("requirements.txt", "requirements-torch.txt")  # the pins a chapter's numbers need


def digest(path: Path) -> str:
    """The key of a chapter's executed notebook: SHA-256 over the chapter, every Python file
    of ``lib/`` and the pinned requirements (names and contents), so a change in ``lib/`` or
    in a pin re-executes the chapter and can never publish stale numbers.
    ``tests/conftest.py`` tags the notebooks it saves with this same function."""
    h = hashlib.sha256()
    for p in [path, *sorted((ROOT / "lib").rglob("*.py")), *(ROOT / f for f in KEY_FILES)]:
        if p.is_file():
            h.update(p.resolve().relative_to(ROOT).as_posix().encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def executed_notebook(source: Path) -> tuple[Path, bool]:
    """Path of the executed notebook of ``source`` and whether it is up to date."""
    target = EXECUTED / source.relative_to(ROOT).with_suffix(".ipynb")
    if not target.is_file():
        return target, False
    meta = json.loads(target.read_text(encoding="utf-8")).get("metadata", {})
    return target, meta.get("book_executed", {}).get("source_sha256") == digest(source)


def execute(source: Path, target: Path, timeout: int) -> None:
    """Run a chapter as Jupyter Book would (nbclient, widget state kept) and save it."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(source)
    # As in the Makefile: a non-interactive backend in the environment drops every plot.
    os.environ.pop("MPLBACKEND", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    client.execute()
    nb.metadata["book_executed"] = {"source_sha256": digest(source)}
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # an unpredictable name in the target's folder, then an atomic rename
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with open(fd, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh)
    os.replace(tmp, target)


def mirror(src: Path, dst: Path, replace: dict[Path, Path]) -> None:
    """Symlink the entries of ``src`` into ``dst``; chapters in ``replace`` become notebooks."""
    dst.mkdir(parents=True, exist_ok=True)
    replaced_dirs = {p.parent for p in replace}
    for entry in sorted(src.iterdir()):
        if entry.name in NOT_MIRRORED or entry.name.endswith(".egg-info"):
            continue
        if entry in replace:
            shutil.copy2(replace[entry], dst / entry.with_suffix(".ipynb").name)
        elif entry.is_dir() and any(entry == d or entry in d.parents for d in replaced_dirs):
            mirror(entry, dst / entry.name, replace)
        else:
            (dst / entry.name).symlink_to(entry)


def build(out: Path, timeout: int = 180) -> Path:
    start = time.perf_counter()
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    replace: dict[Path, Path] = {}
    for docname in toc_files(ROOT / "_toc.yml"):
        source = ROOT / f"{docname}.md"
        if not (source.is_file() and is_notebook_source(source)):
            continue
        target, fresh = executed_notebook(source)
        if not fresh:
            print(f"[build_site] executing {source.relative_to(ROOT)} (no up-to-date executed "
                  "notebook from the test run)", flush=True)
            execute(source, target, timeout)
        replace[source] = target
    src = BUILD / "site-src"
    if src.exists():
        shutil.rmtree(src)
    mirror(ROOT, src, replace)
    (src / "_config.yml").unlink()
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--builder", "html",
           "--path-output", str(out), "-W", "-n", "--keep-going"]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-20000:] + result.stderr[-20000:])
        raise RuntimeError(f"jupyter-book build of {src} failed (exit {result.returncode})")
    html = out / "_build" / "html"
    print(f"[build_site] built {html} in {time.perf_counter() - start:.1f} s from "
          f"{len(replace)} executed notebooks", flush=True)
    return html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD / "site")
    parser.add_argument("--timeout", type=int, default=180, help="per-cell timeout when executing")
    args = parser.parse_args()
    print(build(args.out.resolve(), args.timeout))


if __name__ == "__main__":
    main()
