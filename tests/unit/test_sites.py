import os
import subprocess
import sys
from pathlib import Path

import pytest

from greyglass import GreyglassError
from greyglass.models.sites import Site, parse_site


@pytest.mark.parametrize(
    "text, expected",
    [
        ("blocks.3.hook_resid_post", Site(3, "resid_post")),
        ("resid_post.10", Site(10, "resid_post")),
        ("blocks.0.hook_resid_pre", Site(0, "resid_pre")),
        ("attn_out.2", Site(2, "attn_out")),
        (" blocks.7.hook_mlp_out ", Site(7, "mlp_out")),
    ],
)
def test_parse_long_and_short_forms(text, expected):
    assert parse_site(text) == expected
    assert parse_site(expected.name) == expected


def test_out_of_range_layer_names_the_valid_range():
    with pytest.raises(GreyglassError, match="layers 0 to 29"):
        parse_site("resid_post.30", n_layers=30)


@pytest.mark.parametrize("bad", ["resid_mid.3", "blocks.3.hook_foo", "layer3", "blocks.x.hook_resid_post"])
def test_unknown_sites_are_clear_errors(bad):
    with pytest.raises(GreyglassError, match="site"):
        parse_site(bad)


def test_forward_order():
    sites = [Site(1, "resid_post"), Site(1, "mlp_out"), Site(1, "resid_pre"), Site(0, "resid_post"), Site(1, "attn_out")]
    ordered = sorted(sites, key=lambda s: s.order)
    assert [s.name for s in ordered] == [
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
    ]


def test_sites_sort_in_forward_order_not_by_name():
    from greyglass.models.sites import parse_site

    names = ["blocks.10.hook_resid_pre", "blocks.2.hook_resid_post", "blocks.2.hook_attn_out", "blocks.2.hook_mlp_out",
             "blocks.2.hook_resid_pre"]
    assert [s.name for s in sorted(map(parse_site, names))] == [
        "blocks.2.hook_resid_pre", "blocks.2.hook_attn_out", "blocks.2.hook_mlp_out", "blocks.2.hook_resid_post",
        "blocks.10.hook_resid_pre"]


def test_site_names_import_no_torch():
    """Configs read site names at `--help` time: `greyglass.models` re-exports nothing torch-heavy."""
    code = "import sys, greyglass.models.sites; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "False"
