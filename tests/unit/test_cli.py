"""The CLI on a tiny model saved as a local Hugging Face folder (also tests folder loading)."""

import json
import sys

import pytest

from greyglass.cli import main
from greyglass.models.loader import load_model
from greyglass.report.build import section_for


def test_local_folder_loads_with_provenance(tiny_llama_folder, tiny_llama):
    lm = load_model(str(tiny_llama_folder))
    assert (lm.n_layers, lm.d_model, lm.family) == (4, 64, tiny_llama.family)
    assert len(lm.sha256) == 64


def test_capture_and_info(tiny_llama_folder, tmp_path, capsys):
    out = tmp_path / "store"
    code = main(["capture", "--model", str(tiny_llama_folder), "--site", "resid_post.1", "--site", "attn_out.3",
                 "--tokens", "500", "--context-size", "16", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "500 of 500 requested" in printed and "blocks.3.hook_attn_out" in printed
    assert section_for(out).summary() in printed  # the terminal says what the report says
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "capture" and config["config"]["corpus"]["context_size"] == 16
    assert config["config"]["corpus"]["split"] == "train"  # the heldout documents stay out, for `sae eval`
    assert config["config"]["capture"]["sites"] == ["resid_post.1", "attn_out.3"]
    assert json.loads((out / "results.json").read_text())["n_tokens"] == 500
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out  # a finished capture is described by its report section, not a second wording
    assert f"activation store {out}: complete" in info and section_for(out).summary() in info


def test_capture_resumes_and_extends_a_store(tiny_llama_folder, tmp_path, capsys):
    out = tmp_path / "store"
    args = ["capture", "--model", str(tiny_llama_folder), "--site", "resid_post.1", "--context-size", "16",
            "--shard-tokens", "200", "--out", str(out), "--no-progress"]
    assert main([*args, "--tokens", "300"]) == 0
    assert main([*args, "--tokens", "600"]) == 2  # an existing store is never silently appended to
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--tokens", "600", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "600 of 600 requested" in printed and section_for(out).summary() in printed
    assert json.loads((out / "results.json").read_text())["n_tokens"] == 600


def test_capture_of_an_empty_corpus_is_an_error_and_leaves_no_store(tiny_llama_folder, tmp_path, write_lines, capsys):
    empty = write_lines("empty.txt", [])
    out = tmp_path / "store"
    code = main(["capture", "--model", str(tiny_llama_folder), "--site", "resid_post.1", "--corpus", str(empty),
                 "--context-size", "16", "--out", str(out), "--no-progress"])
    assert code == 2
    assert "nothing to capture" in capsys.readouterr().err
    assert not out.exists()  # so the same --out works once there is text


def test_capture_says_how_many_tokens_a_short_corpus_gave(tiny_llama_folder, tmp_path, write_lines, capsys):
    short = write_lines("short.txt", ["A short corpus of a few sentences. " * 4])
    out = tmp_path / "store"
    code = main(["capture", "--model", str(tiny_llama_folder), "--site", "resid_post.1", "--corpus", str(short),
                 "--split", "all", "--context-size", "16", "--tokens", "5000", "--out", str(out), "--no-progress"])
    assert code == 0
    n = json.loads((out / "results.json").read_text())["n_tokens"]
    assert 0 < n < 5000
    printed = capsys.readouterr().out
    assert f"for {n:,} tokens of {short}. The corpus ran out before the 5,000 tokens asked for" in printed
    assert f"{n:,} of 5,000 requested" in printed
    assert json.loads((out / "results.json").read_text())["corpus_ran_out"] is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--site", "resid_post.9"], "layer 9 is out of range; this model has layers 0 to 3"),
        (["--site", "resid_middle.1"], "unknown site kind"),
        (["--site", "resid_post.1", "--corpus", "/no/such/file.jsonl"], "does not exist"),
        (["--site", "resid_post.1", "--tokens", "0"], "tokens must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_llama_folder, tmp_path, capsys, argv, message):
    code = main(["capture", "--model", str(tiny_llama_folder), "--out", str(tmp_path / "o"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_model_lists_known_ones(capsys):
    assert main(["capture", "--model", "gpt-17", "--site", "resid_post.1"]) == 2
    assert "known names: smollm2-135m-instruct, gemma3-270m" in capsys.readouterr().err


def test_info_on_missing_store(tmp_path, capsys):
    assert main(["info", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _command_paths(parser, path=()):
    """Every command and verb under `parser`, found by walking its sub-parsers (none hard-coded)."""
    import argparse

    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _command_paths(child, (*path, name))


def test_help_works_for_every_command_and_verb(capsys):
    """`--help` is %-formatted by argparse: a bare % in a help string crashes it, a %% in a description shows."""
    from greyglass.cli import build_parser

    paths = list(_command_paths(build_parser()))
    assert ("organism", "train") in paths and ("eval",) in paths  # the walk reaches nested verbs
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0, path
        assert "usage: greyglass" in out and "%%" not in out, (path, out)


def test_models_lists_the_embedded_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct [default]" in out and "gemma3-270m" in out


def test_the_list_of_jobs_and_tools_loads_neither_torch_nor_transformers():
    """`greyglass --help` imports every job and tool: their modules must leave the heavy libraries to `run`."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, greyglass.jobs; "
            "print(','.join(m for m in ('torch', 'transformers', 'starlette') if m in sys.modules))")
    src = str(Path(__file__).parents[2] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src})
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


@pytest.mark.parametrize("argv, recorded", [
    (["/venv/bin/greyglass", "sae", "train"], ["/venv/bin/greyglass", "sae", "train"]),
    (["/src/greyglass/__main__.py", "sae", "train"], ["greyglass", "sae", "train"]),  # python -m greyglass, torchrun
    (["/src/greyglass/cli.py", "eval"], ["greyglass", "eval"]),  # python -m greyglass.cli
    (["/venv/bin/pytest", "-q"], None),  # a library call: the argv is not a greyglass command line
])
def test_config_json_records_the_greyglass_command_line_however_it_was_started(monkeypatch, argv, recorded):
    from greyglass.runs import command_line

    monkeypatch.setattr(sys, "argv", argv)
    assert command_line() == recorded
