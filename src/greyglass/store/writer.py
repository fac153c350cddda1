"""`capture`: run a model over a corpus and write the activations at some sites to disk.

The model runs over the corpus's windows (`activations.model_windows`: the forward pass stops
after the deepest requested site, under `inference_mode`). Rows for
each window's first position (BOS, or the attention-sink token where there is no BOS) and outlier
rows (`activations.without_outliers`) are dropped unless `keep_bos`. A shard is written (atomically) after the batch
that fills it, so shards always hold whole batches; an interrupted capture resumes after
its last complete shard and, because the batches are the same, writes identical shards.
`run_capture` is the `capture` job: the store plus its run folder's config and results.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..activations import Windows, model_windows
from ..atomic import atomic_path, write_json
from ..clock import iso_seconds
from ..data.corpus import CorpusConfig, corpus_fingerprint, documents_fingerprint
from ..errors import GreyglassError
from ..models.dtypes import torch_dtype
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from ..version import __version__
from .config import CaptureConfig, CaptureResults, CaptureRunConfig
from .manifest import FORMAT, MANIFEST, RESUME_KEYS, read_manifest, shard_name


def capture(
    lm: LoadedModel,
    cfg: CaptureConfig,
    corpus: CorpusConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Capture activations into the store folder `out`; return its path."""
    out = Path(out)
    sites = [lm.site(s).name for s in cfg.sites]
    batch_windows = max(1, cfg.batch_tokens // corpus.context_size)
    fresh = _new_manifest(lm, cfg, corpus, sites, batch_windows)
    manifest = _start_or_resume(out, fresh, resume)
    if manifest["complete"]:
        return out
    bar = tqdm(total=cfg.tokens, initial=manifest["n_tokens"], unit="tok", unit_scale=True,
               desc=f"capture {', '.join(sites)}", disable=not progress, smoothing=0.1)
    pending: dict[str, list[torch.Tensor]] = {k: [] for k in [*sites, "token_ids", "doc", "pos"]}
    pending_windows = 0
    remaining = cfg.tokens - manifest["n_tokens"]
    for batch in model_windows(lm, sites, corpus, batch_windows, skip=manifest["windows_done"]):
        rows = _rows(batch, cfg)
        rows = {k: v[:remaining] for k, v in rows.items()}
        for k, v in rows.items():
            pending[k].append(v)
        pending_windows += len(batch.tokens)
        n = len(rows["token_ids"])
        remaining -= n
        bar.update(n)
        if remaining <= 0 or sum(len(t) for t in pending["token_ids"]) >= cfg.shard_tokens:
            _write_shard(out, manifest, pending, pending_windows)
            pending = {k: [] for k in pending}
            pending_windows = 0
        if remaining <= 0:
            break
    if pending["token_ids"]:
        _write_shard(out, manifest, pending, pending_windows)
    bar.close()
    if manifest["n_tokens"] == 0:
        _remove_empty_store(out)
        raise GreyglassError(f"nothing to capture: {_corpus_name(corpus)} (split {corpus.split}) gave no window of "
                             f"{corpus.context_size} tokens; give a corpus with more text, another --split, or a "
                             "smaller --context-size")
    manifest["complete"] = True
    manifest["finished"] = iso_seconds()
    write_json(out / MANIFEST, manifest)
    return out


def run_capture(lm: LoadedModel, cfg: CaptureRunConfig, out: str | Path, resume: bool = False,
                progress: bool = True) -> CaptureResults:
    """`greyglass capture`: the store, then its `config.json` and `results.json` (after the capture, which
    needs a new or empty folder or, resuming, its own)."""
    start = time.perf_counter()
    out = capture(lm, cfg.capture, cfg.corpus, out, resume=resume, progress=progress)
    manifest = read_manifest(out)
    results = CaptureResults(
        n_tokens=manifest["n_tokens"], tokens_requested=manifest["tokens_requested"], sites=tuple(manifest["sites"]),
        shards=len(manifest["shards"]), megabytes=round(sum(s["bytes"] for s in manifest["shards"]) / 2**20, 2),
        corpus_ran_out=manifest["n_tokens"] < manifest["tokens_requested"],
        seconds=round(time.perf_counter() - start, 2))
    write_config(out, "capture", model=lm.provenance(), config=cfg,
                 corpus_fingerprint=manifest["corpus"]["fingerprint"])
    write_results(out, results)
    return results


def _corpus_name(corpus: CorpusConfig) -> str:
    return f"corpus {corpus.corpus}" if corpus.corpus else "the bundled English Wikipedia sample"


def _remove_empty_store(out: Path) -> None:
    """Undo the start of a capture that found no text, so the same --out can be used again."""
    (out / MANIFEST).unlink(missing_ok=True)
    if not any(out.iterdir()):
        out.rmdir()


def _rows(batch: Windows, cfg: CaptureConfig) -> dict[str, torch.Tensor]:
    """The rows a store keeps of a batch of windows: every site, token ids, documents, positions."""
    keep = batch.mask if not cfg.keep_bos else torch.ones_like(batch.mask)  # [B, T]
    rows = {s: a[keep].to(torch_dtype(cfg.store_dtype)) for s, a in batch.acts.items()}  # [n, d]
    rows["token_ids"] = batch.tokens[keep].to(torch.int32)
    rows["doc"] = batch.docs[keep].to(torch.int32)
    rows["pos"] = torch.arange(keep.shape[1]).expand_as(keep)[keep].to(torch.int32)
    return rows


def _write_shard(out: Path, manifest: dict, pending: dict[str, list[torch.Tensor]], n_windows: int) -> None:
    tensors = {k: torch.cat(v).contiguous() for k, v in pending.items()}
    name = shard_name(len(manifest["shards"]))
    with atomic_path(out / name) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        size = tmp.stat().st_size
    rows = len(tensors["token_ids"])
    manifest["shards"].append({"file": name, "rows": rows, "bytes": size})
    manifest["n_tokens"] += rows
    manifest["windows_done"] += n_windows
    write_json(out / MANIFEST, manifest)


def _new_manifest(lm: LoadedModel, cfg: CaptureConfig, corpus: CorpusConfig, sites: list[str], batch_windows: int) -> dict:
    return {
        "format": FORMAT,
        "version": 1,
        "greyglass_version": __version__,
        "created": iso_seconds(),
        "model": lm.provenance(),
        "sites": sites,
        "d_model": lm.d_model,
        "dtype": cfg.store_dtype,
        "context_size": corpus.context_size,
        "corpus": {**asdict(corpus), "fingerprint": corpus_fingerprint(corpus),
                   "documents": documents_fingerprint(corpus)},  # proves which documents an SAE trained on
        "tokens_requested": cfg.tokens,
        "batch_windows": batch_windows,
        "shard_tokens": cfg.shard_tokens,
        "keep_bos": cfg.keep_bos,
        "n_tokens": 0,
        "windows_done": 0,
        "complete": False,
        "shards": [],
    }


def _start_or_resume(out: Path, fresh: dict, resume: bool) -> dict:
    if not (out / MANIFEST).exists():
        if out.exists() and any(out.iterdir()):
            raise GreyglassError(f"{out} exists and is not an activation store; choose an empty or new --out")
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / MANIFEST, fresh)
        return fresh
    if not resume:
        raise GreyglassError(f"{out} already holds an activation store; pass --resume to continue it, "
                             "or choose another --out")
    old = read_manifest(out)
    mismatched = [k for k in RESUME_KEYS if old.get(k) != fresh[k]]
    if old["model"]["sha256"] != fresh["model"]["sha256"]:
        mismatched.append("model")
    if old["corpus"]["fingerprint"] != fresh["corpus"]["fingerprint"]:
        mismatched.append("corpus")
    if mismatched:
        raise GreyglassError(f"cannot resume {out}: {', '.join(mismatched)} differ from the original "
                             "capture; use the same settings or a new --out")
    _remove_unlisted_shards(out, old)
    if fresh["tokens_requested"] > old["n_tokens"]:
        old["complete"] = False
    old["tokens_requested"] = fresh["tokens_requested"]
    return old


def _remove_unlisted_shards(out: Path, manifest: dict) -> None:
    """Delete temporaries and shards a killed run wrote but never recorded."""
    listed = {s["file"] for s in manifest["shards"]}
    for p in out.iterdir():
        if p.name.endswith(".tmp") or (re.fullmatch(r"shard_\d+\.safetensors", p.name) and p.name not in listed):
            p.unlink()
