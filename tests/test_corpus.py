"""Tests of lib.corpus: the WikiText-2 loader, its lookup and download, the fallback
corpus, the vocabulary cap and the BPTT batching."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib import corpus as C

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get(C.DATA_ENV, ROOT.parent / "shared" / "data")) / "wikitext-2"
# From the README of the shared data folder (whitespace split + one <eos> per line).
REAL = {
    "valid": (217_646, 13_777, "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
    "test": (245_569, 14_143, "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
}
needs_real = pytest.mark.skipif(not (SHARED / "valid.txt").is_file(),
                                reason="shared WikiText-2 splits not present")


def write_splits(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


SMALL = {"train": " a b c \n b is d \n", "valid": " d e \n\n", "test": " f a <unk> \n"}


# ----------------------------------------------------------------------------- real data
@needs_real
@pytest.mark.parametrize("split", ["valid", "test"])
def test_real_split_counts_and_checksum(split):
    path = SHARED / f"{split}.txt"
    n_tokens, n_distinct, sha = REAL[split]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    d = C.Dictionary()
    ids = C.tokenize_file(path, d)
    assert ids.numel() == n_tokens
    assert len(d) == n_distinct
    assert int(ids.max()) == len(d) - 1
    # the same counts as the line-by-line reference tokenisation
    with open(path, encoding="utf-8") as fh:
        assert sum(len(line.split()) + 1 for line in fh) == n_tokens


@needs_real
def test_real_folder_without_train_is_an_error_by_default():
    with pytest.raises(FileNotFoundError, match="train.txt"):
        C.load_wikitext2(SHARED)


@needs_real
def test_real_folder_valid_as_train():
    corpus = C.load_wikitext2(SHARED, missing_train="valid-as-train")
    assert corpus.train.numel() == REAL["valid"][0]
    assert corpus.valid.numel() + corpus.test.numel() == REAL["test"][0]
    assert abs(corpus.valid.numel() - corpus.test.numel()) <= 1
    assert "train = valid.txt" in corpus.source
    # dictionary built over valid then test: the training split's words come first
    assert int(corpus.train.max()) == REAL["valid"][1] - 1
    assert "is" in corpus.dictionary and "<unk>" in corpus.dictionary


@needs_real
def test_environment_variable_lookup(monkeypatch, tmp_path):
    monkeypatch.setenv(C.DATA_ENV, str(SHARED.parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    corpus = C.load_wikitext2(missing_train="valid-as-train", download=False, fallback=False)
    assert corpus.train.numel() == REAL["valid"][0]


# ----------------------------------------------------------------------------- tokenising
@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab ,\t<>", max_size=12), max_size=8), st.booleans())
def test_tokenize_text_matches_line_by_line(lines, trailing_newline):
    text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    expected = []
    for line in text.splitlines():
        expected += line.split() + ["<eos>"]
    assert C.tokenize_text(text) == expected


def test_dictionary_order_is_train_valid_test(tmp_path):
    corpus = C.load_wikitext2(write_splits(tmp_path / "w", SMALL))
    assert corpus.dictionary.idx2word == ["a", "b", "c", "<eos>", "is", "d", "e", "f", "<unk>"]
    assert corpus.dictionary.decode(corpus.train) == "a b c <eos> b is d <eos>".split()
    assert corpus.dictionary.decode(corpus.valid) == "d e <eos> <eos>".split()
    assert corpus.test.tolist() == [7, 0, 8, 3]


# ----------------------------------------------------------------------------- bad input
def test_missing_split_names_the_file(tmp_path):
    folder = write_splits(tmp_path / "w", {"train": "a\n", "test": "a\n"})
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        C.load_wikitext2(folder)
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        C.load_wikitext2(folder, missing_train="valid-as-train")


def test_empty_file_names_the_file(tmp_path):
    folder = write_splits(tmp_path / "w", {**SMALL, "test": "  \n"})
    with pytest.raises(ValueError, match="empty.*test.txt"):
        C.load_wikitext2(folder)


def test_unknown_token_names_file_and_token(tmp_path):
    folder = write_splits(tmp_path / "w", SMALL)
    d = C.Dictionary()
    C.tokenize_file(folder / "train.txt", d)
    with pytest.raises(ValueError, match=r"valid.txt.*'e'"):
        C.tokenize_file(folder / "valid.txt", d, add_words=False)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        C.load_wikitext2(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="missing_train"):
        C.load_wikitext2(tmp_path, missing_train="maybe")
    with pytest.raises(ValueError, match="batch_size"):
        C.batchify(torch.arange(10), 0)
    with pytest.raises(ValueError, match="too few"):
        C.batchify(torch.arange(3), 2)
    with pytest.raises(ValueError, match="1-D"):
        C.batchify(torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="i must be"):
        C.get_batch(torch.zeros(5, 2), 4, 2)
    with pytest.raises(ValueError, match="max_words"):
        C.cap_vocabulary(C.synthetic_corpus(n_train=200, n_valid=60, n_test=60), 0)


# ----------------------------------------------------------------------------- download
def make_archive(path: Path, texts=SMALL) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for split, text in texts.items():
            zf.writestr(f"wikitext-2/wiki.{split}.tokens", text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_from_file_url(tmp_path):
    archive = tmp_path / "w.zip"
    sha = make_archive(archive)
    target = tmp_path / "cache" / "wikitext-2"
    out = C.download_wikitext2(target, urls=[archive.as_uri()], sha256=sha)
    assert out == target
    assert sorted(p.name for p in target.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    assert (target / "valid.txt").read_text() == SMALL["valid"]
    assert [p.name for p in target.parent.iterdir()] == ["wikitext-2"]  # no temp folder left


def test_download_checksum_mismatch_leaves_no_cache(tmp_path):
    archive = tmp_path / "w.zip"
    make_archive(archive)
    target = tmp_path / "cache" / "wikitext-2"
    with pytest.raises(ValueError, match="checksum mismatch.*wikitext-2-v1.zip"):
        C.download_wikitext2(target, urls=[archive.as_uri()], sha256="0" * 64)
    assert list(target.parent.iterdir()) == []


def test_interrupted_download_leaves_no_cache(tmp_path):
    def fetch(url, dest, timeout):
        dest.write_bytes(b"PK\x03\x04 partial")
        raise OSError("connection reset")

    target = tmp_path / "cache" / "wikitext-2"
    with pytest.raises(OSError, match="connection reset"):
        C.download_wikitext2(target, urls=["https://example.invalid/a.zip"], fetch=fetch)
    assert list(target.parent.iterdir()) == []


def test_loader_downloads_into_cache_then_reuses_it(monkeypatch, tmp_path):
    archive = tmp_path / "w.zip"
    sha = make_archive(archive)
    monkeypatch.delenv(C.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(C, "WIKITEXT2_SHA256", sha)
    calls = []

    def fetch(url, dest, timeout):
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(C, "_urlretrieve", fetch)
    first = C.load_wikitext2()
    assert len(calls) == 1
    assert first.train.numel() == 8
    assert (tmp_path / "xdg" / "rnn-attractors-book" / "wikitext-2" / "train.txt").is_file()
    second = C.load_wikitext2()
    assert len(calls) == 1  # served from the cache
    assert torch.equal(first.test, second.test)


def test_offline_fallback_warns_and_is_synthetic(monkeypatch, tmp_path):
    monkeypatch.delenv(C.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="synthetic corpus"):
        corpus = C.load_wikitext2(download=False)
    assert corpus.source.startswith("synthetic")
    with pytest.raises(FileNotFoundError, match="no WikiText-2 folder"):
        C.load_wikitext2(download=False, fallback=False)


# ----------------------------------------------------------------------------- fallback corpus
def test_synthetic_corpus_is_deterministic_english_shaped():
    a = C.synthetic_corpus(seed=3)
    b = C.synthetic_corpus(seed=3)
    assert a.dictionary.idx2word == b.dictionary.idx2word
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, C.synthetic_corpus(seed=4).train)
    for w in ("is", "<unk>", "Valkyria", "<eos>", "the"):
        assert w in a.dictionary
    assert 1900 < len(a.dictionary) <= 2000  # words of the list that occur in the text
    # Zipf: log-frequency against log-rank has slope near -1 over ranks 5..500
    counts = np.sort(np.bincount(a.train.numpy()))[::-1]
    ranks = np.arange(5, 500)
    slope = np.polyfit(np.log(ranks + 1), np.log(counts[ranks]), 1)[0]
    assert -1.6 < slope < -0.6, slope
    # function words are frequent
    top = set(a.dictionary.decode(torch.tensor(np.argsort(-np.bincount(a.train.numpy()))[:20])))
    assert {"the", ","} <= top


# ----------------------------------------------------------------------------- vocabulary cap
def test_cap_vocabulary_maps_rare_words_to_unk():
    full = C.synthetic_corpus(n_train=5000, n_valid=600, n_test=600)
    capped = C.cap_vocabulary(full, 100, keep=["Valkyria", "<unk>", "Valkyria"])
    d, D = full.dictionary, capped.dictionary
    assert len(D) == 100 and "Valkyria" in D and "<unk>" in D and "<eos>" in D
    for split in ("train", "valid", "test"):
        old, new = getattr(full, split), getattr(capped, split)
        assert old.shape == new.shape
        words_old, words_new = d.decode(old), D.decode(new)
        for wo, wn in zip(words_old, words_new):
            assert wn == (wo if wo in D else "<unk>")
    # most frequent first
    counts = torch.bincount(capped.train, minlength=len(D))
    kept_plain = [i for i, w in enumerate(D.idx2word) if w not in ("<unk>", "<eos>", "Valkyria")]
    assert all(counts[a] >= counts[b] for a, b in zip(kept_plain, kept_plain[1:]))


# ----------------------------------------------------------------------------- batching
@settings(max_examples=40, deadline=None)
@given(st.integers(4, 300), st.integers(1, 7), st.integers(1, 9))
def test_batchify_and_get_batch(n, batch_size, bptt):
    data = torch.arange(n)
    if n // batch_size < 2:
        with pytest.raises(ValueError):
            C.batchify(data, batch_size)
        return
    src = C.batchify(data, batch_size)
    T = n // batch_size
    assert src.shape == (T, batch_size)
    assert torch.equal(src[:, 1] if batch_size > 1 else src[:, 0],
                       torch.arange(T) + (T if batch_size > 1 else 0))
    covered = []
    for i in range(0, T - 1, bptt):
        x, y = C.get_batch(src, i, bptt)
        assert x.shape == y.shape and x.shape[0] <= bptt
        assert torch.equal(y, x + 1)  # the next word of every stream
        covered += x[:, 0].tolist()
    assert covered == list(range(T - 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("a b c d e <unk> is".split()), max_size=20),
                min_size=1, max_size=3))
def test_add_and_encode_equals_add_then_encode(chunks):
    one, two = C.Dictionary(), C.Dictionary()
    for words in chunks:
        ids = one.add_and_encode(words)
        two.add_words(words)
        assert torch.equal(ids, two.encode(words))
        assert one.idx2word == two.idx2word and one.word2idx == two.word2idx
        assert one.decode(ids) == list(words)


# ----------------------------------------------------------------------------- issue 17: data
def _splits_mirror(folder: Path, texts) -> str:
    """A mirror serving {split}.txt, as the third default mirror does."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (folder / f"{split}.txt").write_text(text)
    return folder.as_uri() + "/"


