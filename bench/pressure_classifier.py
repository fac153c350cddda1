"""Accuracy of the pressure-scenario rules, and optionally of a judge model, on hand-labelled agent turns.

Prints JSON: per rule (traded, hid, doubled_down) the rules' accuracy against the labels in
`tests/data/pressure_turns.jsonl` with Wilson 95% intervals and the ids they get wrong; with
`--judge-url` (any OpenAI-compatible chat server, e.g. `greyglass serve-model`), the judge's
accuracy where it answered yes or no, how often it answered neither, how often it says yes, and
its agreement with the rules.

    greyglass serve-model --port 8000 &        # the embedded SmolLM2 as the judge, or any other server
    python bench/pressure_classifier.py [--data FILE] [--judge-url http://127.0.0.1:8000/v1 --cache judge.jsonl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from greyglass.behaviour.config import HttpConfig
from greyglass.behaviour.pressure import classifier_accuracy, read_labelled_turns
from greyglass.behaviour.remote import HttpBackend

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "pressure_turns.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="labelled turns, JSONL (default: the bundled test set)")
    parser.add_argument("--judge-url", help="also measure a judge model at this OpenAI-compatible server")
    parser.add_argument("--cache", help="judge response cache (JSONL), so an interrupted run resumes "
                        "(default: a fresh one, every verdict asked now)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per judge request (default: 600, "
                        "generous because a CPU server answers one request at a time)")
    args = parser.parse_args()
    turns = read_labelled_turns(args.data)
    judge = None
    if args.judge_url:
        cache = args.cache or str(Path(tempfile.mkdtemp()) / "judge.jsonl")
        judge = HttpBackend(HttpConfig(url=args.judge_url, cache=cache, timeout_s=args.timeout, concurrency=1))
    out = {"data": args.data, "n": len(turns), "judge_url": args.judge_url, **classifier_accuracy(turns, judge)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
