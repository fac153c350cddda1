"""Running an eval into a run folder: sample, ask, score, summarise.

The folder holds `config.json` (model or server, eval settings, prompt format, seed, data
fingerprint), `items.jsonl` (per item: the prompt as sent, each answer's log-probability,
the chosen answer, the scores, the question's cluster key and the answer order) and
`results.json` (metrics with 95% CIs that resample clusters). With `both_orders` each
two-answer item is also asked with its answers' texts swapped between the letters, and the
summaries headline the average of both orders.

Scored items are appended to `items.partial.jsonl` after every batch, so Ctrl-C or a crash
loses at most one batch and `resume=True` continues; the finished file is renamed to
`items.jsonl` and only then is `results.json` written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ..atomic import write_text
from ..config import check_choice, check_positive
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..runs import CONFIG, write_config, write_results
from .datasets import load_dataset
from .formats import Prompt, PromptFormat
from .items import Item, with_answers_swapped
from .local import Request, Scored
from .scorers import SCORERS, combine_orders, probe_auroc
from .tasks import EVALS

PARTIAL = "items.partial.jsonl"
ITEMS = "items.jsonl"


class StaleRunError(GreyglassError):
    """Resuming a run folder that was started with other items, prompts or model."""


class Backend(Protocol):
    """Anything that scores answers after prompts: the local model or an HTTP server."""

    tokenizer: Any
    """Renders chat prompts (None when the backend has no tokenizer: chat format is then unavailable)."""

    def score(self, requests: list[Request]) -> list[Scored]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EvalConfig:
    """Which eval, on which items, in what batches."""

    eval: str = "sycophancy"
    """sycophancy, advanced-ai-risk, or behaviour (with --dataset)."""
    datasets: tuple[str, ...] = ()
    """Bundled dataset names or .jsonl/.json files (default: the eval's own datasets)."""
    limit: int | None = None
    """Ask at most this many items, sampled stratified by dataset and matching answer."""
    seed: int = 0
    """Seed for sampling and bootstrap intervals."""
    batch_size: int = 8
    """Prompts per forward pass (local) or requests in flight (HTTP)."""
    both_orders: bool = True
    """Also ask each two-answer item with the answers swapped between (A) and (B), and headline the average of both
    orders (a model's lean towards a letter is not a behaviour); --no-both-orders asks the file's order only."""

    def __post_init__(self):
        check_choice("EvalConfig", "eval", self.eval, tuple(EVALS))
        check_positive("EvalConfig", "limit", self.limit)
        check_positive("EvalConfig", "batch_size", self.batch_size)
        if self.eval == "behaviour" and not self.datasets:
            raise GreyglassError("EvalConfig.datasets: the behaviour eval needs at least one --dataset")


def stratified_sample(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """At most `limit` items: shared equally between datasets (so each gets its own estimate),
    and within a dataset allocated to each matching answer (A, B, ...) in proportion to its size."""
    if limit is None or limit >= len(items):
        return items
    datasets: dict[str, list[Item]] = {}
    for it in items:
        datasets.setdefault(it.metadata["dataset"], []).append(it)
    quotas = _allocate([len(v) for v in datasets.values()], limit, equal=True)
    rng = np.random.default_rng(seed)
    chosen = set()
    for group, quota in zip(datasets.values(), quotas):
        strata: dict[str, list[Item]] = {}
        for it in group:
            strata.setdefault(it.answer_matching_behavior, []).append(it)
        keys = sorted(strata)
        for key, n in zip(keys, _allocate([len(strata[k]) for k in keys], quota, equal=False)):
            chosen.update(strata[key][i].id for i in rng.permutation(len(strata[key]))[:n])
    return [it for it in items if it.id in chosen]


def _allocate(sizes: list[int], total: int, equal: bool) -> list[int]:
    """Split `total` over groups of `sizes` (equally or proportionally), never above a size."""
    sizes_arr = np.array(sizes)
    weights = np.minimum(sizes_arr, 1) if equal else sizes_arr
    take = np.zeros(len(sizes), dtype=int)
    while take.sum() < total and (take < sizes_arr).any():
        open_ = take < sizes_arr
        exact = (total - take.sum()) * weights * open_ / (weights * open_).sum()
        add = np.minimum(np.floor(exact).astype(int), sizes_arr - take)
        if add.sum() == 0:  # hand out the remainder one at a time, largest share first
            add[np.argmax(exact)] = 1
        take += add
    return take.tolist()


def eval_items(cfg: EvalConfig) -> list[Item]:
    """The eval's items after sampling, with derived items (e.g. no-bio controls) added."""
    ev = EVALS[cfg.eval]
    items = [it for name in (cfg.datasets or ev.datasets) for it in load_dataset(name)]
    expanded = ev.expand(stratified_sample(items, cfg.limit, cfg.seed))
    return in_both_orders(expanded) if cfg.both_orders else expanded


def in_both_orders(items: list[Item]) -> list[Item]:
    """Each item followed by its answers-swapped twin, where its answers can be swapped."""
    out = []
    for it in items:
        swapped = with_answers_swapped(it)
        out += [it] if swapped is None else [it, swapped]
    return out


def run_eval(backend: Backend, cfg: EvalConfig, fmt: PromptFormat | None, out: str | Path,
             resume: bool = False, progress: bool = True, probe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `cfg.eval` with `backend`, write the run folder `out`, return the results."""
    out = Path(out)
    ev = EVALS[cfg.eval]
    fmt = fmt or PromptFormat()
    if fmt.answer_prefix is None:
        fmt = replace(fmt, answer_prefix=ev.answer_prefix)
    items = eval_items(cfg)
    prompts = {it.id: fmt.render(it.prompt, backend.tokenizer) for it in items}
    if (out / ITEMS).exists() and not resume:
        raise GreyglassError(f"{out} already holds a finished eval; choose another --out")
    fingerprint = json_sha256([[it.id, it.prompt, it.choices, it.answer_matching_behavior, prompts[it.id]]
                               for it in items])
    before = json.loads((out / CONFIG).read_text()) if resume and (out / CONFIG).exists() else None
    if before and (before.get("data_fingerprint"), before.get("backend")) != (fingerprint, backend.describe()):
        raise StaleRunError(f"{out} was started with other items, prompt format or model; "
                             "resume with the same settings, or choose another --out")
    write_config(out, "eval", eval=cfg, format=fmt, backend=backend.describe(), probe=probe,
                 data_fingerprint=fingerprint, n_items=len(items))
    rows = read_partial(out / PARTIAL) if resume else {}
    write_text(out / PARTIAL, "".join(json.dumps(r) + "\n" for r in rows.values()))
    todo = _pending_requests(items, prompts, rows)
    score = SCORERS[ev.scorer]
    bar = tqdm(total=len(items), initial=len(rows), desc=f"eval {cfg.eval}", unit="item", disable=not progress)
    with open(out / PARTIAL, "a") as partial:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            results = backend.score([req for req, _ in batch])
            for (req, group), scored in zip(batch, results):
                for it in group:
                    row = _row(it, prompts[it.id], scored, score(it, scored.logprobs))
                    rows[it.id] = row
                    partial.write(json.dumps(row) + "\n")
                bar.update(len(group))
            partial.flush()
    bar.close()
    ordered = [rows[it.id] for it in items]
    (out / PARTIAL).replace(out / ITEMS)
    results = {"eval": cfg.eval, "about": ev.about, "n_items": len(ordered), **ev.summarise(combine_orders(ordered))}
    if probe is not None:
        results["probe"] = {**probe, **probe_auroc(ordered)}
    write_results(out, results)
    return results


def _pending_requests(items: list[Item], prompts: dict[str, Prompt], done: dict[str, Any]):
    """Unscored items grouped by identical request (same prompt and answers), shortest prompts first."""
    groups: dict[Request, list[Item]] = {}
    for it in items:
        if it.id not in done:
            groups.setdefault(Request(prompts[it.id], it.choices), []).append(it)
    return sorted(groups.items(), key=lambda kv: len(kv[0].prompt.text))


def _row(item: Item, prompt: Prompt, scored: Scored, scores: dict[str, Any]) -> dict[str, Any]:
    return {"id": item.id, "base_id": item.metadata.get("base_id", item.id), "dataset": item.metadata["dataset"],
            "condition": item.metadata.get("condition", "default"), "source": item.metadata.get("source"),
            "cluster": item.metadata.get("cluster", item.id), "order": item.metadata.get("order", "original"),
            "unswapped_id": item.metadata.get("unswapped_id", item.id),
            "prompt": prompt.text, "choices": list(item.choices),
            "answer_matching_behavior": item.answer_matching_behavior,
            "logprobs": scored.logprobs, **scores, "probe": scored.probe}


def read_partial(path: Path) -> dict[str, Any]:
    """Rows already scored; a line cut off by a crash is dropped (its item is asked again)."""
    rows: dict[str, Any] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["id"]] = row
    return rows
