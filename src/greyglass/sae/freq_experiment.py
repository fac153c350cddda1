"""The frequency-aware sparsity experiment: TopK and JumpReLU, each with and without the
frequency-aware cost, at matched L0, on one site; one table of reconstruction, downstream loss,
dead and dense latents, and first-letter absorption (SAEBench's
mean absorption fraction, full-absorption rate and split features).

Every SAE of the table is trained from the same pass over the same activations (the model
runs once; `train_saes` feeds each batch to all of them), then each is evaluated on held-out
text (`evaluate`) and on the first-letter benchmark (`first_letter_absorption`).
Each SAE's first-letter results are also saved as an absorption run folder (`absorption/<sae>/`),
the ground truth for validating the weights-only detector on it.
Matched L0: TopK uses k = L0 exactly; JumpReLU uses `target_l0 = L0` (with the cost on, the
weights are rescaled to average 1 over firings, so the target stays on the real L0); the
measured L0 is reported, since a penalty only lands near its target.

Each SAE is evaluated with the encoder it was trained with (a frequency-aware TopK selects by
pre-activation minus cost at inference too). Its saved folder read by SAELens is a plain TopK,
which selects otherwise; for those rows that encoder is evaluated as well (`saelens_reads`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import check_positive
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..plots import Series, line_chart
from ..runs import write_config, write_results
from .absorption import AbsorptionConfig, first_letter_absorption
from .config import FreqCostConfig, JumpReLUConfig, SAEConfig, TopKConfig, TrainConfig
from .evaluate import EvalConfig, evaluate
from .frequency import FREQ_COSTS, FreqCost
from .heldout import TRAINING_TEXT, heldout_status, training_text
from .io import saelens_encoder
from .train import buffered_batches, train_saes


@dataclass(frozen=True)
class FreqExperimentConfig:
    """The frequency-aware sparsity experiment."""

    site: str = "blocks.15.hook_resid_post"
    """Site (default: the mid-depth residual stream of the 30-layer default model)."""
    l0s: tuple[int, ...] = (16, 64)
    """L0 values to match (one TopK k and one JumpReLU target each)."""
    expansion: int = 8
    """d_sae = expansion * d_model."""
    freq_cost: FreqCost = "neglog"
    """Form of the frequency-aware cost for the frequency-aware variants."""
    freq_cost_scale: float = 0.5
    """TopK: selection uses pre-activation minus this times the cost weight."""
    l0_coefficient: float = 100.0
    """JumpReLU: weight of (L0 / target - 1)^2; large because it competes with a squared error summed
    over d_in dimensions (inputs of norm sqrt(d_in)): at 1 the L0 drifts far from its target."""
    eval_tokens: int = 20_000
    """Held-out tokens for explained variance and CE loss recovered."""

    def __post_init__(self) -> None:
        if not self.l0s or any(k <= 0 for k in self.l0s):
            raise GreyglassError(f"FreqExperimentConfig.l0s must be positive integers, got {self.l0s!r}")
        if self.freq_cost == "none" or self.freq_cost not in FREQ_COSTS:
            raise GreyglassError(f"FreqExperimentConfig.freq_cost must be one of neglog, power; got {self.freq_cost!r}")
        for name in ("expansion", "freq_cost_scale", "l0_coefficient", "eval_tokens"):
            check_positive("FreqExperimentConfig", name, getattr(self, name))


VARIANTS = ("topk", "topk+freq", "jumprelu", "jumprelu+freq")


def variant_configs(cfg: FreqExperimentConfig, lm: LoadedModel, context_size: int) -> list[tuple[str, int, SAEConfig]]:
    """(variant, L0, SAEConfig) for every row of the table."""
    base = SAEConfig(d_in=lm.d_model, d_sae=cfg.expansion * lm.d_model, hook_name=lm.site(cfg.site).name,
                     model_name=lm.spec, context_size=context_size, prepend_bos=lm.prepend_bos)
    rows = []
    for l0 in cfg.l0s:
        archs = {"topk": TopKConfig(k=l0, freq_cost_scale=cfg.freq_cost_scale),
                 "jumprelu": JumpReLUConfig(target_l0=float(l0), l0_coefficient=cfg.l0_coefficient)}
        for variant in VARIANTS:
            cost = FreqCostConfig(form=cfg.freq_cost) if "+freq" in variant else FreqCostConfig()
            rows.append((variant, l0, base.with_updates(arch=archs[variant.split("+")[0]], freq_cost=cost)))
    return rows


def run_experiment(lm: LoadedModel, cfg: FreqExperimentConfig, tcfg: TrainConfig, corpus: CorpusConfig,
                   acfg: AbsorptionConfig, out: str | Path, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Train every variant in one pass, evaluate each, and return the table's rows."""
    rows = variant_configs(cfg, lm, corpus.context_size)
    site = rows[0][2].hook_name
    batches = buffered_batches(lm, [site], corpus, tcfg.batch_size, tcfg.buffer_tokens, seed=tcfg.seed)
    trained = train_saes([c for _, _, c in rows], tcfg, batches, Path(out) / "saes", resume=resume,
                         progress=progress, provenance={"model": lm.provenance(), TRAINING_TEXT: training_text(corpus)},
                         device=str(lm.device))
    heldout = CorpusConfig(**{**asdict(corpus), "split": "heldout"})
    table = []
    ecfg = EvalConfig(tokens=cfg.eval_tokens)
    for (variant, l0, _), sae, folder in zip(rows, trained.saes, trained.folders):
        status = heldout_status(training_text(corpus), heldout, folder)
        ev = evaluate(sae, lm, ecfg, heldout, progress=progress, heldout=status)
        ab = first_letter_absorption(sae, lm, acfg, progress=progress)
        ground_truth = _save_absorption_run(Path(out) / "absorption" / folder.name, folder, lm, acfg, ab)
        table.append({"variant": variant, "target_l0": l0, **_reconstruction(ev),
                      "dead_fraction": round(ev["dead_fraction"], 4), "dense_fraction": round(ev["dense_fraction"], 4),
                      **absorption_summary(ab), "sae": str(folder), "absorption_run": str(ground_truth)})
        plain = saelens_encoder(sae)
        if plain is not None:  # SAELens computes another encoder from this folder: report it too
            table[-1]["saelens_reads"] = _reconstruction(evaluate(plain, lm, ecfg, heldout, progress=progress,
                                                                  heldout=status))
    return {"rows": table, "train_tokens": trained.tokens, "train_seconds": round(trained.seconds, 1),
            "markdown": markdown_table(table)}


