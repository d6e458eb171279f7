# Thin wrappers: the scripts in scripts/ are the source of truth (CI runs .ci/run).
# Pass arguments with ARGS, e.g. `make test ARGS="-k tasks"` or `make serve ARGS="--port 8080"`.
ARGS ?=
LINT_PATHS := $(wildcard src tests bench)

.PHONY: serve test lint bench soak

serve:
	bash scripts/serve $(ARGS)

test:
	bash scripts/test $(ARGS)

lint:
	bash scripts/bootstrap
	.venv/bin/ruff check $(LINT_PATHS)
	.venv/bin/ruff format --check $(LINT_PATHS)
	.venv/bin/mypy
	.venv/bin/lint-imports

# Benchmarks against the peers (installs the `bench` extra); writes docs/performance.md.
bench:
	bash scripts/bench

# The stateful property test, long: random sequences of operations on both backends.
# SOAK_EXAMPLES and SOAK_STEPS size it (CI runs 3 examples of 8 steps per backend).
SOAK_EXAMPLES ?= 200
SOAK_STEPS ?= 40
soak:
	bash scripts/bootstrap
	bash scripts/ensure-postgres
	CLUSTERTASKS_SOAK_EXAMPLES=$(SOAK_EXAMPLES) CLUSTERTASKS_SOAK_STEPS=$(SOAK_STEPS) \
		.venv/bin/pytest tests/acceptance/test_stateful.py --timeout 0 $(ARGS)
