"""Limits on hostile sizes (issue 22; docs/reliability.md): an over-long line is refused before it is
read whole, and a corpus streams, so memory does not grow with the file."""

from __future__ import annotations

import json
import tracemalloc
from unittest import mock

import pytest

from greyglass.data import files
from greyglass.data.corpus import CorpusConfig, documents
from greyglass.data.statements import read_statements
from greyglass.errors import GreyglassError


def peak_bytes(fn) -> tuple[int, object]:
    """Python's peak traced allocation while `fn()` runs, and its result."""
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_a_100_mb_jsonl_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as f:
        f.write('{"statement": "ok", "label": 1}\n{"statement": "')
        for _ in range(100):
            f.write("x" * 2**20)  # 100 MiB on one line
        f.write('", "label": 1}\n')

    def read():
        with pytest.raises(GreyglassError, match=r"huge\.jsonl: line 2 is longer than 16,777,216 characters") as e:
            read_statements(path)
        return str(e.value)

    peak, message = peak_bytes(read)
    assert "GREYGLASS_MAX_TEXT_MB" in message
    assert peak < 80 * 2**20, f"peak {peak / 2**20:.0f} MiB: the line was read whole"


def test_a_txt_corpus_document_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("word " * 1000)
    with mock.patch.object(files, "MAX_TEXT_CHARS", 4000), pytest.raises(GreyglassError, match=r"book\.txt: the file is longer"):
        list(documents(CorpusConfig(corpus=str(path))))
    with mock.patch.object(files, "MAX_TEXT_CHARS", 5000):
        assert list(documents(CorpusConfig(corpus=str(path)))) == [(0, "word " * 1000)]


def _corpus(path, n_docs: int) -> int:
    doc = "lorem ipsum dolor sit amet " * 40  # ~1 KB a document
    with open(path, "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"text": f"{i} {doc}"}) + "\n")
    return path.stat().st_size


def test_a_corpus_streams_so_memory_does_not_grow_with_its_size(tmp_path):
    """Read every document of a 12 MB and a 36 MB corpus (many read buffers each): the peak is the
    shuffle buffer's (1024 documents), the same for both, and a small fraction of either file."""
    peaks, sizes = [], []
    for n_docs in (12_000, 36_000):
        path = tmp_path / f"c{n_docs}.jsonl"
        sizes.append(_corpus(path, n_docs))
        peak, count = peak_bytes(lambda: sum(1 for _ in documents(CorpusConfig(corpus=str(path)))))
        assert count == n_docs
        peaks.append(peak)
    assert sizes[1] > 30 * 2**20
    assert peaks[1] < 1.3 * peaks[0], f"peaks {peaks} grew with the corpus"
    assert peaks[1] < 0.2 * sizes[1], f"peak {peaks[1] / 2**20:.1f} MiB for a {sizes[1] / 2**20:.0f} MiB corpus"
