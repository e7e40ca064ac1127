# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both run scripts/setup.sh first (idempotent; seconds when nothing changed).
VENV ?= .venv
export VENV
IN_ENV := scripts/in_env.sh

# Extra arguments, e.g. `make demo DEMO_ARGS="--frames 24"`, `make test PYTEST_ARGS="-k io -x"`.
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: all setup demo demo-offline test lint pytest clean

all: test

setup:
	@bash scripts/setup.sh

# The whole product: a sample rosbag replayed through tracker_node over loopback DDS, outputs
# recorded, J&F report + plot + overlay video written.
demo: setup
	@$(IN_ENV) edgetam-demo-ros $(DEMO_ARGS)

# The library alone (no ROS): track a generated clip with one click and write the masks.
demo-offline: setup
	@$(IN_ENV) edgetam-demo $(DEMO_ARGS)

test: setup lint pytest

lint: setup
	$(IN_ENV) ruff check .
	$(IN_ENV) mypy edgetam_core

pytest: setup
	$(IN_ENV) pytest $(PYTEST_ARGS)

clean:
	rm -rf out build install log .pytest_cache .mypy_cache .ruff_cache
