"""Steering vectors: from contrast pairs (CAA mean difference or PCA), a saved probe, or an SAE latent.

Every vector is a `Direction` at a residual-stream site, so it saves, loads and steers the same
way whatever made it:

- `contrast_vector(lm, pairs, layer, method)`: the residual stream at each text's last token,
  positive minus negative. `mean_diff` is the mean of the differences (Rimsky et al.'s CAA);
  `pca` is the first principal component of the differences (repeng), scaled to the mean
  projected difference so coefficient 1 means "one typical pair's worth".
- `caa_items(behavior)`, `caa_pairs(lm, items)`: the bundled CAA A/B items as contrast pairs,
  the prompt followed by "(" and the behaviour-matching letter versus the other letter; the
  vector is read at the letter.
- a saved probe: `Direction.load(folder)`; steer along `direction.model_space()`.
- `sae_latent_direction(decoder_row, site, latent)`: the hook for SAE latents, a decoder row
  `W_dec[latent]  # [d_model]` turned into a Direction.

`run_vector` is `greyglass steer-vector`: the direction saved in a run folder, where
`steer --vector` and `steer-effect --vector` read it, and with `--export-gguf` also a llama.cpp
control vector (`control_vector.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..config import check_choice
from ..data.files import bundled_path, jsonl_objects, open_text
from ..directions import Direction
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..models.generate import user_prompt
from ..models.lm import LoadedModel
from ..models.sites import layer_sites
from ..models.text_features import text_features
from ..probes.fit import fit_probe
from ..runs import write_config, write_results
from .apply import typical_norm
from .config import CAA_BEHAVIORS, Method, VectorConfig, VectorResults
from .control_vector import write_control_vector


class ContrastPair(NamedTuple):
    """Two texts that differ only in the behaviour to steer: `positive` shows it, `negative` does not."""

    positive: str
    negative: str


def contrast_vector(lm: LoadedModel, pairs: Sequence[ContrastPair], layer: int, method: Method = "mean_diff",
                    batch_size: int = 16, progress: bool = False) -> Direction:
    """A steering vector at `blocks.{layer}.hook_resid_post` from contrast pairs."""
    if len(pairs) < 2:
        raise GreyglassError(f"a steering vector needs at least 2 contrast pairs, got {len(pairs)}")
    if method not in ("mean_diff", "pca"):
        raise GreyglassError(f"unknown steering-vector method {method!r}; choose mean_diff or pca")
    site = layer_sites([layer])[0]
    texts = [p.positive for p in pairs] + [p.negative for p in pairs]
    x = text_features(lm, texts, [layer], "last", batch_size, progress)[:, 0]  # [2n, d]
    y = torch.cat([torch.ones(len(pairs)), torch.zeros(len(pairs))]).long()
    groups = [str(i) for i in range(len(pairs))] * 2
    # The mass-mean probe's vector is exactly the mean positive-minus-negative difference.
    probe = fit_probe("mass_mean" if method == "mean_diff" else "pca", x, y, site, groups)
    vector = probe.vector
    if method == "pca":
        diffs = x[: len(pairs)] - x[len(pairs):]  # [n, d]
        vector = vector * (diffs @ vector).mean()
    return Direction(vector, site, method, metadata={"model": lm.name, "model_sha256": lm.sha256, "layer": layer,
                                                     "n_pairs": len(pairs), "norm": float(vector.norm())})


def caa_items(behavior: str) -> list[dict]:
    """The CAA `generate` items of a behaviour that have exactly the answers (A) and (B)."""
    check_choice("caa", "behavior", behavior, CAA_BEHAVIORS)
    with open_text(bundled_path(f"caa/generate/{behavior}/generate_dataset.json")) as f:
        items = json.load(f)
    return [it for it in items
            if {it["answer_matching_behavior"].strip(), it["answer_not_matching_behavior"].strip()} == {"(A)", "(B)"}]


def caa_pairs(lm: LoadedModel, items: Sequence[dict]) -> list[ContrastPair]:
    """CAA A/B items -> pairs of (prompt + '(' + matching letter, prompt + '(' + other letter)."""
    out = []
    for item in items:
        prompt = ab_prompt(lm, item["question"])
        out.append(ContrastPair(prompt + item["answer_matching_behavior"].strip()[:2],
                                prompt + item["answer_not_matching_behavior"].strip()[:2]))
    return out


def read_pairs(path: str | Path) -> list[ContrastPair]:
    """Contrast pairs from a JSONL file of {"positive": ..., "negative": ...} objects; errors name the line."""
    pairs = []
    for n, row in jsonl_objects(path, "a JSON object with 'positive' and 'negative' texts"):
        if not isinstance(row.get("positive"), str) or not isinstance(row.get("negative"), str):
            raise GreyglassError(f"{path} line {n}: expected a JSON object with 'positive' and 'negative' texts")
        pairs.append(ContrastPair(row["positive"], row["negative"]))
    return pairs


def run_vector(lm: LoadedModel, cfg: VectorConfig, out: str | Path) -> VectorResults:
    """`greyglass steer-vector`: a contrast vector saved as a direction folder that is also a run folder."""
    pairs = caa_pairs(lm, caa_items(cfg.behavior)[: cfg.n_items]) if cfg.behavior else read_pairs(cfg.pairs)
    direction = contrast_vector(lm, pairs, cfg.layer, cfg.method)
    direction.metadata["source"] = cfg.source
    direction.save(out)  # replaces the folder: the run's files go in after it
    write_config(out, "steer_vector", model=lm.provenance(), config=cfg,
                 data_fingerprint=json_sha256([p._asdict() for p in pairs]))
    if cfg.export_gguf:
        write_control_vector(lm, direction, cfg.export_gguf)
    results = VectorResults(site=direction.site, method=cfg.method, source=cfg.source, n_pairs=len(pairs),
                            norm=direction.metadata["norm"], typical_norm=typical_norm(lm, direction.site),
                            control_vector=cfg.export_gguf)
    write_results(out, results)
    return results


def ab_prompt(lm: LoadedModel, question: str) -> str:
    """The question as the model expects it, ready for the answer '(A)' or '(B)' to follow."""
    if lm.is_chat:
        return user_prompt(lm, question)
    return f"Question: {question}\n\nAnswer: "


def sae_latent_direction(decoder_row: Tensor, site: str, latent: int, sae: str = "") -> Direction:
    """Hook for SAE latents: the decoder row `W_dec[latent]  # [d_model]` of an SAE at `site` as a Direction."""
    if decoder_row.ndim != 1:
        raise GreyglassError(f"an SAE decoder row must be 1-D [d_model], got shape {tuple(decoder_row.shape)}")
    return Direction(decoder_row.detach().float().clone(), site, "sae_latent", metadata={"latent": latent, "sae": sae})