def test_published_split_checksums_are_the_shared_data():
    for split in ("valid", "test"):
        path = SHARED / f"{split}.txt"
        if not path.is_file():
            pytest.skip("no shared WikiText-2 data here")
        assert C._sha256(path) == C.WIKITEXT2_SPLIT_SHA256[split]
    assert C.WIKITEXT2_MIRRORS[:2] == C.WIKITEXT2_URLS and C.WIKITEXT2_MIRRORS[2].endswith("/")


def test_a_cut_download_a_dead_mirror_and_a_mismatch_move_on_to_the_next(tmp_path, monkeypatch):
    archive = tmp_path / "w.zip"
    sha = make_archive(archive)
    good = archive.read_bytes()
    calls = []

    def fetch(url, dest, timeout):
        calls.append(url)
        if "cut" in url:
            dest.write_bytes(good[: len(good) // 2])  # the connection dropped half-way
        elif "dead" in url:
            raise OSError("connection refused")
        elif "evil" in url:
            dest.write_bytes(good + b"tampered")
        else:
            dest.write_bytes(good)

    target = tmp_path / "cache" / "wikitext-2"
    urls = ["https://cut.example/w.zip", "https://dead.example/w.zip",
            "https://evil.example/w.zip", "https://good.example/w.zip"]
    out = C.download_wikitext2(target, urls=urls, sha256=sha, fetch=fetch, retries=0)
    assert (out / "valid.txt").read_text() == SMALL["valid"]
    assert [u.split("/")[2] for u in calls] == ["cut.example", "dead.example", "evil.example",
                                                 "good.example"]
    assert [p.name for p in target.parent.iterdir()] == ["wikitext-2"]


def test_the_split_files_mirror_checks_each_file(tmp_path, monkeypatch):
    texts = {"train": " a b \n", "valid": " c \n", "test": " d \n"}
    monkeypatch.setattr(C, "WIKITEXT2_SPLIT_SHA256",
                        {s: hashlib.sha256(t.encode()).hexdigest() for s, t in texts.items()})
    url = _splits_mirror(tmp_path / "mirror", texts)
    out = C.download_wikitext2(tmp_path / "cache" / "wikitext-2", urls=[url], retries=0)
    assert (out / "test.txt").read_text() == " d \n"
    (tmp_path / "mirror" / "test.txt").write_text(" tampered \n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        C.download_wikitext2(tmp_path / "cache2" / "wikitext-2", urls=[url], retries=0)
    assert not (tmp_path / "cache2" / "wikitext-2").exists()


def test_after_the_last_mirror_the_loader_falls_back_offline_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv(C.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def offline(url, dest, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(C, "_urlretrieve", offline)
    with pytest.warns(UserWarning, match="download failed.*any mirror"):
        corpus = C.load_wikitext2()
    assert corpus.source.startswith("synthetic")


def test_local_splits_are_checked_against_the_published_checksums(tmp_path):
    for split, text in SMALL.items():
        (tmp_path / f"{split}.txt").write_text(text)
    with pytest.warns(UserWarning, match="not the published WikiText-2"):
        corpus = C.load_wikitext2(tmp_path)
    assert "unpublished checksum" in corpus.source


def test_the_raw_variant_is_detected(tmp_path):
    for split in C.SPLITS:
        (tmp_path / f"{split}.txt").write_text(" = Valkyria Chronicles III = \n\n It's 1-2.\n")
    with pytest.warns(UserWarning, match="raw variant"):
        corpus = C.load_wikitext2(tmp_path)
    assert "raw variant" in corpus.source


def test_a_byte_order_mark_is_ignored_and_decode_errors_name_the_file(tmp_path):
    for split in C.SPLITS:
        (tmp_path / f"{split}.txt").write_bytes("\ufeff the cat <unk> \n".encode("utf-8"))
    with pytest.warns(UserWarning):
        corpus = C.load_wikitext2(tmp_path)
    assert corpus.dictionary.idx2word[0] == "the"
    (tmp_path / "valid.txt").write_bytes(b" the \xff cat \n")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"valid\.txt is not UTF-8.*byte 5"):
        C.load_wikitext2(tmp_path)


def test_an_rnn_book_data_folder_without_a_corpus_says_what_it_found(tmp_path, monkeypatch):
    (tmp_path / "data" / "wikitext-2").mkdir(parents=True)
    (tmp_path / "data" / "wikitext-2" / "train.tokens").write_text("x")
    monkeypatch.setenv(C.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(FileNotFoundError, match=r"RNN_BOOK_DATA=.*holds \['train.tokens'\]"):
        C.load_wikitext2(download=False, fallback=False)
    monkeypatch.setenv(C.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.load_wikitext2(download=False, fallback=False)


def test_archive_extraction_rejects_paths_outside_its_target(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", "x")
        zf.writestr("/abs.txt", "x")
    out = tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(bad) as zf:
        for member in ("../escape.txt", "/abs.txt"):
            with pytest.raises(ValueError, match="outside"):
                C.safe_extract(zf, {member: member}, out)
    assert not (tmp_path / "escape.txt").exists() and list(out.iterdir()) == []
