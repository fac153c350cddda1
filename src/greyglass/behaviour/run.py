"""Running an eval into a run folder: sample, ask, score, summarise.

The folder holds `config.json` (model or server, the `EvalConfig` with the prompt format
actually used, seed, data fingerprint), `items.jsonl` (per item: the prompt as sent, each answer's log-probability,
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
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ..atomic import write_text
from ..directions import Direction
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..json_files import read_json_object
from ..models.lm import LoadedModel
from ..records import to_json
from ..runs import CONFIG, write_config, write_results
from .config import EvalConfig
from .datasets import load_dataset
from .formats import Prompt
from .items import Item, with_answers_swapped
from .local import AnswerRequest, AnswerScores, LocalBackend
from .remote import HttpBackend
from .results import EvalResults, ProbeResult
from .scorers import SCORERS, combine_orders, probe_auroc
from .tasks import EVALS

PARTIAL = "items.partial.jsonl"
ITEMS = "items.jsonl"


class Backend(Protocol):
    """Anything that scores answers after prompts: the local model or an HTTP server."""

    tokenizer: Any
    """Renders chat prompts (None when the backend has no tokenizer: chat format is then unavailable)."""

    default_batch_size: int
    """Requests per `score` call when --batch-size is not given."""

    def score(self, requests: list[AnswerRequest]) -> list[AnswerScores]: ...

    def provenance(self) -> dict[str, Any]:
        """What answers, for config.json and the resume check: `model` (provenance) and, with a probe,
        `probe` (its site and kind)."""
        ...


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


def backend_for(lm: LoadedModel | None, cfg: EvalConfig, out: str | Path) -> Backend:
    """The server of `cfg.server` (its responses cached in the run folder unless `cache` says where),
    or the local model, reading `cfg.probe` at the answer position."""
    if cfg.server is not None:
        return HttpBackend(replace(cfg.server, cache=cfg.server.cache or str(Path(out) / "responses.jsonl")))
    if lm is None:
        raise GreyglassError("the eval needs a model or a server (--url)")
    return LocalBackend(lm, probe=Direction.load(cfg.probe) if cfg.probe else None)


def with_answer_prefix(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with the eval's own answer prefix where it gives none: what config.json records as used."""
    if cfg.prompt.answer_prefix is not None:
        return cfg
    return replace(cfg, prompt=replace(cfg.prompt, answer_prefix=EVALS[cfg.eval].answer_prefix))


def run_eval(backend: Backend, cfg: EvalConfig, out: str | Path, resume: bool = False,
             progress: bool = True) -> EvalResults:
    """Run `cfg.eval` with `backend`, write the run folder `out`, return the results."""
    out = Path(out)
    ev = EVALS[cfg.eval]
    cfg = with_answer_prefix(cfg)
    if cfg.batch_size is None:  # config.json records the batch size actually used
        cfg = replace(cfg, batch_size=backend.default_batch_size)
    items = eval_items(cfg)
    prompts = {it.id: cfg.prompt.render(it.prompt, backend.tokenizer) for it in items}
    fingerprint = json_sha256([[it.id, it.prompt, it.choices, it.answer_matching_behavior, prompts[it.id]]
                               for it in items])
    described = backend.provenance()
    rows = resumed_rows(out, resume, {"data_fingerprint": fingerprint, "backend": described})
    write_config(out, "eval", model=described["model"], config=cfg, backend=described,
                 data_fingerprint=fingerprint, n_items=len(items))
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
    probe = described.get("probe")
    results = EvalResults(cfg.eval, ev.about, len(ordered), **ev.summarise(combine_orders(ordered))._asdict(),
                          probe=ProbeResult(path=cfg.probe, **probe, **probe_auroc(ordered)) if probe else None)
    write_results(out, results)
    return results


def _pending_requests(items: list[Item], prompts: dict[str, Prompt], done: dict[str, Any]):
    """Unscored items grouped by identical request (same prompt and answers), shortest prompts first."""
    groups: dict[AnswerRequest, list[Item]] = {}
    for it in items:
        if it.id not in done:
            groups.setdefault(AnswerRequest(prompts[it.id], it.choices), []).append(it)
    return sorted(groups.items(), key=lambda kv: len(kv[0].prompt.text))


def _row(item: Item, prompt: Prompt, scored: AnswerScores, scores: dict[str, Any]) -> dict[str, Any]:
    return {"id": item.id, "base_id": item.metadata.get("base_id", item.id), "dataset": item.metadata["dataset"],
            "condition": item.metadata.get("condition", "default"), "source": item.metadata.get("source"),
            "cluster": item.metadata.get("cluster", item.id), "order": item.metadata.get("order", "original"),
            "unswapped_id": item.metadata.get("unswapped_id", item.id),
            "prompt": prompt.text, "choices": list(item.choices),
            "answer_matching_behavior": item.answer_matching_behavior,
            "logprobs": scored.logprobs, **scores, "probe": scored.probe}


def resumed_rows(out: Path, resume: bool, same: dict[str, Any]) -> dict[str, Any]:
    """The rows a run keeps (none unless resuming), by id, with the partial file rewritten to hold just
    them. Refuses to start over a finished run without `resume`, and to resume a run whose config.json
    differs in a field of `same` (what decides the rows: items, model, settings)."""
    if (out / ITEMS).exists() and not resume:
        raise GreyglassError(f"{out} already holds a finished eval; choose another --out")
    if resume:
        check_same_settings(out, same)
    rows = read_partial(out / PARTIAL) if resume else {}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / PARTIAL, "".join(json.dumps(r) + "\n" for r in rows.values()))
    return rows


def check_same_settings(out: Path, same: dict[str, Any]) -> None:
    """Refuse to resume a run whose config.json differs in a field of `same` (what decides its rows: items,
    model, settings): its rows would not fit the ones still to come."""
    before = read_json_object(out / CONFIG) if (out / CONFIG).exists() else {}
    changed = [k for k, v in same.items() if k in before and before[k] != json.loads(json.dumps(to_json(v)))]
    if changed:
        raise GreyglassError(f"{out} was started with other settings ({', '.join(changed)} in its {CONFIG}); "
                             "resume with the same settings, or choose another --out")


def read_partial(path: Path) -> dict[str, Any]:
    """Rows already scored; a line cut off by a crash (or otherwise not a row) is dropped, and its item
    asked again."""
    rows: dict[str, Any] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                rows[row["id"]] = row
    return rows
