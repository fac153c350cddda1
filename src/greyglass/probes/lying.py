"""`probe lying`: where is an instructed lie decided? (after Campbell et al., "Localizing Lying in Llama")

The model answers True/False about the same statements under an honest instruction and under
an instruction to lie. Three measurements, each on the answer's log-odds
`c = logit(correct answer) - logit(wrong answer)` at the position where the answer starts:

The statements are split by group into two halves. The *selection* half chooses the lying
instruction (the one under which the model answers correctly least often) and trains the
truth probe; everything reported is measured on the other, *analysis* half, so the chosen
instruction's lying rate is not flattered by having been picked on the same questions.

1. behaviour: how often the answer is correct (c > 0) under each prompt, with a 95% interval
   over groups. If the model does not clearly lie under the chosen prompt, the rest measures
   nothing and the report says so.
2. probe flip: a mass-mean truth probe trained on the selection half's honest runs, applied
   to the analysis half's honest and lying runs, layer by layer. Layers where its accuracy
   drops below 50% on lies are where the representation has turned into the lie.
3. activation patching: the honest run's residual stream after layer L is copied into the
   lying run over the tokens both prompts share (aligned from the end), and `recovery =
   mean(c_patched - c_lie) / mean(c_honest - c_lie)`. Patching the last layer recovers exactly
   1 by construction (the answer logits are then the honest run's), so ranking layers by
   recovery would always name the final ones. The lie is localised instead where recovery
   first rises: the *onset*, the earliest layer whose recovery reaches half of the last
   layer's, with a 95% cluster-bootstrap interval over questions. Each attention head's output
   is patched in the layers around the onset.

Chat models get the instruction as a system prompt; base models a few-shot prompt whose
example answers are true (honest) or flipped (lying).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.statements import Statement, group_keys, load_statements, split_by_group, statements_fingerprint
from ..errors import GreyglassError
from ..models.hooks import capturing, replacing
from ..models.lm import LoadedModel
from ..models.sites import layer_sites
from ..models.text_features import text_features
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import bootstrap, proportion_ci
from .config import (HONEST, LIE_VARIANTS, ONSET_FRACTION, SHOTS, QUESTION, Behaviour, HeadPatch, LayerPatch, LyingConfig,
                     LyingResults, Onset, ProbeFlip)
from .fit import fit_probe

def prompt(lm: LoadedModel, statement: str, instruction: str, lying: bool, chat: bool | None = None) -> str:
    """The question under an instruction, ending where the answer (True/False) begins."""
    if lm.is_chat if chat is None else chat:
        messages = [{"role": "system", "content": instruction},
                    {"role": "user", "content": QUESTION.format(statement=statement)}]
        return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    shots = "".join(f"Statement: {s}\nAnswer: {'True' if label != lying else 'False'}\n\n" for s, label in SHOTS)
    return f"{instruction}\n\n{shots}Statement: {statement}\nAnswer:"


def answer_tokens(lm: LoadedModel, text: str) -> tuple[int, int]:
    """Token ids of 'True' and 'False' as the answer right after `text` (where their tokenisations diverge)."""
    space = " " if text.endswith("Answer:") else ""
    a, b = (lm.tokenizer(text + space + word).input_ids for word in ("True", "False"))
    k = next(i for i, (u, v) in enumerate(zip(a, b)) if u != v)
    return a[k], b[k]


def correct_log_odds(lm: LoadedModel, ids: Tensor, tokens: tuple[int, int], labels: Tensor,
                     cache: Any = None) -> Tensor:
    """c = logit(correct) - logit(wrong) at the last position, for each row of ids [B, T] -> [B]."""
    with torch.inference_mode():
        last = lm.model(input_ids=ids.to(lm.device), cache=cache,
                        use_cache=cache is not None, logits_to_keep=1).logits[:, -1].float().cpu()
    diff = last[:, tokens[0]] - last[:, tokens[1]]  # True minus False
    return torch.where(labels == 1, diff, -diff)


def head_projection(lm: LoadedModel, layer: int) -> tuple[nn.Module, int]:
    """The attention output projection of a block (its input holds every head's output) and the head count."""
    block = lm.blocks[layer]
    for name in ("self_attn.o_proj", "attn.c_proj", "attention.dense"):
        try:
            module = block.get_submodule(name)
        except AttributeError:
            continue
        cfg = lm.model.config.get_text_config() if hasattr(lm.model.config, "get_text_config") else lm.model.config
        return module, getattr(cfg, "num_attention_heads", None) or cfg.n_head
    raise GreyglassError(f"no attention output projection found in block {layer} for head patching")


def localise_lying(lm: LoadedModel, cfg: LyingConfig, out: str | Path, progress: bool = True) -> LyingResults:
    """Behaviour, probe flip and patching under honest vs lying instructions; writes the run folder."""
    out = Path(out)
    statements = load_statements(cfg.data, cfg.n_questions, cfg.seed)
    write_config(out, "probe_lying", model=lm.provenance(), config=cfg, data_fingerprint=statements_fingerprint(statements),
                 honest_instruction=HONEST, lie_instructions=LIE_VARIANTS)
    chat = lm.is_chat if cfg.prompt_format == "auto" else cfg.prompt_format == "chat"
    if chat and not lm.is_chat:
        raise GreyglassError(f"{lm.name} has no chat template; use --prompt-format fewshot")
    select, analyse = split_by_group(statements, 0.5, cfg.seed)
    labels, groups = torch.tensor([s.label for s in statements]), np.array(group_keys(statements))
    prompts = {"honest": [prompt(lm, s.text, HONEST, False, chat) for s in statements]}
    prompts |= {name: [prompt(lm, s.text, text, True, chat) for s in statements] for name, text in LIE_VARIANTS.items()}
    c = {name: _log_odds(lm, texts, labels) for name, texts in prompts.items()}
    selection, behaviour = ({name: _behaviour(v[half], groups[half]) for name, v in c.items()} for half in (select, analyse))
    variant = cfg.lie_variant or min(LIE_VARIANTS, key=lambda n: selection[n].correct.value)
    # Lying must be clear of chance both ways: honest answers above 50% and lying answers below, by their 95% CIs.
    lies = behaviour[variant].correct.hi < 0.5 and behaviour["honest"].correct.lo > 0.5
    honest, lying = ([prompts[k][i] for i in analyse] for k in ("honest", variant))
    c_h, c_l, y, g = c["honest"][analyse], c[variant][analyse], labels[analyse], groups[analyse]
    patched = _patch_layers(lm, honest, lying, y, progress)
    onset = _onset(patched, c_h, c_l, g, cfg.n_bootstrap, cfg.seed, lm.n_layers)
    head_layers = _layers_around(onset.layer, cfg.head_layers, lm.n_layers)
    results = LyingResults(
        n_questions=len(statements), n_selection=len(select), n_analysed=len(analyse), behaviour=behaviour,
        selection_behaviour=selection, lie_variant=variant,
        lie_variant_chosen_on="given" if cfg.lie_variant else "selection half",
        prompt_format="chat" if chat else "fewshot", n_layers=lm.n_layers, model_lies=bool(lies),
        probe_flip=_probe_flip(lm, statements, prompts["honest"], prompts[variant], select, analyse),
        layer_patching=_layer_rows(patched, c_h, c_l, g, cfg.n_bootstrap, cfg.seed), onset=onset,
        head_layers=tuple(head_layers), head_patching=_patch_heads(lm, honest, lying, y, c_h, c_l, head_layers, progress),
        plot="lying_by_layer.svg")
    save_svg(out / results.plot, _plot(results, lm.name))
    write_results(out, results)
    return results

def recovery_curve(patched: np.ndarray, c_h: np.ndarray, c_l: np.ndarray) -> np.ndarray:
    """Recovery per layer from patched log-odds [n, n_layers]: mean(c_p - c_l) / mean(c_h - c_l) -> [n_layers]
    (NaN when the honest and lying runs do not differ on average)."""
    gap = float(np.mean(c_h - c_l))
    if abs(gap) < 1e-6:
        return np.full(patched.shape[1], np.nan)
    return (patched - c_l[:, None]).mean(0) / gap


def onset_layer(patched: np.ndarray, c_h: np.ndarray, c_l: np.ndarray, fraction: float = ONSET_FRACTION) -> float:
    """The earliest layer whose recovery reaches `fraction` of the last layer's (NaN when undefined)."""
    curve = recovery_curve(patched, c_h, c_l)
    if not np.isfinite(curve[-1]) or curve[-1] <= 0:
        return float("nan")
    return float(np.flatnonzero(curve >= fraction * curve[-1])[0])


def _onset(patched: Tensor, c_h: Tensor, c_l: Tensor, groups: np.ndarray, n_boot: int, seed: int,
           n_layers: int) -> Onset:
    """The onset layer with a 95% interval from resampling whole question groups (widened to whole layers)."""
    est = bootstrap(onset_layer, patched.numpy(), c_h.numpy(), c_l.numpy(), groups=groups, n=n_boot, seed=seed)
    layer = int(est.value) if np.isfinite(est.value) else n_layers - 1
    lo, hi = (int(np.floor(est.lo)), int(np.ceil(est.hi))) if np.isfinite(est.lo) else (0, n_layers - 1)
    return Onset(layer, lo, hi, layer / n_layers, ONSET_FRACTION, bool(np.isfinite(est.value)))


def _layers_around(layer: int, count: int, n_layers: int) -> list[int]:
    """`count` layers nearest to `layer` (ties to the earlier one), in order."""
    return sorted(sorted(range(n_layers), key=lambda other: (abs(other - layer), other))[:count])


def _layer_rows(patched: Tensor, c_h: Tensor, c_l: Tensor, groups: np.ndarray, n_boot: int,
                seed: int) -> tuple[LayerPatch, ...]:
    """Per layer: recovery with a 95% cluster-bootstrap interval, and how often the patched answer is correct."""
    p, h, l = patched.numpy(), c_h.numpy(), c_l.numpy()
    rows = []
    for layer in range(p.shape[1]):
        est = bootstrap(lambda a, b, c: recovery_curve(a[:, None], b, c)[0], p[:, layer], h, l, groups=groups,
                        n=n_boot, seed=seed)
        rows.append(LayerPatch(layer, est, float((p[:, layer] > 0).mean())))
    return tuple(rows)


def _ids(lm: LoadedModel, text: str) -> Tensor:
    return lm.tokenizer(text, return_tensors="pt").input_ids


def _log_odds(lm: LoadedModel, prompts: Sequence[str], labels: Tensor) -> Tensor:
    return torch.cat([correct_log_odds(lm, _ids(lm, p), answer_tokens(lm, p), labels[i : i + 1])
                      for i, p in enumerate(prompts)])


def _behaviour(c: Tensor, groups: np.ndarray) -> Behaviour:
    return Behaviour(proportion_ci((c > 0).float().numpy(), groups), float(c.mean()))


def _probe_flip(lm: LoadedModel, statements: list[Statement], honest: list[str], lying: list[str],
                train: list[int], test: list[int]) -> tuple[ProbeFlip, ...]:
    """Truth probe trained on honest runs of `train`, tested on honest and lying runs of `test`."""
    layers = list(range(lm.n_layers))
    y = torch.tensor([s.label for s in statements])
    xh = text_features(lm, honest, layers)  # [n, L, d]
    xl = text_features(lm, lying, layers)
    rows = []
    for j, site in enumerate(layer_sites(layers)):
        probe = fit_probe("mass_mean", xh[train, j], y[train], site)
        acc = [float(((probe.score(x[test, j]) > 0).long() == y[test]).float().mean()) for x in (xh, xl)]
        rows.append(ProbeFlip(j, acc[0], acc[1]))
    return tuple(rows)


def _shared_suffix(a: Tensor, b: Tensor) -> int:
    """How many final tokens two [1, T] id rows have in common."""
    k = 0
    while k < min(a.shape[1], b.shape[1]) and a[0, -1 - k] == b[0, -1 - k]:
        k += 1
    return k


def _shared_prefix_cache(lm: LoadedModel, ids: Tensor, k: int, copies: int) -> tuple[Any, Tensor]:
    """Run the lying prompt up to its last `k` tokens once; return its KV cache repeated `copies` times
    and the last `k` tokens as a [copies, k] batch. Patching touches only those tokens, and earlier
    positions never see later ones, so only the suffix needs recomputing per patched layer or head."""
    with torch.inference_mode():
        cache = lm.model(input_ids=ids[:, :-k].to(lm.device), use_cache=True).cache
    cache.batch_repeat_interleave(copies)
    return cache, ids[:, -k:].expand(copies, -1)


def _patch_layers(lm: LoadedModel, honest: list[str], lying: list[str], labels: Tensor, progress: bool) -> Tensor:
    """Patched log-odds [n_questions, n_layers]: one batched forward per question over the shared tokens,
    row L of the batch with layer L patched from the honest run."""
    sites = layer_sites(range(lm.n_layers))
    patched = torch.zeros(len(honest), lm.n_layers)
    for i in tqdm(range(len(honest)), desc="layer patching", unit="question", disable=not progress):
        hid, lid = _ids(lm, honest[i]), _ids(lm, lying[i])
        k = _shared_suffix(hid, lid)
        with torch.inference_mode(), capturing(lm, sites) as acts:
            lm.model(input_ids=hid, use_cache=False)

        def put(layer: int, source: Tensor):
            def fn(x: Tensor) -> Tensor:  # x [n_layers, T, d]
                x = x.clone()
                x[layer, -k:] = source[0, -k:]
                return x
            return fn

        cache, suffix = _shared_prefix_cache(lm, lid, k, lm.n_layers)
        with replacing(lm, {site: put(layer, acts[site]) for layer, site in enumerate(sites)}):
            patched[i] = correct_log_odds(lm, suffix, answer_tokens(lm, lying[i]), labels[i].expand(lm.n_layers), cache)
    return patched


def _recovery(c_p: Tensor, c_h: Tensor, c_l: Tensor) -> tuple[float, float]:
    """(recovery, fraction of patched answers correct) for one patched head."""
    curve = recovery_curve(c_p.numpy()[:, None], c_h.numpy(), c_l.numpy())
    return float(curve[0]), float((c_p > 0).float().mean())


def _patch_heads(lm: LoadedModel, honest: list[str], lying: list[str], labels: Tensor, c_h: Tensor, c_l: Tensor,
                 layers: Sequence[int], progress: bool) -> tuple[HeadPatch, ...]:
    """Patch each head's output (a slice of the attention output projection's input), one head at a time."""
    rows = []
    for layer in layers:
        proj, n_heads = head_projection(lm, layer)
        patched = torch.zeros(n_heads, len(honest))
        for i in tqdm(range(len(honest)), desc=f"heads of layer {layer}", unit="question", disable=not progress):
            hid, lid = _ids(lm, honest[i]), _ids(lm, lying[i])
            k, tokens = _shared_suffix(hid, lid), answer_tokens(lm, lying[i])
            seen: list[Tensor] = []
            handle = proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
            try:
                with torch.inference_mode():
                    lm.model(input_ids=hid, use_cache=False)
            finally:
                handle.remove()
            source = seen[0][0, -k:]  # [k, n_heads * head_dim]
            width = source.shape[-1] // n_heads

            def put(_m, args):  # row h of the batch gets head h's output from the honest run
                x = args[0].clone()  # [n_heads, T, n_heads * head_dim]
                for h in range(n_heads):
                    cols = slice(h * width, (h + 1) * width)
                    x[h, -k:, cols] = source[:, cols]
                return (x, *args[1:])

            cache, suffix = _shared_prefix_cache(lm, lid, k, n_heads)
            handle = proj.register_forward_pre_hook(put)
            try:
                patched[:, i] = correct_log_odds(lm, suffix, tokens, labels[i].expand(n_heads), cache)
            finally:
                handle.remove()
        rows += [HeadPatch(layer, h, *_recovery(patched[h], c_h, c_l)) for h in range(n_heads)]
    return tuple(sorted(rows, key=lambda r: -np.nan_to_num(r.recovery, nan=-np.inf)))


def _plot(results: LyingResults, model: str) -> str:
    patching, flip = results.layer_patching, results.probe_flip
    layers = [r.layer for r in patching]
    return line_chart([
        Series("patching recovery (95% CI)", layers, [r.recovery.value for r in patching],
               [r.recovery.lo for r in patching], [r.recovery.hi for r in patching]),
        Series("truth probe acc. on lies", layers, [r.lying_accuracy for r in flip]),
        Series("truth probe acc. honest", layers, [r.honest_accuracy for r in flip]),
    ], f"Where is the lie decided? ({model}, {results.lie_variant})", "layer", "fraction")
