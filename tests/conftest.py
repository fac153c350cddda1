"""Shared fixtures: tiny random models of every family (unit) and the real default model (integration)."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_llama():
    from greyglass.models import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="session")
def smollm():
    """The real embedded default model (SmolLM2-135M-Instruct), loaded once per session."""
    from greyglass.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture
def write_lines(tmp_path):
    """Write lines to a file under tmp_path and return its path."""

    def write(name: str, lines: list[str]):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write



@contextmanager
def _cache_deprecations():
    """Collects what transformers says, inside the block, about the old `past_key_values` name.

    The keyword is announced with a FutureWarning (which pyproject's pytest settings filter
    out, so here every filter is open); reading `.past_key_values` off an output is announced
    once per process through transformers' logger, so that once-cache is cleared first.
    """
    from transformers.utils import logging as hf_logging

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, logger = Collect(), hf_logging.get_logger("transformers")
    hf_logging.warning_once.cache_clear()
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield seen
        seen += [str(w.message) for w in caught]
    finally:
        logger.removeHandler(handler)
    seen[:] = [m for m in seen if "past_key_values" in m]


@pytest.fixture
def cache_deprecations():
    """`with cache_deprecations() as seen: ...`, then `seen` holds transformers' messages about `past_key_values`."""
    return _cache_deprecations
