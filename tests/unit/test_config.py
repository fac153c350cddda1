import argparse

import pytest

from greyglass import GreyglassError
from greyglass.config import add_arguments, field_docs, from_namespace, from_toml
from greyglass.data import CorpusConfig
from greyglass.store import CaptureConfig


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
    ns = parser.parse_args(["--tokens", "10", "--sites", "resid_post.1", "--sites", "mlp_out.2",
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


def test_a_jobs_fields_without_defaults_are_required_flags_or_positional_arguments():
    from dataclasses import dataclass

    from greyglass.config import positional

    @dataclass(frozen=True)
    class Cmd:
        folder: str = positional()
        """The input folder."""
        latent: int
        """A required flag."""
        words: tuple[str, ...]
        """Required and repeatable."""
        value: float = 1.0

    parser = argparse.ArgumentParser()
    add_arguments(parser, Cmd, required=True)
    cfg = from_namespace(Cmd, parser.parse_args(["runs/x", "--latent", "3", "--words", "a", "--words", "b"]))
    assert cfg == Cmd("runs/x", 3, ("a", "b"))
    assert "FOLDER" in parser.format_help() and "The input folder." in parser.format_help()
    for argv in (["--latent", "3", "--words", "a"], ["runs/x", "--words", "a"], ["runs/x", "--latent", "3"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    loose = argparse.ArgumentParser()  # not a job's command: such fields are optional flags (built when given)
    add_arguments(loose, Cmd)
    assert vars(loose.parse_args([])) == {}
