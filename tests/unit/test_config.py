import argparse

import pytest

from greyglass import GreyglassError
from greyglass.config import add_arguments, field_docs, from_namespace, from_toml
from greyglass.data import CorpusConfig
from greyglass.store.config import CaptureConfig


def test_field_docstrings_become_help():
    docs = field_docs(CaptureConfig)
    assert docs["tokens"].startswith("How many token rows")
    parser = argparse.ArgumentParser()
    add_arguments(parser, CaptureConfig)
    help_text = parser.format_help()
    assert "--batch-tokens" in help_text and "Tokens per forward pass" in help_text
    assert "(default: 4096)" in help_text


def test_flags_round_trip_and_validation():
    parser = argparse.ArgumentParser()
    add_arguments(parser, CaptureConfig)
    add_arguments(parser, CorpusConfig)
    ns = parser.parse_args(["--tokens", "10", "--site", "resid_post.1", "--site", "mlp_out.2",
                            "--no-keep-bos", "--split", "heldout"])
    cfg = from_namespace(CaptureConfig, ns)
    assert cfg.tokens == 10 and cfg.sites == ("resid_post.1", "mlp_out.2") and cfg.keep_bos is False
    assert from_namespace(CorpusConfig, ns).split == "heldout"
    with pytest.raises(GreyglassError, match="CaptureConfig.tokens must be > 0"):
        from_namespace(CaptureConfig, parser.parse_args(["--tokens", "-1"]))


def test_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[capture]\ntokens = 5\nsites = ["resid_pre.0"]\n')
    assert from_toml(CaptureConfig, path, "capture") == CaptureConfig(tokens=5, sites=("resid_pre.0",))
    path.write_text("tokenz = 5\n")
    with pytest.raises(GreyglassError, match="unknown key.*tokenz"):
        from_toml(CaptureConfig, path)
    path.write_text("tokens = [\n")
    with pytest.raises(GreyglassError, match="not valid TOML"):
        from_toml(CaptureConfig, path)


def test_nested_configs_become_one_command_and_one_toml_file(tmp_path):
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Both:
        capture: CaptureConfig = field(default_factory=CaptureConfig)
        corpus: CorpusConfig = field(default_factory=CorpusConfig)
        name: str = "x"
        """A top-level field beside the nested ones."""

    parser = argparse.ArgumentParser()
    add_arguments(parser, Both)
    cfg = from_namespace(Both, parser.parse_args(["--tokens", "10", "--split", "heldout", "--name", "y"]))
    assert cfg == Both(CaptureConfig(tokens=10), CorpusConfig(split="heldout"), "y")
    assert "Tokens per forward pass" in parser.format_help()
    path = tmp_path / "c.toml"
    path.write_text('name = "z"\n[capture]\ntokens = 5\n[corpus]\nsplit = "train"\n')
    assert from_toml(Both, path) == Both(CaptureConfig(tokens=5), CorpusConfig(split="train"), "z")
    path.write_text('capture = 3\n')
    with pytest.raises(GreyglassError, match=r"capture must be a table"):
        from_toml(Both, path)


def test_a_nested_config_takes_its_defaults_from_the_outer_field(tmp_path):
    from greyglass.store.config import CaptureRunConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser, CaptureRunConfig)
    assert from_namespace(CaptureRunConfig, parser.parse_args([])).corpus.split == "train"  # not CorpusConfig's "all"
    assert "(default: train)" in " ".join(parser.format_help().split())
    cfg = from_namespace(CaptureRunConfig, parser.parse_args(["--context-size", "16", "--split", "all"]))
    assert cfg.corpus == CorpusConfig(context_size=16, split="all")
    path = tmp_path / "c.toml"
    path.write_text("[corpus]\ncontext_size = 16\n")
    assert from_toml(CaptureRunConfig, path).corpus == CorpusConfig(context_size=16, split="train")


def test_a_field_can_name_its_flag_or_be_positional(capsys):
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Named:
        folder: str = field(metadata={"flag": "folder"})
        """A run folder."""
        sites: tuple[str, ...] = field(default=(), metadata={"flag": "--site"})
        """Sites (repeatable)."""

    parser = argparse.ArgumentParser()
    add_arguments(parser, Named)
    assert from_namespace(Named, parser.parse_args(["runs/a", "--site", "x", "--site", "y"])) == Named("runs/a", ("x", "y"))
    assert "--site SITE" in parser.format_help() and "--sites" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--site", "x"])  # the positional folder is required
    assert "required: folder" in capsys.readouterr().err
