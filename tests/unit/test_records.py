"""Typed records: a job's Config and Results survive results.json, and bad JSON names the field."""

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import pytest

from greyglass.records import RecordError, from_json, to_json
from greyglass.stats import Estimate


@dataclass(frozen=True)
class Row:
    layer: int
    score: Estimate
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Results:
    rows: tuple[Row, ...]
    by_name: dict[str, float]
    best: int | None
    matrix: tuple[tuple[float, ...], ...] = ()
    notes: list[str] = field(default_factory=list)


def test_round_trip_keeps_types_and_intervals():
    res = Results((Row(1, Estimate(0.5, 0.4, 0.6), "b"), Row(2, Estimate(0.7, float("nan"), float("nan")))),
                  {"x": 1.0}, None, ((1.0, 2.0),), ["n"])
    data = to_json(res)
    assert data["rows"][0]["score"] == {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    back = from_json(Results, data)
    assert back.rows[0] == res.rows[0] and isinstance(back.rows, tuple) and back.matrix == ((1.0, 2.0),)
    assert math.isnan(back.rows[1].score.lo) and back.best is None and back.notes == ["n"]


def test_ints_read_as_floats_and_defaults_fill_missing_fields():
    back = from_json(Results, {"rows": [], "by_name": {"x": 3}, "best": 2})
    assert back.by_name == {"x": 3.0} and isinstance(back.by_name["x"], float) and back.matrix == ()


@pytest.mark.parametrize("data, where", [
    ({"rows": [{"layer": "1", "score": {"value": 1}}], "by_name": {}, "best": None}, r"rows\[0\]\.layer: expected an integer"),
    ({"rows": [{"layer": 1, "score": {"value": 1}, "kind": "c"}], "by_name": {}, "best": None}, r"rows\[0\]\.kind"),
    ({"rows": [], "best": None}, "the field 'by_name' is missing"),
    ({"rows": [{"layer": 1, "score": 0.5}], "by_name": {}, "best": None}, r"rows\[0\]\.score: expected an object"),
    ({"rows": {}, "by_name": {}, "best": None}, "rows: expected a list"),
])
def test_a_value_that_does_not_fit_names_its_field(data, where):
    with pytest.raises(RecordError, match=where):
        from_json(Results, data, "results")


# ---- the rules configs and results now share: one reader, one error style ----------------------

@dataclass(frozen=True)
class Plain:
    name: str = field(default="plain", init=False)
    width: int = 4


@dataclass(frozen=True)
class Gated:
    name: str = field(default="gated", init=False)
    width: int = 4
    gate: float = 0.5


@dataclass(frozen=True)
class Trained:
    arch: Plain | Gated = field(default_factory=Gated)
    rows: tuple[Row, ...] = ()


def test_a_key_no_field_holds_is_an_error_in_results_as_in_configs():
    with pytest.raises(RecordError, match=r"^runs/x/results.json: unknown key\(s\) extra; allowed: rows, by_name"):
        from_json(Results, {"rows": [], "by_name": {}, "best": None, "extra": 1}, "runs/x/results.json")
    with pytest.raises(RecordError, match=r"results.json: rows\[0\]: unknown key\(s\) layr"):
        from_json(Results, {"rows": [{"layr": 1, "score": {"value": 1}}], "by_name": {}, "best": None}, "results.json")
    with pytest.raises(RecordError, match=r"rows\[0\]\.score: unknown key\(s\) n"):
        from_json(Results, {"rows": [{"layer": 1, "score": {"value": 1, "n": 3}}], "by_name": {}, "best": None})


def test_a_union_of_records_is_chosen_by_name_in_results_as_in_configs():
    assert from_json(Trained, {"arch": {"name": "plain", "width": 2}}) == Trained(Plain(width=2))
    assert from_json(Trained, to_json(Trained(Gated(gate=0.1)))) == Trained(Gated(gate=0.1))
    with pytest.raises(RecordError, match=r"^f.json: arch: name = None is not allowed; choose one of: plain, gated"):
        from_json(Trained, {"arch": {"width": 2}}, "f.json")  # fits both members: only the name can tell
    with pytest.raises(RecordError, match=r"arch: name = 'relu' is not allowed"):
        from_json(Trained, {"arch": {"name": "relu"}}, "f.json")


def test_nested_defaults_come_from_the_outer_field_or_a_base_in_run_files_as_in_toml():
    from greyglass.data import CorpusConfig
    from greyglass.sae.config import TrainConfig
    from greyglass.store.config import CaptureRunConfig

    # config.json of a capture that names only the window size: the capture's own default split (train)
    read = from_json(CaptureRunConfig, {"corpus": {"context_size": 16}}, "config.json", "config")
    assert read.corpus == CorpusConfig(context_size=16, split="train")
    base = Row(1, Estimate(0.5, 0.4, 0.6), "b")
    assert from_json(Row, {"layer": 3}, base=base) == Row(3, base.score, "b")
    assert from_json(TrainConfig, asdict(TrainConfig(adam_betas=(0.8, 0.9)))).adam_betas == (0.8, 0.9)  # asdict's tuples


def test_a_config_file_value_of_the_wrong_type_names_the_file_and_the_field(tmp_path):
    from greyglass import GreyglassError
    from greyglass.config import from_toml
    from greyglass.store.config import CaptureRunConfig

    path = tmp_path / "c.toml"
    path.write_text('[capture]\ntokens = "5"\n')
    with pytest.raises(GreyglassError, match=r"c.toml: capture.tokens: expected an integer, found '5'"):
        from_toml(CaptureRunConfig, path)
    path.write_text('[corpus]\nsplit = "test"\n')
    with pytest.raises(GreyglassError, match=r"c.toml: corpus.split: 'test' is not allowed; choose one of: all, train"):
        from_toml(CaptureRunConfig, path)
