"""`greyglass tom`: behaviour, probes and steering on generated false-belief stories, into one run folder.

The folder holds `config.json`, `results.json`, `stories.jsonl` (every generated story, both
versions), the belief probe used for steering (`belief_probe/`) and four SVG figures: accuracy
by question and condition, probe accuracy by layer with its controls, per-head probe accuracy,
and the steering effects.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..atomic import write_text
from ..fingerprint import json_sha256
from ..models.lm import LoadedModel
from ..plots import Series, bar_chart, heatmap, line_chart, save_svg
from ..runs import write_config, write_results
from ..steer.apply import typical_norm
from .answers import behaviour, verdict
from .config import AnswerAccuracy, HeadProbes, LayerProbes, SteerChange, TomConfig, TomResults
from .intervene import steering_changes
from .represent import Prober, ProbeTexts, best_layers, decodable, depth, head_probes, layer_probes, probe_texts, split_rows
from .stories import CONDITIONS, generate_stories, load_templates


def run_tom(lm: LoadedModel, cfg: TomConfig, out: str | Path, progress: bool = True) -> TomResults:
    """Measure everything `greyglass tom` reports; write the run folder `out`; return its results."""
    out = Path(out)
    stories = generate_stories(cfg.n_stories, cfg.seed, cfg.templates)
    write_config(out, "tom", model=lm.provenance(), config=cfg,
                 data_fingerprint=json_sha256([asdict(s) for s in stories]))
    write_text(out / "stories.jsonl", "".join(json.dumps(asdict(s)) + "\n" for s in stories))
    data = probe_texts(stories)
    split = split_rows(data, cfg.test_fraction, cfg.seed)
    prober = Prober(data, split, cfg.kind, cfg.n_bootstrap, cfg.seed)
    records, accuracies = behaviour(lm, stories, cfg.prompt, cfg.batch_size, cfg.seed, progress)
    layers = cfg.layer_list(lm.n_layers)
    rows, belief_probes = layer_probes(lm, prober, layers, cfg.batch_size, progress)
    head_layers = best_layers(rows, cfg.head_layers)
    heads = head_probes(lm, prober, head_layers, cfg.batch_size)
    steer_layer = best_layers(rows, 1)[0]
    direction = belief_probes[steer_layer]
    direction.save(out / "belief_probe")
    test_ids = _stories_in(data, split.test)
    held_out = [s for s in stories if s.id in test_ids]
    baseline = {c: [r for r in records["belief", c] if r["cluster"] in test_ids] for c in CONDITIONS}
    steer = steering_changes(lm, direction, held_out, baseline, cfg.prompt, cfg.steer_coef, cfg.batch_size, cfg.seed,
                             progress)
    results = TomResults(
        n_stories=len(stories), n_templates=len(load_templates(cfg.templates)[1]), n_train=len(_stories_in(data, split.train)),
        n_validation=len(_stories_in(data, split.validation)), n_test=len(test_ids), n_layers=lm.n_layers,
        prompt_format=cfg.prompt.resolve(lm.is_chat), behaviour=accuracies, verdict=verdict(accuracies), layers=rows,
        belief_depth=depth(rows, "belief", lm.n_layers), reality_depth=depth(rows, "reality", lm.n_layers),
        both_layers=tuple(r.layer for r in rows if decodable(r.belief) and decodable(r.reality)),
        head_layers=tuple(head_layers), heads=heads, steer_site=direction.site, steer_layer=steer_layer,
        typical_norm=typical_norm(lm, direction.site), steering=steer, stories="stories.jsonl",
        probe_plot="probes_by_layer.svg", behaviour_plot="behaviour.svg", steer_plot="steering.svg",
        head_plot="heads.svg")
    save_svg(out / results.behaviour_plot, behaviour_plot(accuracies, lm.name))
    save_svg(out / results.probe_plot, probe_plot(rows, lm.name))
    save_svg(out / results.head_plot, head_plot(heads, head_layers, lm.name))
    save_svg(out / results.steer_plot, steer_plot(steer, results.steer_layer, lm.name))
    write_results(out, results)
    return results


def _stories_in(data: ProbeTexts, rows: list[int]) -> set[str]:
    return {data.story[i] for i in rows}


def behaviour_plot(accuracies: tuple[AnswerAccuracy, ...], model: str) -> str:
    return bar_chart([f"{a.question}, {a.condition.replace('_', ' ')}" for a in accuracies],
                     [a.correct.value for a in accuracies],
                     f"Right answer is the likelier ({model}; 50% is chance)", "share of stories (95% CI)",
                     errors=[(a.correct.lo, a.correct.hi) for a in accuracies])


def probe_plot(rows: tuple[LayerProbes, ...], model: str) -> str:
    layers = [r.layer for r in rows]

    def series(label: str, key: str) -> Series:
        ests = [getattr(r, key) for r in rows]
        return Series(label, layers, [e.value for e in ests], [e.lo for e in ests], [e.hi for e in ests])

    return line_chart([series("belief", "belief"), series("reality", "reality"),
                       series("belief, shuffled labels", "shuffled"), series("agent's gender (irrelevant)", "irrelevant")],
                      f"Held-out probe accuracy by layer ({model})", "layer", "accuracy (95% CI)", y_range=(0.0, 1.0))


def head_plot(heads: tuple[HeadProbes, ...], layers: list[int], model: str) -> str:
    if not heads:
        return bar_chart(["no head layers"], [0.0], "No per-head probes were run", "accuracy")
    n_heads = max(h.head for h in heads) + 1
    cell = {(h.layer, h.head): h.belief.value for h in heads}
    return heatmap([[cell[layer, h] for h in range(n_heads)] for layer in layers], [f"layer {x}" for x in layers],
                   [str(h) for h in range(n_heads)], f"Belief probe accuracy per attention head ({model})",
                   "head", "layer", v_range=(0.0, 1.0))


def steer_plot(rows: tuple[SteerChange, ...], layer: int, model: str) -> str:
    return bar_chart([f"{r.direction} {r.coef:+g}, {r.condition.replace('_', ' ')}" for r in rows],
                     [r.change.value for r in rows],
                     f"Steering at layer {layer}: change in P(right belief answer) ({model})",
                     "steered - unsteered (95% CI)", errors=[(r.change.lo, r.change.hi) for r in rows])
