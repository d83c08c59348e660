# The two commands of the README. Each creates (or reuses) .venv and installs
# the project into it, with the demo's broker and the test tools (the `demo`
# and `test` extras), when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test

demo: $(INSTALLED)
	$(VENV)/bin/wirecopy demo

test: $(INSTALLED)
	$(VENV)/bin/pytest

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "wirecopy needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[demo,test]'
	touch $(INSTALLED)
