# Two entry points a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Test workers: the tests run mostly on one core each (tiny models, one torch thread, XLA compiles),
# so two workers halve the suite on a 2-core machine. A file's tests stay on one worker (module
# fixtures compile once). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-all setup clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[all,dev,demo,train]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/encdec demo

test: $(STAMP)
	$(PYTEST) tests

test-all: $(STAMP)
	$(PYTEST) --runslow tests

clean:
	rm -rf $(VENV) build *.egg-info
