# Thin wrappers: the scripts in scripts/ are the source of truth (CI runs .ci/run).
# Pass arguments with ARGS, e.g. `make test ARGS="-k tasks"` or `make serve ARGS="--port 8080"`.
ARGS ?=
LINT_PATHS := $(wildcard src tests bench)

.PHONY: serve test lint bench

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
