"""The one list of jobs: every run kind has a command, typed Config and Results, a report section,
and a CLI test showing that the terminal prints what the report says; `--help` loads no torch."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greyglass.cli import main
from greyglass.jobs import JOBS, JOBS_BY_NAME
from greyglass.tools import TOOLS

TESTS = Path(__file__).resolve().parents[1]


def test_help_imports_neither_torch_nor_transformers():
    code = ("import sys; from greyglass.cli import build_parser; build_parser().format_help(); "
            "print([m for m in ('torch', 'transformers', 'sklearn', 'inspect_ai', 'gguf') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


def test_jobs_and_tools_have_one_name_and_one_command_each():
    assert len(JOBS_BY_NAME) == len(JOBS)
    commands = [job.command for job in JOBS] + [tool.command for tool in TOOLS]
    assert len(set(commands)) == len(commands)
    for job in JOBS:
        assert dataclasses.is_dataclass(job.config) and job.config.__dataclass_params__.frozen, job.name
        assert dataclasses.is_dataclass(job.results), job.name


@pytest.mark.parametrize("command", [job.command for job in JOBS] + [tool.command for tool in TOOLS],
                         ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0 and "usage: greyglass " + " ".join(command) in capsys.readouterr().out


def _cli_calls() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("*.py") if p.name != Path(__file__).name)


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.name)
def test_every_run_kind_is_run_through_the_cli_by_a_test_that_reads_its_section(job):
    """A new job fails here until a test runs its command and compares the terminal with `section_for`."""
    words = r",\s*".join(f'"{w}"' for w in job.command)
    assert re.search(r"\[\s*" + words + r"\s*[,\]]", _cli_calls()), \
        f"no test runs `greyglass {' '.join(job.command)}` through cli.main"
    assert "section_for(" in _cli_calls()
