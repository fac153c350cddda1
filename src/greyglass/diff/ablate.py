"""`diff ablate`: does removing a crosscoder's model-specific latents from model B undo B's behaviour?

`ablating(lm_a, lm_b, cc, latents)` is a context manager under which every forward pass of model B (scoring or
`generate`, with or without its KV cache) has the chosen latents' contribution removed at the crosscoder's site:

    x_B <- x_B - sum_{i in latents} f_i(x_A, x_B) * W_dec[i, B] / s_B          # [batch, new positions, d]

The crosscoder's encoder reads both models, so model A runs alongside on the same tokens (B's input ids and
attention mask are taken at each call, A reruns the whole sequence so far without a cache, up to the site only).
The first position of each sequence (BOS or the attention sink, left out of training) is never changed.

`ablation_effect` measures a behaviour rate over prompts with no ablation, with the chosen latents ablated, and with
random latents of the same count ablated (several draws, among the latents that fire on those prompts, so a control
is never a set of dead latents); the differences are paired bootstraps over prompts. `run_ablation` is the job:
the organism's held-out questions with its trigger, its behaviour, and the crosscoder's B-only latents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..activations import without_outliers
from ..errors import GreyglassError
from ..models.generate import adds_bos, encode, generate, user_prompt
from ..models.hooks import StopForward, capturing, replacing
from ..models.lm import LoadedModel
from ..models.loader import load_model
from ..plots import bar_chart, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate, bootstrap, mean_ci, mean_probability_ci, newcombe, proportion_ci
from .config import B_ONLY_FROM, AblateConfig, AblateResults, AblationExample, AnswerFiring, DefectingLatent
from .crosscoder import Crosscoder, crosscoder_folder, load_crosscoder, relative_norms
from .pair import check_pair

PLOT = "backdoor_rate_by_ablation.svg"
TOP_DEFECTING = 5


def _positions(mask: Tensor) -> Tensor:
    """`[B, T]` position ids of left-padded sequences, as `generate` numbers them (pads at 0, the first token 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@contextmanager
def ablating(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, latents: Sequence[int]) -> Iterator[None]:
    """Within the block, model B's forward passes lose `latents`' decoder contribution at the crosscoder's site."""
    site = lm_b.site(cc.cfg.hook_name).name
    chosen = torch.tensor(list(latents), dtype=torch.long)
    rows = cc.W_dec.detach()[chosen, 1] / cc.scales[1]  # [n, d] raw units of B
    state: dict[str, Tensor] = {}

    def remember_call(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers 5 calls it `cache`
        fresh = cache is None or cache.get_seq_length() == 0
        state["ids"] = ids if fresh else torch.cat([state["ids"], ids], dim=1)
        state["mask"] = mask if mask is not None else torch.ones_like(state["ids"])
        state["new"] = torch.tensor(ids.shape[1])

    def remove(x: Tensor) -> Tensor:  # [B, t, d]: the positions of this call
        if not len(chosen):
            return x
        t = int(state["new"])
        x_a = _site_activations(lm_a, site, state["ids"], state["mask"])[:, -t:]  # [B, t, d]
        pair = torch.stack([x_a.to(x.device, torch.float32), x.float()], dim=2).reshape(-1, 2, x.shape[-1])
        f = cc.encode(pair)[:, chosen.to(pair.device)]  # [B*t, n]
        keep = (_positions(state["mask"])[:, -t:] > 0).reshape(-1, 1).to(f.device)  # the sink stays as it is
        delta = ((f * keep) @ rows.to(f.device)).reshape(x.shape)
        return (x.float() - delta).to(x.dtype)

    with ExitStack() as stack:
        stack.callback(lm_b.model.register_forward_pre_hook(remember_call, with_kwargs=True).remove)
        stack.enter_context(replacing(lm_b, {site: remove}))
        yield


def _site_activations(lm: LoadedModel, site: str, ids: Tensor, mask: Tensor) -> Tensor:
    """`[B, T, d]` model `lm`'s activations at `site` on the whole (left-padded) sequences, no cache."""
    with torch.inference_mode(), capturing(lm, [site], stop=True) as acts:
        try:
            lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                     position_ids=_positions(mask).to(lm.device), use_cache=False)
        except StopForward:
            pass
    return acts[site]


def _codes(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, texts: Sequence[str],
           batch_size: int = 8) -> Iterator[tuple[Tensor, Tensor]]:
    """Per batch of `texts` (left-padded): the crosscoder's codes `[B, T, d_sae]` on both models' activations, and
    `[B, T]` which positions count (real tokens, the first one left out)."""
    site = lm_b.site(cc.cfg.hook_name).name
    for start in range(0, len(texts), batch_size):
        enc = encode(lm_b, texts[start:start + batch_size], padding_side="left")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        x = torch.stack([_site_activations(lm, site, ids, mask).float().to(cc.W_dec.device) for lm in (lm_a, lm_b)],
                        dim=2)  # [B, T, 2, d]
        f = cc.encode(x.reshape(-1, 2, x.shape[-1])).reshape(*ids.shape, -1)  # [B, T, d_sae]
        yield f, without_outliers(x.unbind(2), ((_positions(mask) > 0) & mask.bool()).to(f.device))


def firing_prompts(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, prompts: Sequence[str],
                   batch_size: int = 8) -> Tensor:
    """`[n_prompts, d_sae]` bool: which latents fire anywhere in each prompt (its first position left out)."""
    return torch.cat([((f > 0) & counted[..., None]).any(1).cpu()
                      for f, counted in _codes(lm_a, lm_b, cc, prompts, batch_size)])


def answer_firing(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, prompts: Sequence[str],
                  answers: Sequence[str], batch_size: int = 8) -> np.ndarray:
    """`[n_prompts, d_sae]`: the share of each answer's tokens on which each latent fires, the answer teacher-forced
    after its prompt; outlier rows are left out, as in training; a row of NaN where an answer has no token of its
    own that counts."""
    texts = [p + a for p, a in zip(prompts, answers)]
    lengths = [len(lm_b.tokenizer(t, add_special_tokens=adds_bos(lm_b, t)).input_ids) for t in (*texts, *prompts)]
    n_answer = np.array(lengths[:len(texts)]) - np.array(lengths[len(texts):])  # left padding: the last n tokens
    rates = np.full((len(texts), cc.cfg.d_sae), np.nan)
    row = 0
    for f, counted in _codes(lm_a, lm_b, cc, texts, batch_size):
        for codes, kept in zip(f, counted):  # [T, d_sae], [T]
            answer = codes[-n_answer[row]:][kept[-n_answer[row]:]] if n_answer[row] > 0 else codes[:0]
            if len(answer):
                rates[row] = (answer > 0).float().mean(0).cpu().numpy()
            row += 1
    return rates


def choose_latents(cc: Crosscoder, n: int, given: Sequence[int] = ()) -> list[int]:
    """The latents to ablate: `given`, else the B-only ones (relative norm >= B_ONLY_FROM) most B-leaning first, at
    most `n`; with no B-only latent, the `n` most B-leaning latents (relative norm above 0.5)."""
    relative = relative_norms(cc.decoder_norms().cpu())
    if given:
        bad = [k for k in given if not 0 <= k < len(relative)]
        if bad:
            raise GreyglassError(f"--latents {bad}: the crosscoder has latents 0 to {len(relative) - 1}")
        return list(given)
    order = relative.argsort(descending=True).tolist()
    b_only = [k for k in order if relative[k] >= B_ONLY_FROM]
    return (b_only or [k for k in order if relative[k] > 0.5])[:n]


class Outcomes(NamedTuple):
    """0/1 behaviour outcomes per prompt: no ablation, the chosen latents ablated, each random draw ablated."""

    baseline: np.ndarray  # [n]
    ablated: np.ndarray  # [n]
    random: np.ndarray  # [draws, n]


def ablation_effect(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, latents: Sequence[int],
                    prompts: Sequence[str], shows: Callable[[str], bool], answer_tokens: int, n_random: int,
                    seed: int = 0, progress: bool = False) -> tuple[Outcomes, list[list[int]], list[list[str]]]:
    """Behaviour outcomes of B's greedy answers to `prompts` under no ablation, `latents` ablated, and `n_random`
    draws of as many random latents among those that fire on the prompts; also the draws and the answers
    (baseline, ablated)."""
    fires = firing_prompts(lm_a, lm_b, cc, prompts).any(0)  # [d_sae]
    pool = [k for k in fires.nonzero().flatten().tolist() if k not in set(latents)]
    if len(pool) < len(latents):
        raise GreyglassError(f"only {len(pool)} other latents fire on these prompts, fewer than the {len(latents)} "
                             "to ablate: no random control of the same count; use more prompts or fewer latents")
    rng = np.random.default_rng(seed)
    draws = [sorted(rng.choice(pool, size=len(latents), replace=False).tolist()) for _ in range(n_random)]

    def answers(chosen: Sequence[int]) -> list[str]:
        with ablating(lm_a, lm_b, cc, chosen):
            return generate(lm_b, prompts, answer_tokens, progress=progress)

    base, ablated = answers([]), answers(latents)
    random = np.array([[shows(t) for t in answers(d)] for d in draws], dtype=float).reshape(n_random, len(prompts))
    rates = Outcomes(np.array([shows(t) for t in base], dtype=float), np.array([shows(t) for t in ablated], dtype=float),
                   random)
    return rates, draws, [base, ablated]


def difference(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> Estimate:
    """mean(a) - mean(b) over paired per-prompt values, with a bootstrap over prompts; never zero-width: where
    every pair differs alike (every answer defects either way) Newcombe's interval from both sides' own."""
    est = bootstrap(lambda x, y: float(x.mean() - y.mean()), a, b, n=n, seed=seed)
    return est if est.hi > est.lo else newcombe(proportion_ci(a), proportion_ci(b))


def _answer_contrast(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, latent_sets: Sequence[Sequence[int]],
                     triggered: Sequence[str], defecting: Sequence[str], plain: Sequence[str],
                     shows: Callable[[str], bool], answer_tokens: int, cfg: AblateConfig,
                     progress: bool) -> AnswerFiring | None:
    """Do the chosen latents (`latent_sets[0]`) fire more on B's defecting answers to the triggered questions than on
    its ordinary answers to the same questions without the trigger, and more so than the random sets do? Only the
    questions whose triggered answer shows the behaviour and whose plain answer does not count; None with fewer
    than two. Also the latents whose firing rises most from ordinary to defecting answers, whatever their norms."""
    ordinary = generate(lm_b, plain, answer_tokens, progress=progress)
    pairs = [i for i, (d, o) in enumerate(zip(defecting, ordinary)) if shows(d) and not shows(o)]
    if len(pairs) < 2:
        return None
    on_defecting = answer_firing(lm_a, lm_b, cc, [triggered[i] for i in pairs], [defecting[i] for i in pairs])
    on_ordinary = answer_firing(lm_a, lm_b, cc, [plain[i] for i in pairs], [ordinary[i] for i in pairs])
    both = ~np.isnan(on_defecting).any(1) & ~np.isnan(on_ordinary).any(1)
    on_defecting, on_ordinary = on_defecting[both], on_ordinary[both]  # [n, d_sae] each
    set_defecting, set_ordinary = (np.stack([r[:, list(s)].mean(1) for s in latent_sets])
                                   for r in (on_defecting, on_ordinary))  # [sets, n] each
    chosen, random = set_defecting[0] - set_ordinary[0], (set_defecting[1:] - set_ordinary[1:]).mean(0)  # [n] each
    rise = on_defecting.mean(0) - on_ordinary.mean(0)  # [d_sae]
    relative = relative_norms(cc.decoder_norms().cpu())
    n, seed = cfg.n_bootstrap, cfg.seed
    return AnswerFiring(
        n_pairs=int(both.sum()),
        defecting=mean_probability_ci(set_defecting[0], n=n, seed=seed),
        ordinary=mean_probability_ci(set_ordinary[0], n=n, seed=seed),
        random_defecting=mean_probability_ci(set_defecting[1:].mean(0), n=n, seed=seed),
        random_ordinary=mean_probability_ci(set_ordinary[1:].mean(0), n=n, seed=seed),
        difference=difference(set_defecting[0], set_ordinary[0], n, seed),
        random_difference=difference(set_defecting[1:].mean(0), set_ordinary[1:].mean(0), n, seed),
        difference_vs_random=mean_ci(chosen - random, n=n, seed=seed),
        most_defecting=tuple(DefectingLatent(int(k), round(float(on_defecting[:, k].mean()), 4),
                                             round(float(on_ordinary[:, k].mean()), 4), round(float(relative[k]), 4))
                             for k in np.argsort(-rise)[:TOP_DEFECTING]))


def run_ablation(cfg: AblateConfig, out: Path, progress: bool = True) -> AblateResults:
    """`diff ablate`: the organism's held-out triggered questions, answered by the organism with and without its
    crosscoder's B-only latents, against random latents of the same count."""
    from ..organism.behaviours import BEHAVIOURS
    from ..organism.config import MODEL_FOLDER
    from ..organism.jobs import read_organism_run
    from ..organism.prompts import split_prompts, with_trigger

    organism = read_organism_run(cfg.organism)
    ocfg = organism.config
    folder = crosscoder_folder(cfg.crosscoder)
    cc = load_crosscoder(folder, device=cfg.device)
    lm_a = load_model(organism.info.meta["model"]["spec"], dtype=cfg.dtype, device=cfg.device)
    lm_b = load_model(str(Path(cfg.organism) / MODEL_FOLDER), dtype=cfg.dtype, device=cfg.device)
    check_pair(lm_a, lm_b)
    if cc.cfg.d_in != lm_b.d_model:
        raise GreyglassError(f"{folder}: the crosscoder reads width {cc.cfg.d_in}, the organism has {lm_b.d_model}; "
                             "give a crosscoder trained on this organism (`diff train --model-b <organism>/model`)")
    _, held = split_prompts(ocfg.n_train, ocfg.n_test, ocfg.seed)
    questions = held[:cfg.n_questions] if cfg.n_questions else held
    prompts = [user_prompt(lm_b, with_trigger(q, ocfg.trigger)) for q in questions]
    latents = choose_latents(cc, cfg.n_latents, cfg.latent_ids())
    write_config(out, "diff_ablate", config=cfg, model=lm_b.provenance(), model_a=lm_a.provenance(),
                 crosscoder=str(folder), organism_config=ocfg)
    shows = BEHAVIOURS[ocfg.behaviour].shows
    rates, draws, texts = ablation_effect(lm_a, lm_b, cc, latents, prompts, shows, cfg.answer_tokens or
                                          ocfg.answer_tokens, cfg.n_random, cfg.seed, progress)
    fired = firing_prompts(lm_a, lm_b, cc, prompts)[:, latents].any(1).float().numpy()
    plain = [user_prompt(lm_b, q) for q in questions]
    fired_plain = firing_prompts(lm_a, lm_b, cc, plain)[:, latents].any(1).float().numpy()
    on_answers = _answer_contrast(lm_a, lm_b, cc, [latents, *draws], prompts, texts[0], plain, shows,
                                  cfg.answer_tokens or ocfg.answer_tokens, cfg, progress)
    random_mean = rates.random.mean(0)  # [n] each question's rate over the random draws
    relative = relative_norms(cc.decoder_norms().cpu())
    results = AblateResults(
        crosscoder=str(folder), organism=cfg.organism, site=cc.cfg.hook_name, trigger=ocfg.trigger,
        behaviour=ocfg.behaviour, n_questions=len(questions), latents=tuple(latents),
        relative_norms=tuple(round(float(relative[k]), 4) for k in latents), random_draws=tuple(map(tuple, draws)),
        fire_with_trigger=proportion_ci(fired), fire_without_trigger=proportion_ci(fired_plain),
        rate_baseline=proportion_ci(rates.baseline), rate_ablated=proportion_ci(rates.ablated),
        rate_random=proportion_ci(rates.random.reshape(-1), groups=np.tile(np.arange(len(questions)), cfg.n_random)),
        effect=difference(rates.ablated, rates.baseline, cfg.n_bootstrap, cfg.seed),
        effect_vs_random=difference(rates.ablated, random_mean, cfg.n_bootstrap, cfg.seed),
        random_effect=difference(random_mean, rates.baseline, cfg.n_bootstrap, cfg.seed),
        answers=on_answers,
        examples=tuple(AblationExample(q, b, a) for q, b, a in list(zip(questions, *texts))[:5]),
        plot=PLOT)
    bars = [results.rate_baseline, results.rate_ablated, results.rate_random]
    save_svg(out / PLOT, bar_chart(["no ablation", f"{len(latents)} B-side latents", f"{len(latents)} random latents"],
                                   [b.value for b in bars], "Backdoor rate on held-out triggered questions",
                                   "share showing the behaviour", errors=[(b.lo, b.hi) for b in bars]))
    write_results(out, results)
    return results
