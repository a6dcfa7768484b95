# Every target bootstraps its own virtual environment from the lock file, so a fresh machine
# needs only Python 3.11, pip and make (and Java 17 once the Spark engine is used).
# Everything installed is compiled to bytecode once, as pip does and uv does not unless asked:
# where PYTHONDONTWRITEBYTECODE is set (container images often set it) each process would
# otherwise compile every module it imports, e.g. 1.8 s more to import Great Expectations, and
# each Airflow task runs in a process of its own.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
SCALE  ?= S

.PHONY: venv test demo lint format lock bench fuzz clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 transforms dags > /dev/null
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/pytest

demo: venv
	$(BIN)/segments demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every dependency after editing pyproject.toml.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
		--custom-compile-command "make lock" -o requirements.lock

# A long hunt for disagreements: Polars against DuckDB (CI runs 60 examples, this 3000) and
# against Spark (CI 15, this 300).
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/engines/test_fuzz_engines.py -p no:cacheprovider

# At M and L: no ingest benchmark (at L one date of 100M events does not fit in memory; the nightly one
# lands L's history over ten dates) and no DuckDB-engine contender (too slow and large there).
bench: venv
	$(if $(filter M L,$(SCALE)),,$(BIN)/python -m benchmarks.ingest_bench --scale $(SCALE))
	$(BIN)/python -m benchmarks.materialize_bench --scale $(SCALE) \
		$(if $(filter L,$(SCALE)),--without segments-duckdb,)

clean:
	rm -rf $(VENV) workspace .pytest_cache .ruff_cache .hypothesis
