"""Section builders, one per kind of run folder. Each states only what its numbers support."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .build import builder
from .section import Section, provenance


@builder("capture")
def capture_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    model = config.get("model", {})
    sites = results.get("sites", [])
    corpus = config.get("corpus", {}) or {}
    text = corpus.get("corpus") or "the bundled English Wikipedia sample"
    n = int(results.get("n_tokens", 0))
    return Section(
        kind="activations",
        title="What we recorded inside the model",
        headline=f"We recorded the internal state of {model.get('name', 'the model')} at "
        f"{', '.join(sites) or 'no site'} for {n:,} tokens of {text}.",
        numbers=[("tokens recorded", f"{n:,}"), ("where", ", ".join(sites)),
                 ("model size", f"{model.get('n_layers')} layers, {model.get('d_model')} numbers per token per layer"),
                 ("text", f"{text} (split: {corpus.get('split', 'all')})")],
        shows=["Which model, which layer and which text every later analysis on this recording rests on."],
        does_not_show=["Anything about what the model represents: that needs the analyses below.",
                       "How the model behaves on other kinds of text than the one recorded."],
        provenance=provenance(config, str(folder)),
    )
