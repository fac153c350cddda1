"""Where the model represents the agent's belief and reality: probes per layer and per attention head.

After Zhu et al. 2024: each story version is followed by a statement naming one candidate
("The sugar is in the red tin."), and the residual stream at the statement's last token is
probed for two labels, whether the statement is true as the *agent* believes it and whether it
is true of the *world*. Over a story's four texts (two versions x two candidates) the labels
are balanced and uncorrelated: they agree in the true-belief version and disagree in the
false-belief one, so a probe that reads reality scores 50% on belief and vice versa.

Probes are trained on some stories and tested on others, whole stories on one side and every
label balanced within each template on every side (`split_rows`); accuracy has a 95% interval that resamples test stories
(`stats.proportion_ci`). Controls at every layer: the belief probe refit on shuffled labels
(what chance looks like after fitting), and a probe for the agent's gender, a story feature
irrelevant to belief. Per-head probes read one head's output at the statement's last token (a
slice of the attention output projection's input, as `probe lying` patches heads) in the layers
where the belief probe does best on validation stories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.statements import Statement, split_by_group
from ..directions import Direction
from ..models.generate import adds_bos
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from ..models.sites import layer_sites
from ..models.text_features import text_features
from ..models.tokens import pad
from ..probes.fit import fit_probe
from ..probes.lying import head_projection
from ..stats import Estimate, proportion_ci
from .config import Depth, HeadProbes, LayerProbes
from .stories import CONDITIONS, Story


class ProbeTexts(NamedTuple):
    """The probe data: one row per (story, condition, candidate)."""

    texts: list[str]
    belief: Tensor  # [n] 1: the statement is true as the agent believes it
    reality: Tensor  # [n] 1: the statement is true of the world
    gender: Tensor  # [n] 1: the agent is a woman (the irrelevant feature)
    story: list[str]  # [n] the story each row tells: the groups of splits and intervals
    template: list[str]  # [n] the story's scenario template
    candidates: list[tuple[str, str]]  # [n] the story's two states, in the template's order
    changed_first: Tensor  # [n] 1: the changed state is the template's first-listed candidate


class Split(NamedTuple):
    train: list[int]
    validation: list[int]
    test: list[int]


def probe_texts(stories: Sequence[Story]) -> ProbeTexts:
    rows = [(s, c, option) for s in stories for c in CONDITIONS for option in s.candidates]
    return ProbeTexts(
        texts=[f"{s.texts[c]} {s.statements[option]}" for s, c, option in rows],
        belief=torch.tensor([int(option == s.answer("belief", c)) for s, c, option in rows]),
        reality=torch.tensor([int(option == s.changed) for s, _, option in rows]),
        gender=torch.tensor([int(s.gender == "female") for s, _, _ in rows]),
        story=[s.id for s, _, _ in rows],
        template=[s.template for s, _, _ in rows],
        candidates=[s.candidates for s, _, _ in rows],
        changed_first=torch.tensor([int(s.changed == s.candidates[0]) for s, _, _ in rows]))


def split_rows(data: ProbeTexts, test_fraction: float, seed: int) -> Split:
    """Train / validation / test rows (validation: a fifth of the training stories), whole blocks of
    `balanced_blocks` on one side, so within each template every label keeps its balance on every side.

    A plain random split of stories would not: each template's labels are exactly balanced, so the
    training stories' majority label within a template is the test stories' minority, and a probe
    that recognises the template scores below chance on test (the gender control did, at 27-35%);
    likewise for a candidate word's reality label, told in both directions (reality at 31-41%).
    """
    keyed = [Statement(t, int(b), g) for t, b, g in zip(data.texts, data.belief.tolist(), balanced_blocks(data))]
    train, test = split_by_group(keyed, test_fraction, seed)
    fit, validation = split_by_group([keyed[i] for i in train], 0.2, seed + 1)
    return Split([train[i] for i in fit], [train[i] for i in validation], test)


def balanced_blocks(data: ProbeTexts) -> list[str]:  # [n] a block id per row
    """Stories grouped within their template so that every story-level label is balanced in each group.

    Belief and reality are balanced within every story (two of its four rows each), but which
    candidate *word* carries them depends on the story's direction (`changed_first`), and a
    template tells each candidate pair in both directions; the agent's gender is a story label
    too. A block is first a couple, one candidate pair told in both directions, and a couple
    whose agents are both women is then joined with one whose agents are both men. A split of
    whole blocks keeps, within each template, gender and each candidate word's labels balanced
    on every side. A story without a partner (an odd count) is a block alone.
    """
    first = {story: i for i, story in reversed(list(enumerate(data.story)))}  # story -> its first row
    info = {story: (data.template[i], data.candidates[i], int(data.changed_first[i]), int(data.gender[i]))
            for story, i in first.items()}
    couples = _pair_up([[story] for story in first], lambda u: info[u[0]][:3],
                       lambda u: (*info[u[0]][:2], 1 - info[u[0]][2]))
    women = {tuple(u): sum(info[story][3] for story in u) for u in couples}
    blocks = _pair_up(couples,
                      lambda u: (info[u[0]][0], len(u), women[tuple(u)]) if women[tuple(u)] in (0, len(u)) else None,
                      lambda u: (info[u[0]][0], len(u), len(u) - women[tuple(u)]))
    block = {story: u[0] for u in blocks for story in u}
    return [block[story] for story in data.story]


def _pair_up(units: list[list[str]], key: Callable[[list[str]], object],
             partner: Callable[[list[str]], object]) -> list[list[str]]:
    """`units` joined two by two, each with an earlier one whose `key` is its `partner`; the rest alone.

    A unit whose key is None seeks no partner.
    """
    joined: list[list[str]] = []
    waiting: dict[object, list[int]] = {}  # key -> indices into `joined` of units still alone
    for unit in units:
        k = key(unit)
        if k is not None and waiting.get(partner(unit)):
            joined[waiting[partner(unit)].pop(0)] += unit
            continue
        if k is not None:
            waiting.setdefault(k, []).append(len(joined))
        joined.append(list(unit))
    return joined


def _accuracy(probe: Direction, x: Tensor, y: Tensor, groups: Sequence[str], n_boot: int, seed: int) -> Estimate:
    return proportion_ci(((probe.score(x) > 0).long() == y).numpy(), list(groups), n=n_boot, seed=seed)


class Prober(NamedTuple):
    """Fits a probe on the training rows and measures it on held-out ones."""

    data: ProbeTexts
    split: Split
    kind: str
    n_boot: int
    seed: int

    def fit(self, x: Tensor, y: Tensor, site: str) -> Direction:  # x [n, d]
        tr = self.split.train
        return fit_probe(self.kind, x[tr], y[tr], site, [self.data.story[i] for i in tr], self.seed)

    def test(self, probe: Direction, x: Tensor, y: Tensor, rows: list[int] | None = None) -> Estimate:
        rows = self.split.test if rows is None else rows
        return _accuracy(probe, x[rows], y[rows], [self.data.story[i] for i in rows], self.n_boot, self.seed)

    def shuffled(self, y: Tensor) -> Tensor:
        """`y` with the training rows' labels permuted among themselves (test rows untouched)."""
        out, tr = y.clone(), torch.tensor(self.split.train)
        out[tr] = y[tr][torch.from_numpy(np.random.default_rng(self.seed).permutation(len(tr)))]
        return out


