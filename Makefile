# First steps with PyTorch: an nbgrader course package.
#   make grade   release, autograde every submission in submitted/, feedback, grades.csv, table
#   make test    the package's self-check (pytest)
# Both create .venv with the pinned dependencies when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: grade test demo-class release clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

grade: $(STAMP)
	$(BIN)/python -m torchsteps grade

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate release/ from source/ (what `make grade` does first) and the demo class from the catalogue.
release: $(STAMP)
	$(BIN)/nbgrader generate_assignment pytorch_basics --force

demo-class: release
	$(BIN)/python -m torchsteps demo-class

clean:
	rm -rf autograded feedback grades.csv gradebook.db
