import argparse
from dataclasses import asdict, dataclass, field

import pytest

from greyglass import GreyglassError
from greyglass.config import (add_arguments, field_docs, flagged, from_flat, from_namespace, from_toml, nested,
                              positional)
from greyglass.data import CorpusConfig
from greyglass.records import from_json
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


# ---- nested configs: a plain nested config and a union of configs told apart by `name` -----------

@dataclass(frozen=True)
class Sgd:
    name: str = field(default="sgd", init=False)
    momentum: float = 0.0
    """Momentum of the updates."""


@dataclass(frozen=True)
class Adam:
    name: str = field(default="adam", init=False)
    beta: float = flagged("adam_beta", default=0.9)
    """Decay of the first moment."""

    def __post_init__(self) -> None:
        if not 0 <= self.beta < 1:
            raise GreyglassError(f"Adam.beta must be in [0, 1), got {self.beta}")


@dataclass(frozen=True)
class Schedule:
    warmup: int = 0
    """Warm-up steps."""


@dataclass(frozen=True)
class Run:
    optimiser: Sgd | Adam = flagged("optim", default_factory=Adam)
    """Which optimiser, with its own settings."""
    schedule: Schedule = field(default_factory=Schedule)
    """The learning-rate schedule."""
    steps: int = 10
    """Optimiser steps."""


def _parser():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Run)
    return parser


def test_nested_configs_become_flat_flags_that_say_where_they_apply():
    help_text = " ".join(_parser().format_help().split())
    assert "--optim {sgd,adam}" in help_text and "Which optimiser, with its own settings. (default: adam)" in help_text
    assert "Momentum of the updates. [--optim sgd] (default: 0.0)" in help_text
    assert "--adam-beta ADAM_BETA Decay of the first moment. [--optim adam]" in help_text
    assert "--warmup WARMUP Warm-up steps." in help_text


def test_nested_flags_build_the_chosen_config():
    def parsed(*argv):
        return from_namespace(Run, _parser().parse_args(list(argv)))

    assert parsed() == Run()
    assert parsed("--optim", "sgd", "--momentum", "0.5", "--warmup", "3") == Run(Sgd(momentum=0.5), Schedule(3))
    assert parsed("--adam-beta", "0.5", "--steps", "4") == Run(Adam(beta=0.5), steps=4)
    with pytest.raises(GreyglassError, match="--momentum does not apply to --optim adam; it is a setting of sgd"):
        parsed("--momentum", "0.5")
    with pytest.raises(GreyglassError, match="Adam.beta must be in"):  # the nested config's own validation runs
        parsed("--adam-beta", "2")


def test_nested_configs_in_toml_and_json(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nsteps = 3\n[run.optimiser]\nname = "sgd"\nmomentum = 0.2\n[run.schedule]\nwarmup = 2\n')
    run = from_toml(Run, path, "run")
    assert run == Run(Sgd(momentum=0.2), Schedule(2), steps=3)
    assert from_json(Run, asdict(run), "run.json") == run  # asdict writes the member's name, from_json reads it
    path.write_text('[optimiser]\nmomentum = 0.2\n')
    with pytest.raises(GreyglassError, match=r"c.toml: optimiser: name = None is not allowed; choose one of: sgd, adam"):
        from_toml(Run, path)
    path.write_text('[optimiser]\nname = "sgd"\nlr = 1\n')
    with pytest.raises(GreyglassError, match=r"c.toml: optimiser: unknown key\(s\) lr; allowed: momentum"):
        from_toml(Run, path)


def test_a_flat_dict_of_flag_values_builds_the_nested_config():
    """How configs written before they nested are read: values of members not chosen are ignored."""
    flat = {"optim": "sgd", "momentum": 0.3, "adam_beta": 0.1, "warmup": 1, "steps": 2}
    assert from_flat(Run, flat) == Run(Sgd(momentum=0.3), Schedule(1), steps=2)


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


def test_a_jobs_fields_without_defaults_are_required_flags_or_positional_arguments():
    from dataclasses import dataclass

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


def test_an_optional_nested_config_is_built_only_when_one_of_its_flags_is_given():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Server:
        url: str
        """Where the server is."""
        timeout_s: float = 60.0
        """Seconds per request."""

    @dataclass(frozen=True)
    class Run:
        server: Server | None = None
        limit: int = 3
        """Items to ask."""

    parser = argparse.ArgumentParser()
    add_arguments(parser, Run)
    assert from_namespace(Run, parser.parse_args(["--limit", "4"])) == Run(None, 4)
    assert from_namespace(Run, parser.parse_args(["--url", "http://x"])) == Run(Server("http://x"), 3)
    with pytest.raises(GreyglassError, match="Server needs --url"):
        from_namespace(Run, parser.parse_args(["--timeout-s", "5"]))


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
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Named:
        folder: str = positional()
        """A run folder."""
        sites: tuple[str, ...] = flagged("site", default=())
        """Sites (repeatable)."""

    parser = argparse.ArgumentParser()
    add_arguments(parser, Named, required=True)
    assert from_namespace(Named, parser.parse_args(["runs/a", "--site", "x", "--site", "y"])) == Named("runs/a", ("x", "y"))
    assert "--site SITE" in parser.format_help() and "--sites" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--site", "x"])  # the positional folder is required
    assert "required: FOLDER" in capsys.readouterr().err


@dataclass(frozen=True)
class Trainer:
    """A config that sets some fields of the configs it nests itself (here `steps`, and Adam's beta)."""

    data: str = positional()
    """The data folder."""
    steps: tuple[int, ...] = flagged("steps", default=(1,))
    """Repeatable: one run each."""
    run: Run = nested(lambda: Run(schedule=Schedule(5)), skip=("steps", "adam_beta"))




def test_a_nested_config_can_leave_fields_to_the_config_around_it():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Trainer, required=True)
    help_text = " ".join(parser.format_help().split())
    assert "positional arguments: DATA The data folder." in help_text and "--adam-beta" not in help_text
    cfg = from_namespace(Trainer, parser.parse_args(["d", "--steps", "3", "--steps", "4", "--optim", "sgd"]))
    # --steps is the outer field's alone; the nested fields not given keep the outer field's default
    assert cfg == Trainer("d", (3, 4), Run(Sgd(), Schedule(5)))
    with pytest.raises(SystemExit):  # a flag left out is not accepted
        parser.parse_args(["d", "--adam-beta", "0.5"])
    with pytest.raises(SystemExit):  # the positional argument is required
        parser.parse_args([])