def layer_probes(lm: LoadedModel, prober: Prober, layers: Sequence[int], batch_size: int,
                 progress: bool = False) -> tuple[tuple[LayerProbes, ...], dict[int, Direction]]:
    """Every layer's four probes, and the belief probe of each layer (for steering)."""
    d = prober.data
    x = text_features(lm, d.texts, layers, "last", batch_size, progress)  # [n, L, d_model]
    rows, belief_probes = [], {}
    for j, (layer, site) in enumerate(tqdm(list(zip(layers, layer_sites(layers))), desc="layer probes",
                                           unit="layer", disable=not progress)):
        xl = x[:, j]
        belief = prober.fit(xl, d.belief, site)
        belief_probes[layer] = belief
        shuffled = prober.fit(xl, prober.shuffled(d.belief), site)
        rows.append(LayerProbes(
            layer, site, prober.test(belief, xl, d.belief), prober.test(prober.fit(xl, d.reality, site), xl, d.reality),
            prober.test(shuffled, xl, d.belief), prober.test(prober.fit(xl, d.gender, site), xl, d.gender),
            prober.test(belief, xl, d.belief, prober.split.validation).value))
    return tuple(rows), belief_probes


def decodable(est: Estimate) -> bool:
    """A probe reads its label when its accuracy's 95% interval lies above chance (the labels are balanced)."""
    return est.lo > 0.5


