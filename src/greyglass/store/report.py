"""The report section (and terminal summary) of a capture: what was recorded, where, from which text."""

from __future__ import annotations

from ..job import RunInfo
from ..report.section import Section, provenance
from .config import CaptureResults, CaptureRunConfig


def capture_section(res: CaptureResults, cfg: CaptureRunConfig, run: RunInfo) -> Section:
    model = run.meta.get("model") if isinstance(run.meta.get("model"), dict) else {}  # config.json as written
    corpus = cfg.corpus
    text = corpus.corpus or "the bundled English Wikipedia sample"
    headline = (f"We recorded the internal state of {model.get('name', 'the model')} at {', '.join(res.sites)} "
                f"for {res.n_tokens:,} tokens of {text}.")
    if res.corpus_ran_out:
        headline += (f" The corpus ran out before the {res.tokens_requested:,} tokens asked for; give a larger "
                     "corpus for more.")
    return Section(
        kind="activations",
        title="What we recorded inside the model",
        headline=headline,
        numbers=[("tokens recorded", f"{res.n_tokens:,} of {res.tokens_requested:,} requested"),
                 ("where", ", ".join(res.sites)),
                 ("model size", f"{model.get('n_layers')} layers, {model.get('d_model')} numbers per token per layer"),
                 ("text", f"{text} (split {corpus.split}, seed {corpus.seed}, windows of {corpus.context_size} tokens)"),
                 ("first position of each window (BOS or sink) and outlier rows",
                  "kept" if cfg.capture.keep_bos else "left out"),
                 ("storage", f"{res.shards} shards, {res.megabytes:.1f} MiB, {cfg.capture.store_dtype}")],
        shows=["Which model, which layer and which text every later analysis on this recording rests on."],
        does_not_show=["Anything about what the model represents: that needs the analyses below.",
                       "How the model behaves on other kinds of text than the one recorded."],
        provenance=provenance(run.meta, str(run.folder)),
    )
