"""Probe features and probe fitting, against the obvious alternatives, measured in one process.

Prints JSON. On the default model (SmolLM2-135M-Instruct), 192 `cities` statements:
  (a) `text_features` for every 3rd layer (11 layers) in one early-stopped pass per batch,
  (b) the same features with one `output_hidden_states=True` full forward per batch (what users
      do without greyglass), and
  (c) one `run_to_sites` pass per layer (the naive per-layer loop);
ratios b/a and c/a (target: >= 1, i.e. greyglass is not slower). Then the logistic probe
(5-fold group CV over 4 penalties, scikit-learn L-BFGS per fit) against scikit-learn's `LogisticRegressionCV` with
the same folds count and grid on the same features, and their held-out accuracies.

    python bench/probes.py [--model M]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from greyglass.data.statements import load_statements, split_by_group
from greyglass.models.loader import load_model
from greyglass.models.text_features import _pool, text_features
from greyglass.models.tokens import pad
from greyglass.probes.fit import L2_GRID, fit_probe


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def hidden_states_features(lm, texts, layers, batch_size=32):
    ids = [lm.tokenizer(t).input_ids for t in texts]
    out = []
    for start in range(0, len(ids), batch_size):
        batch, mask = pad(ids[start : start + batch_size], lm.tokenizer.pad_token_id)
        with torch.inference_mode():
            hidden = lm.model(input_ids=batch, attention_mask=mask, output_hidden_states=True).hidden_states
        stacked = torch.stack([hidden[layer + 1] for layer in layers], 1).float()
        out.append(_pool(stacked, mask, "last"))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    lm = load_model(args.model)
    statements = load_statements("cities", n=192)
    texts = [s.text for s in statements]
    layers = sorted({*range(0, lm.n_layers, 3), lm.n_layers - 1})
    text_features(lm, texts[:32], layers)  # warm-up
    feats, t_one = timed(lambda: text_features(lm, texts, layers))
    _, t_hidden = timed(lambda: hidden_states_features(lm, texts, layers))
    _, t_loop = timed(lambda: [text_features(lm, texts, [layer]) for layer in layers])

    from sklearn.linear_model import LogisticRegressionCV

    y = torch.tensor([s.label for s in statements])
    groups = [s.group for s in statements]
    train, test = split_by_group(statements, 0.25, 0)
    x = feats[:, layers.index(12 if 12 in layers else layers[len(layers) // 2])]
    probe, t_ours = timed(lambda: fit_probe("logistic", x[train], y[train], "s", [groups[i] for i in train]))
    z = ((x - x[train].mean(0)) / x[train].std(0)).numpy()
    cs = [1 / (l2 * len(train)) for l2 in L2_GRID]
    ref, t_sk = timed(lambda: LogisticRegressionCV(Cs=cs, cv=5, max_iter=5000, l1_ratios=(0,), scoring="neg_log_loss",
                                                   use_legacy_attributes=False).fit(z[train], y[train].numpy()))
    ours_acc = float(((probe.score(x[test]) > 0).long() == y[test]).float().mean())
    sk_acc = float(np.mean(ref.predict(z[test]) == y[test].numpy()))
    print(json.dumps({
        "model": lm.name, "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "statements": len(texts), "layers": len(layers),
        "features_one_pass_s": round(t_one, 3), "features_hidden_states_s": round(t_hidden, 3),
        "features_per_layer_loop_s": round(t_loop, 3),
        "ratio_hidden_states_over_one_pass": round(t_hidden / t_one, 3),
        "ratio_per_layer_loop_over_one_pass": round(t_loop / t_one, 3),
        "logistic_cv_ours_s": round(t_ours, 3), "logistic_cv_sklearn_s": round(t_sk, 3),
        "ratio_sklearn_over_ours": round(t_sk / t_ours, 3),
        "heldout_accuracy_ours": ours_acc, "heldout_accuracy_sklearn": sk_acc,
    }, indent=2))


if __name__ == "__main__":
    main()
