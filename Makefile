# The two commands of the README. Each creates (or reuses) .venv and installs
# the project into it, with the demo's broker and the test tools (the `demo`
# and `test` extras), when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

# The Apache Kafka broker the tests run beside Tansu: its jars from Maven
# Central, per deploy/kafka/pom.xml, cached in .cache/kafka-<version>/libs.
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs

.PHONY: demo test lint browser runners kafka-jars


# The runners the tests run on, built or fetched once into a cache shared by
# every clone ($$WIRECOPY_CACHE, default ~/.cache/wirecopy): Prism from the Go
# module proxy, Flink from its PyPI packages, Beam's Flink job server from Maven
# Central. See deploy/README.md.
runners: $(INSTALLED)
	deploy/prism.sh $(VENV)/bin/python
	PYTHON=$(VENV)/bin/python deploy/flink.sh fetch
	@command -v mvn >/dev/null || { echo "Beam's Flink job server is fetched with Maven: install it (apt-get install maven)"; exit 1; }
	deploy/flink.sh job-server

demo: $(INSTALLED)
	$(VENV)/bin/wirecopy demo

test: lint $(INSTALLED) browser runners kafka-jars
	$(VENV)/bin/pytest

# ruff (from the test extra) with the settings in pyproject.toml: lint errors,
# no function over cyclomatic complexity 15, and the formatter's layout; then
# mypy over the package, as `wirecopy.*`: the editable install maps the names
# with an import hook that mypy cannot follow, so links in .cache/typecheck do.
TYPECHECK := .cache/typecheck
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	mkdir -p $(TYPECHECK)/wirecopy
	for package in pipelines transforms schemas; do ln -sfn $(CURDIR)/$$package $(TYPECHECK)/wirecopy/$$package; done
	MYPYPATH=$(TYPECHECK) $(VENV)/bin/mypy --cache-dir $(TYPECHECK)/.mypy_cache -p wirecopy

# tests/test_report.py renders the report in headless Chromium: Debian's
# package, installed once when missing (CI runs the tests as root).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium; } || { echo "the report test needs Chromium: apt-get install chromium (as root)"; exit 1; }


kafka-jars: $(KAFKA_LIBS)/.complete

$(KAFKA_LIBS)/.complete: deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "the Apache Kafka jars are fetched with Maven: install it (apt-get install maven)"; exit 1; }
	rm -rf $(KAFKA_LIBS)
	mvn --batch-mode --quiet -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $@

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "wirecopy needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[demo,test]'
	touch $(INSTALLED)
