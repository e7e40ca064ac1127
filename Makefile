# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both run scripts/setup.sh first (idempotent; seconds when nothing changed).
VENV ?= .venv
export VENV
IN_ENV := scripts/in_env.sh

# Extra arguments, e.g. `make demo DEMO_ARGS="--frames 24"`, `make test PYTEST_ARGS="-k io -x"`.
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: all setup demo test lint pytest clean

all: test

setup:
	@bash scripts/setup.sh

demo: setup
	@$(IN_ENV) edgetam-demo $(DEMO_ARGS)

test: setup lint pytest

lint: setup
	$(IN_ENV) ruff check .
	$(IN_ENV) mypy edgetam_core

pytest: setup
	$(IN_ENV) pytest $(PYTEST_ARGS)

clean:
	rm -rf out build install log .pytest_cache .mypy_cache .ruff_cache
