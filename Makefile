# The two commands of the README. Each creates (or reuses) .venv and installs
# the project into it when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

# The Apache Kafka broker the tests run beside Tansu: its jars from Maven
# Central, per deploy/kafka/pom.xml, cached in .cache/kafka-<version>/libs.
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs

.PHONY: demo test kafka-jars

demo: $(INSTALLED)
	$(VENV)/bin/wirecopy demo

test: $(INSTALLED) kafka-jars
	$(VENV)/bin/pytest

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
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)
