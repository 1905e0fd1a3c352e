"""The executed-notebook cache of the site build is keyed on the chapter, ``lib/`` and the
pinned requirements (issue 17, item 5): a change in any of them re-executes the chapter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build_site(root: Path):
    spec = importlib.util.spec_from_file_location("_build_site_under_test",
                                                  ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


def test_the_key_covers_chapter_lib_and_pins(tmp_path):
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    chapter = tmp_path / "book" / "ch.md"
    chapter.write_text("# chapter\n")
    (tmp_path / "lib" / "a.py").write_text("X = 1\n")
    (tmp_path / "lib" / "sub" / "b.py").write_text("Y = 2\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    (tmp_path / "requirements-torch.txt").write_text("torch==2.13.0\n")
    (tmp_path / "README.md").write_text("readme\n")
    bs = _build_site(tmp_path)
    keys = [bs.digest(chapter)]
    for path, text in ((tmp_path / "README.md", "other\n"),):  # not part of the key
        path.write_text(text)
        assert bs.digest(chapter) == keys[0]
    for path, text in ((tmp_path / "lib" / "sub" / "b.py", "Y = 3\n"),
                       (tmp_path / "requirements.txt", "torch==2.13.0\nnumpy==2.4.6\n"),
                       (tmp_path / "requirements-torch.txt", "torch==2.11.0\n"),
                       (chapter, "# chapter, edited\n"),
                       (tmp_path / "lib" / "new.py", "Z = 0\n")):
        path.write_text(text)
        keys.append(bs.digest(chapter))
        assert keys[-1] != keys[-2], path
    assert bs.digest(chapter) == keys[-1]  # deterministic


def test_conftest_tags_notebooks_with_the_same_key():
    import conftest

    chapter = next((ROOT / "book").glob("*.md"))
    assert conftest.source_digest(chapter) == _build_site(ROOT).digest(chapter)
