"""Applying a steering vector: the one definition of steering every entry point uses.

`steering(lm, direction, coef, sites)` adds, at every position of each site,

    delta = coef × typical_norm(site) × direction.unit()

where `direction.unit()` is the unit vector along `direction.model_space()` (the direction in
the model's own residual space; for a standardised probe that is `vector / scale`, not
`vector`) and `typical_norm(site)` is the median L2 norm of the residual stream at that site
over a fixed reference text (the first `REFERENCE_WINDOWS` articles of the bundled Wikipedia
sample, `REFERENCE_TOKENS` tokens each, the first token of each window left out because it is
an attention sink whose norm can be 100x the others). So `coef` is in units of "one typical
residual vector at this site": 0.1 is a nudge, 1 adds as much as the stream already holds,
and the same number means the same strength at any layer, for any vector and any model.

`greyglass steer` (`run_steer`), `steer-effect`, `serve-model` and the browser all call
`steering` (or `steering_delta`), so they add the same vector for the same direction and
coefficient. Generation is greedy so baseline and steered replies differ only by the vector.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from ..data.corpus import corpus_files, sink_flags
from ..data.files import jsonl_objects
from ..directions import Direction
from ..models.generate import reply
from ..models.hooks import adding, run_to_sites
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from .config import COEF_UNIT, Comparison, SteerConfig, SteerResults

REFERENCE_WINDOWS = 8  # articles of the bundled Wikipedia sample that set the typical norm
REFERENCE_TOKENS = 64  # tokens read from each

# model -> {site name: typical norm}; weak, so a freed model takes its norms with it
_TYPICAL_NORMS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, float]]" = weakref.WeakKeyDictionary()


def typical_norm(lm: LoadedModel, site: str) -> float:
    """Median L2 norm of the activations at `site` over the reference text (computed once per model and site).

    Measured on whatever hooks are active at the first call, so call it (or `steering`)
    before adding other vectors upstream of `site`.
    """
    name = lm.site(site).name
    norms = _TYPICAL_NORMS.setdefault(lm.model, {})
    if name not in norms:
        acts = run_to_sites(lm, _reference_ids(lm).to(lm.device), [name])[name]  # [W, T, d]
        kept = ~torch.tensor(sink_flags(acts.shape[1]))  # the sink's norm can be 100x the others'
        norms[name] = float(acts[:, kept].float().norm(dim=-1).median())
    return norms[name]


def _reference_ids(lm: LoadedModel) -> torch.Tensor:
    """[REFERENCE_WINDOWS, REFERENCE_TOKENS] token ids: the start of the first bundled Wikipedia articles."""
    rows = []
    for _, doc in jsonl_objects(corpus_files(None)[0]):  # None: the bundled Wikipedia sample
        ids = lm.tokenizer(doc["text"]).input_ids[:REFERENCE_TOKENS]
        if len(ids) == REFERENCE_TOKENS:  # equal lengths: one batch, no padding
            rows.append(ids)
        if len(rows) == REFERENCE_WINDOWS:
            break
    return torch.tensor(rows)


def steering_delta(lm: LoadedModel, direction: Direction, coef: float, site: str | None = None) -> torch.Tensor:
    """The vector `steering` adds at `site` (default: the direction's own): coef × typical norm × unit direction."""
    direction.check_model(lm.d_model)
    return coef * typical_norm(lm, site or direction.site) * direction.unit()


@contextmanager
def steering(lm: LoadedModel, direction: Direction, coef: float, sites: Sequence[str] | None = None) -> Iterator[None]:
    """Add `steering_delta` at each of `sites` (default: the direction's own site), every position."""
    deltas = {lm.site(s).name: steering_delta(lm, direction, coef, s) for s in sites or [direction.site]}
    with ExitStack() as stack:  # the deltas are all measured before any of them is added
        for name, delta in deltas.items():
            stack.enter_context(adding(lm, name, delta))
        yield


def compare(lm: LoadedModel, direction: Direction, coef: float, prompts: Sequence[str],
            sites: Sequence[str] | None = None, max_new_tokens: int = 40) -> list[Comparison]:
    """Baseline and steered greedy generations for each prompt."""
    rows = []
    for prompt in prompts:
        baseline = reply(lm, prompt, max_new_tokens)
        with steering(lm, direction, coef, sites):
            steered = reply(lm, prompt, max_new_tokens)
        rows.append(Comparison(prompt, baseline, steered))
    return rows


def run_steer(lm: LoadedModel, cfg: SteerConfig, out: str | Path) -> SteerResults:
    """`greyglass steer`: greedy replies to each prompt without and with the direction, into a run folder."""
    direction = Direction.load(cfg.vector)
    sites = tuple(lm.site(f"resid_post.{layer}").name for layer in cfg.layer) or (lm.site(direction.site).name,)
    write_config(out, "steer", model=lm.provenance(), config=cfg)
    rows = compare(lm, direction, cfg.coef, cfg.prompt, sites, cfg.max_new_tokens)
    norms = {s: typical_norm(lm, s) for s in sites}  # cached: measured by compare already
    results = SteerResults(direction_kind=direction.kind, sites=sites, coef_unit=COEF_UNIT, typical_norm=norms,
                           added_norm={s: abs(cfg.coef) * n for s, n in norms.items()}, generations=tuple(rows))
    write_results(out, results)
    return results