def _reconstruction(ev: dict[str, Any]) -> dict[str, float]:
    """The L0, explained variance and splicing cost (loss increase, KL, CE recovered against mean and
    zero ablation) of one evaluation, rounded for the table."""
    return {"l0": round(ev["l0"], 2), "explained_variance": round(ev["explained_variance"], 4),
            "ce_increase": round(ev["ce_increase"], 4), "kl_sae": round(ev["kl_sae"], 4),
            "ce_loss_recovered_mean": round(ev["ce_loss_recovered_mean"], 4),
            "ce_loss_recovered": round(ev["ce_loss_recovered"], 4)}


def absorption_summary(ab: dict[str, Any]) -> dict[str, Any]:
    """The table's absorption columns: SAEBench's three headline means over letters, each with its
    95% interval from resampling letters (`first_letter_absorption` computes them)."""
    return {key: ab[key] for name in ("mean_absorption_fraction", "full_absorption_rate", "mean_split_features")
            for key in (name, name + "_ci")}


def figures(rows: list[dict[str, Any]]) -> dict[str, str]:
    """SVGs against the measured L0, one line per variant: explained variance, and absorption (95% band)."""
    def series(variant: str, y, keep=lambda r: True) -> Series:
        mine = [r for r in rows if r["variant"] == variant and keep(r)]
        points = [y(r) for r in mine]
        return Series(variant, [r["l0"] for r in mine], *([list(c) for c in zip(*points)] or [[]]))

    def scored(r: dict[str, Any]) -> bool:  # an SAE with no letter above the probe bar has no absorption point
        return r["mean_absorption_fraction"] is not None

    ev = [series(v, lambda r: (r["explained_variance"],)) for v in VARIANTS]
    ab = [series(v, lambda r: (100 * r["mean_absorption_fraction"], *(100 * c for c in r["mean_absorption_fraction_ci"])),
                 scored) for v in VARIANTS]
    return {"frontier.svg": line_chart(ev, "Reconstruction against sparsity", "L0 (active latents per token)",
                                       "explained variance"),
            "absorption.svg": line_chart(ab, "First-letter absorption against sparsity", "L0 (active latents per token)",
                                         "mean absorption fraction (%)")}


def _save_absorption_run(run: Path, sae_folder: Path, lm: LoadedModel, acfg: AbsorptionConfig,
                         results: dict[str, Any]) -> Path:
    """The first-letter results as a `greyglass sae absorption` run folder: the ground truth
    `sae absorption-weights --ground-truth` validates the weights-only detector against."""
    write_config(run, "sae_absorption", sae=str(sae_folder), model=lm.provenance(), absorption=acfg, seed=acfg.seed)
    write_results(run, results)
    return run


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table; the cost of splicing each SAE in (loss increase, KL) comes before CE recovered."""
    head = ("| variant | target L0 | L0 | loss increase (nats) | KL | CE recovered vs mean / zero ablation | "
            "explained variance | dead | dense | absorption fraction | full absorption | split features |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['target_l0']} | {r['l0']:.1f} | {r['ce_increase']:.3f} | {r['kl_sae']:.3f} | "
                     f"{r['ce_loss_recovered_mean']:.3f} / {r['ce_loss_recovered']:.3f} | {r['explained_variance']:.3f} | "
                     f"{r['dead_fraction']:.1%} | {r['dense_fraction']:.1%} | "
                     f"{_pct(r['mean_absorption_fraction'])} | {_pct(r['full_absorption_rate'])} | "
                     f"{r['mean_split_features'] or float('nan'):.2f} |")
    for r in rows:
        if "saelens_reads" in r:
            s = r["saelens_reads"]
            lines.append(f"\n{r['variant']} at target L0 {r['target_l0']} as SAELens reads its folder (a plain TopK, "
                         f"no frequency cost): L0 {s['l0']:.1f}, loss increase {s['ce_increase']:.3f} nats, "
                         f"KL {s['kl_sae']:.3f}, explained variance {s['explained_variance']:.3f}.")
    return "\n".join(lines)



def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
