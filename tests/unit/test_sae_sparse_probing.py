"""Sparse probing (SAEBench-style): the selection rule, the split, and the command on a tiny model."""

import json

import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.report.build import section_for
from greyglass.sae.config import SparseProbingConfig
from greyglass.sae.sparse_probing import split_units, top_latents_by_mean_difference


def test_latents_are_chosen_by_the_absolute_difference_of_class_means():
    y = np.array([1, 1, 0, 0])
    z = torch.tensor([[5.0, 0.0, 1.0, 0.0], [5.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 3.0, 0.5, 0.0]])
    assert top_latents_by_mean_difference(z, y, 2) == [0, 1]  # 5 up, 3 down: both separate the classes
    assert top_latents_by_mean_difference(z, y, 3)[2] == 2


def test_the_split_keeps_each_unit_on_one_side():
    units = np.array([f"line {i % 50}" for i in range(100)])  # a sentence and its translation share a unit
    train = split_units(units, 0.3, seed=0)
    assert not set(units[train]) & set(units[~train]) and len(set(units[~train])) == 15


def test_config_names_the_bad_field():
    with pytest.raises(GreyglassError, match="SparseProbingConfig.tasks"):
        SparseProbingConfig(tasks=("colours",))
    with pytest.raises(GreyglassError, match="--probe-k"):
        SparseProbingConfig(ks=(0,))


def test_sparse_probing_command_on_a_tiny_model(tiny_sae_folder, tmp_path, capsys):
    """The mechanics on a random tiny model (its byte tokenizer has no whole-word tokens: no first-letter task)."""
    args = ["sae", "sparse-probing", str(tiny_sae_folder), "--task", "cities", "--task", "language", "--task", "sycophancy",
            "--probe-k", "1", "--probe-k", "5", "--examples", "40", "--no-progress", "--out", str(tmp_path / "sp")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert section_for(tmp_path / "sp").summary() in printed
    r = json.loads((tmp_path / "sp" / "results.json").read_text())
    assert [t["task"] for t in r["tasks"]] == ["cities", "language", "sycophancy"]
    for t in r["tasks"]:
        assert [s["k"] for s in t["sparse"]] == [1, 5] and len(t["sparse"][1]["latents"]) == 5
        for est in (t["raw"], *(s["accuracy"] for s in t["sparse"])):
            assert 0 <= est["ci_low"] < est["ci_high"] <= 1 and est["ci_low"] <= est["value"] <= est["ci_high"]
        assert t["n_train"] + t["n_test"] == 40 and t["test_clusters"] >= 2
    assert main([*args[:3], "--task", "first_letter", "--out", str(tmp_path / "fl")]) == 2
    assert "single-token words" in capsys.readouterr().err
