"""Limits on hostile sizes (issue 22; docs/reliability.md): an over-long line is refused before it is
read whole, and a corpus streams, so memory does not grow with the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
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


_MEASURE = r"""
import itertools, json, resource, sys
from greyglass.data.corpus import CorpusConfig, corpus_fingerprint, documents, windows
from greyglass.errors import GreyglassError
from greyglass.models.tiny import byte_tokenizer

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

corpus, long_line = sys.argv[1:]
cfg = CorpusConfig(corpus=corpus, context_size=64)
tok = byte_tokenizer()
first = sum(1 for _ in itertools.islice(windows(tok, cfg, True), 10))  # warm up: imports, tokenizer, buffers
start = peak_mib()
corpus_fingerprint(cfg)                           # capture hashes the corpus first, for its manifest
n_docs = sum(1 for _ in documents(cfg))            # every document, as capture's windows read them
n_windows = sum(1 for _ in itertools.islice(windows(tok, cfg, True), 5000))  # capture stops at its --tokens
streamed = peak_mib()
try:
    list(documents(CorpusConfig(corpus=long_line)))
    error = None
except GreyglassError as e:
    error = str(e)
print(json.dumps({"n_docs": n_docs, "n_windows": n_windows, "streamed_growth_mib": streamed - start,
                  "long_line_growth_mib": peak_mib() - streamed, "error": error}))
"""


@pytest.mark.slow  # writes 300 MiB and reads 200 MiB of it through JSON
def test_a_200_mb_corpus_streams_and_a_100_mb_line_is_refused_in_bounded_memory(tmp_path):
    """The process's peak resident memory (not only Python's allocations) while capture's corpus path
    (fingerprint, every document, the first windows) reads a 200 MiB corpus, then while a 100 MiB
    JSONL line is refused: both grow far less than the file."""
    corpus = tmp_path / "big.jsonl"
    doc = "lorem ipsum dolor sit amet " * 40  # ~1 KB a document
    with open(corpus, "w") as f:
        i = 0
        while f.tell() < 200 * 2**20:
            f.write("".join(json.dumps({"text": f"{i + j} {doc}"}) + "\n" for j in range(1000)))
            i += 1000
    long_line = tmp_path / "long.jsonl"
    with open(long_line, "w") as f:
        f.write('{"text": "ok"}\n{"text": "')
        for _ in range(100):
            f.write("x" * 2**20)
        f.write('"}\n')
    env = {**os.environ, "PYTHONPATH": str(Path(files.__file__).parents[2]),
           "GREYGLASS_CACHE": str(tmp_path / "cache")}
    try:
        run = subprocess.run([sys.executable, "-c", _MEASURE, str(corpus), str(long_line)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        got = json.loads(run.stdout.splitlines()[-1])
        size_mib = corpus.stat().st_size / 2**20
    finally:
        corpus.unlink()
        long_line.unlink()
    print(got)
    assert size_mib >= 200 and got["n_docs"] > 190_000 and got["n_windows"] == 5000
    assert got["streamed_growth_mib"] < 0.05 * size_mib, f"{got['streamed_growth_mib']:.0f} MiB to read {size_mib:.0f} MiB"
    assert "long.jsonl: line 2 is longer than 16,777,216 characters" in got["error"]
    assert got["long_line_growth_mib"] < 64, f"{got['long_line_growth_mib']:.0f} MiB to refuse a 100 MiB line"
