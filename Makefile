# The README's commands. `make test` is what CI runs (.ci/run); `make up` is the first command on a
# fresh machine. Both create .venv and install the project into it (editable) when needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: up down test lint bench venv clean fuzz learning-spread train browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (torch 2.14.1 wheels on disk are cp311)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The browser tests (tests/services/test_pages.py) drive Debian's chromium through Playwright; Playwright's
# own browser download (`playwright install`) needs a CDN, so the system package is installed instead.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (Debian) for the browser tests"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null'; }

# pytest exits non-zero (5) when it collects no tests, so an empty run fails too.
test: lint browser
	$(PY) -m pytest

# schemathesis against every app `make up` serves, minutes per app (the tests run it with a small budget).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} FUZZ_MAX_TIME=$${FUZZ_MAX_TIME:-300} deploy/fuzz.sh http://127.0.0.1:8000

# The learning tests at seeds 0-2 with 1 and 2 threads: the spread their thresholds' margins come from.
learning-spread: $(STAMP)
	$(PY) -m tests.learning

bench: $(STAMP)
	$(PY) -m benchmarks.core_scaling --write

# MLflow + Ray head, the zoo registered as champions, every Serve app (nothing trains); prints the URLs.
up: $(STAMP)
	deploy/up.sh

# Retrains the zoo's models (or MODELS="name ...") as Ray jobs on make up's cluster, progress shown.
train: $(STAMP)
	deploy/train.sh $(MODELS)

# Stops what `make up` started, and nothing else.
down:
	deploy/down.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
