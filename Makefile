# Two commands for a new user: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_CONFIG ?= config_files/pipeline/synth_derm.yaml

.PHONY: demo test test-fast install clean-outputs

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.run_pipeline --config_file $(DEMO_CONFIG)

# the explorer's browser tests need chromium and chromium-driver: installed here when possible (as root,
# with apt-get), else those tests are skipped and one line says why
test: $(STAMP)
	@bash tests/browser/install.sh
	$(PY) -m pytest -q tests

# the quick loop while editing: leaves out the tests marked slow (each over about 20 s)
test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow"

clean-outputs:
	rm -rf outputs
