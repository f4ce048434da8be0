# First steps with PyTorch: an nbgrader course package.
#   make grade   release, autograde every submission in submitted/, feedback, grades.csv, table
#   make test    the package's self-check (pytest); make test-fast: the unit tier only
# Both create .venv with the pinned dependencies when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: grade test test-fast bench demo-class release clean system-deps test-deps

# System tools: bubblewrap and util-linux (prlimit, setpriv) for the sandbox that runs student code;
# Chromium for the test that opens the HTML report; PostgreSQL for the shared-gradebook test. Installed with apt-get when run as root on
# Debian/Ubuntu, otherwise checked and named.
APT_INSTALL = if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	else echo "Please install: $(1) (e.g. sudo apt-get install $(1))"; exit 1; fi

system-deps:
	@command -v bwrap >/dev/null && command -v prlimit >/dev/null && command -v setpriv >/dev/null \
	  || { $(call APT_INSTALL,bubblewrap util-linux); }

test-deps: system-deps
	@command -v chromium >/dev/null || { $(call APT_INSTALL,chromium); }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { $(call APT_INSTALL,postgresql); }

$(STAMP): requirements.lock pyproject.toml selfcheck/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . -e selfcheck
	@touch $(STAMP)

venv: $(STAMP)

grade: $(STAMP) system-deps
	$(BIN)/python -m torchsteps grade

test: $(STAMP) test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tier while developing: pure logic, no kernel, no grading run (about 30 s).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Stock nbgrader vs ours on N generated students (stock on the first 25 when N is larger; N=20 for a
# quick run, without the scaling table); prints per-submission and per-notebook times, the ratio, the
# grades comparison, ours with feedback and the report, and the scaling table (25, 50, 100, 300).
N ?= 100
bench: $(STAMP) system-deps
	$(BIN)/python -m torchsteps.authoring.bench --students $(N) $(if $(filter-out 100,$(N)),--scaling "",)

# Regenerate release/ from source/ (what `make grade` does first: nbgrader generate_assignment, then the
# students' self-check wheel built from selfcheck/) and the demo class from the catalogue.
release: $(STAMP)
	$(BIN)/python -m torchsteps release

demo-class: release
	$(BIN)/python -m torchsteps demo-class

clean:
	rm -rf autograded feedback feedback_zips grades.csv gradebook.db report .grading
