"""Shared fixtures: tiny random models of every family (unit) and the real default model (integration)."""

from __future__ import annotations

import os

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
