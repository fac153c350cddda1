"""Text corpora -> fixed-length token windows.

A corpus is a `.txt` file (one document), a `.jsonl` file (one document per line, text in a
configurable field), either of them gzip-compressed, or a folder of such files (read in
sorted order). With no path, the bundled English Wikipedia sample is used.

Documents are tokenised and packed end to end (an EOS token between documents) into windows
of `context_size` tokens, each starting with BOS when the model expects one. Every token
keeps the index of the document it came from, so later stages can show its context.
Document order is shuffled with a bounded buffer, deterministically for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..config import check_choice, check_positive
from ..errors import GreyglassError
from ..fingerprint import cached_file_sha256, files_sha256, json_sha256
from .files import jsonl_objects, read_text

DEFAULT_CORPUS = "wikipedia-en-sample"
_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")
_HELDOUT_EVERY = 20
_SHUFFLE_BUFFER = 1024
_TOKENIZE_BATCH = 64


@dataclass(frozen=True)
class CorpusConfig:
    """Which text to read and how to cut it into windows."""

    corpus: str | None = None
    """A .txt or .jsonl file (optionally .gz) or a folder of them; default: the bundled English Wikipedia sample."""
    text_field: str = "text"
    """The JSON field holding the text in .jsonl files."""
    context_size: int = 128
    """Tokens per window."""
    seed: int = 0
    """Seed for the document order; the same seed gives the same windows."""
    split: Literal["all", "train", "heldout"] = "all"
    """'heldout' is every 20th document (by index), 'train' the rest: evaluate on text never trained on."""
    prepend_bos: bool | None = None
    """Start each window with BOS; default: whatever the model's tokenizer does."""

    def __post_init__(self) -> None:
        check_positive("CorpusConfig", "context_size", self.context_size)
        check_choice("CorpusConfig", "split", self.split, ("all", "train", "heldout"))
        if self.context_size < 2:
            raise GreyglassError("CorpusConfig.context_size must be at least 2")


class Window(NamedTuple):
    """One window of tokens with the document each token came from."""

    tokens: list[int]  # [context_size]
    docs: list[int]  # [context_size]
    is_sink: list[bool]  # [context_size]
    """The first position: BOS, or without one the first token, which a causal LM turns into an
    attention sink with an outlier residual (SmolLM2 at mid-depth: ~100x the norm of the rest).
    Its rows are left out of SAE training, statistics and stores, as is usual for BOS."""


def corpus_files(corpus: str | None) -> list[Path]:
    """The files a corpus spec names, in reading order."""
    if corpus is None or corpus == DEFAULT_CORPUS:
        return [Path(str(files("greyglass.data").joinpath("corpora/wikipedia_en_sample.jsonl.gz")))]
    path = Path(corpus).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
        if not found:
            raise GreyglassError(f"corpus folder {path} has no {', '.join(_SUFFIXES)} files")
        return found
    if not path.is_file():
        raise GreyglassError(f"corpus {path} does not exist; give a file or folder, or omit it "
                             "for the bundled English Wikipedia sample")
    if not path.name.endswith(_SUFFIXES):
        raise GreyglassError(f"corpus {path}: unsupported file type; use {', '.join(_SUFFIXES)}")
    return [path]


def corpus_fingerprint(cfg: CorpusConfig) -> str:
    """A hash of the corpus bytes and every setting that changes the windows."""
    data = files_sha256(corpus_files(cfg.corpus), cached_file_sha256)
    return json_sha256({"files": data, **{k: v for k, v in vars(cfg).items() if k != "corpus"}})


def documents_fingerprint(cfg: CorpusConfig) -> str:
    """A hash of what decides the documents and their indices, the corpus bytes and the text field,
    and so which documents each split holds (the seed, window size and BOS change neither)."""
    return json_sha256({"files": files_sha256(corpus_files(cfg.corpus), cached_file_sha256), "text_field": cfg.text_field})


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    if ".jsonl" not in path.name:
        yield read_text(path)  # one document, up to files.MAX_TEXT_CHARS
        return
    for lineno, row in jsonl_objects(path):
        if not isinstance(row.get(text_field), str):
            raise GreyglassError(f"{path} line {lineno}: no text field {text_field!r} (found: {', '.join(row)}); "
                                 "choose it with --text-field")
        yield row[text_field]


def documents(cfg: CorpusConfig) -> Iterator[tuple[int, str]]:
    """(document index, text) in the seeded order, restricted to the configured split."""
    rng = random.Random(cfg.seed)
    buffer: list[tuple[int, str]] = []
    index = 0
    for path in corpus_files(cfg.corpus):
        for text in _file_documents(path, cfg.text_field):
            heldout = index % _HELDOUT_EVERY == _HELDOUT_EVERY - 1
            if cfg.split == "all" or (cfg.split == "heldout") == heldout:
                buffer.append((index, text))
            index += 1
            if len(buffer) >= _SHUFFLE_BUFFER:
                yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def windows(tokenizer: Any, cfg: CorpusConfig, default_bos: bool) -> Iterator[Window]:
    """Pack the corpus's documents into windows of `cfg.context_size` tokens."""
    bos = default_bos if cfg.prepend_bos is None else cfg.prepend_bos
    if bos and tokenizer.bos_token_id is None:
        raise GreyglassError("prepend_bos is set but this tokenizer has no BOS token")
    body = cfg.context_size - int(bos)
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    tokens: list[int] = []
    docs: list[int] = []
    for doc_ids, texts in _batched(documents(cfg), _TOKENIZE_BATCH):
        encoded = tokenizer(texts, add_special_tokens=False).input_ids
        for doc, ids in zip(doc_ids, encoded):
            tokens += ids + sep
            docs += [doc] * (len(ids) + len(sep))
        while len(tokens) >= body:
            chunk, chunk_docs = tokens[:body], docs[:body]
            del tokens[:body], docs[:body]
            if bos:
                chunk, chunk_docs = [tokenizer.bos_token_id, *chunk], [chunk_docs[0], *chunk_docs]
            yield Window(chunk, chunk_docs, sink_flags(len(chunk)))


def sink_flags(length: int) -> list[bool]:
    """Which positions of a sequence of `length` tokens are the attention sink: the first one,
    BOS or (without BOS) the first token. Every stage that feeds activations to an SAE or pools
    them leaves it out (see `Window.is_sink`)."""
    return [True] + [False] * (length - 1)


def _batched(items: Iterator[tuple[int, str]], n: int) -> Iterator[tuple[list[int], list[str]]]:
    batch: list[tuple[int, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield [i for i, _ in batch], [t for _, t in batch]
            batch = []
    if batch:
        yield [i for i, _ in batch], [t for _, t in batch]
