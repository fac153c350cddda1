"""Data: text corpora cut into token windows (and, later, labelled datasets)."""

from .corpus import DEFAULT_CORPUS, CorpusConfig, Window, corpus_files, corpus_fingerprint, documents, windows

__all__ = [
    "DEFAULT_CORPUS",
    "CorpusConfig",
    "Window",
    "corpus_files",
    "corpus_fingerprint",
    "documents",
    "windows",
]