def depth(rows: Sequence[LayerProbes], label: str, n_layers: int) -> Depth:
    """The earliest layer whose `label` probe is decodable."""
    first = next((r.layer for r in rows if decodable(getattr(r, label))), None)
    return Depth(first, None if first is None else first / n_layers)


def best_layers(rows: Sequence[LayerProbes], count: int) -> list[int]:
    """The `count` layers where the belief probe does best on validation stories (ties: the earlier)."""
    return sorted(r.layer for r in sorted(rows, key=lambda r: (-r.belief_validation, r.layer))[:count])


def head_features(lm: LoadedModel, texts: Sequence[str], layers: Sequence[int],
                  batch_size: int) -> Tensor:  # [n, len(layers), n_heads, head_dim]
    """Each head's output at each text's last token: the attention output projection's input, split by head."""
    projections = [head_projection(lm, layer) for layer in layers]
    ids = [lm.tokenizer(t, add_special_tokens=adds_bos(lm, t)).input_ids for t in texts]
    out: Tensor | None = None
    for start in range(0, len(texts), batch_size):
        batch, mask = pad(ids[start : start + batch_size], lm.tokenizer.pad_token_id)  # [B, T]
        seen: list[Tensor] = [torch.empty(0)] * len(layers)
        handles = [proj.register_forward_pre_hook(_keeper(seen, j)) for j, (proj, _) in enumerate(projections)]
        try:
            run_to_sites(lm, batch.to(lm.device), layer_sites([max(layers)]), attention_mask=mask.to(lm.device))
        finally:
            for h in handles:
                h.remove()
        last = [seen[j][torch.arange(len(batch)), mask.sum(1) - 1] for j in range(len(layers))]  # each [B, H * hd]
        stacked = torch.stack(last, 1).float().cpu()  # [B, L, H * hd]
        n_heads = projections[0][1]
        if out is None:
            out = torch.empty(len(texts), len(layers), n_heads, stacked.shape[-1] // n_heads)
        out[start : start + len(batch)] = stacked.reshape(len(batch), len(layers), n_heads, -1)
    assert out is not None
    return out


def _keeper(seen: list[Tensor], j: int):
    def keep(_module, args):
        seen[j] = args[0].detach()
    return keep


def head_probes(lm: LoadedModel, prober: Prober, layers: Sequence[int], batch_size: int) -> tuple[HeadProbes, ...]:
    """Belief and reality probes on each head of `layers`, best belief accuracy first."""
    if not layers:
        return ()
    x = head_features(lm, prober.data.texts, layers, batch_size)
    rows = []
    for j, layer in enumerate(layers):
        site = f"blocks.{layer}.attn.hook_z"
        for h in range(x.shape[2]):
            xh, d = x[:, j, h], prober.data
            rows.append(HeadProbes(layer, h, prober.test(prober.fit(xh, d.belief, site), xh, d.belief),
                                   prober.test(prober.fit(xh, d.reality, site), xh, d.reality)))
    return tuple(sorted(rows, key=lambda r: (-r.belief.value, r.layer, r.head)))
