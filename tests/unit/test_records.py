"""Typed records: a job's Config and Results survive results.json, and bad JSON names the field."""

import math
from dataclasses import dataclass, field
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
