# Two commands work on a fresh machine with only Python and pip:
#   make demo   import a real backlog, append updates, claim the next subtask, project tasks.json, show it, write report.html
#   make test   ruff and mypy, then the whole test suite
# Each creates the virtual environment it needs (.venv) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
BACKLOG := tests/fixtures/hacky-hack/001_14b9dc2a33c7.tasks.49991f1.initial.json

.PHONY: venv demo test bench wheel clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,postgres,mcp]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	rm -rf $(DEMO) && mkdir -p $(DEMO)/plan/001_14b9dc2a33c7
	cp $(BACKLOG) $(DEMO)/plan/001_14b9dc2a33c7/tasks.json
	cd $(DEMO) && ../$(BIN)/evstore init
	cd $(DEMO) && ../$(BIN)/evstore import plan/001_14b9dc2a33c7/tasks.json --session 001_14b9dc2a33c7
	cd $(DEMO) && ../$(BIN)/evstore append --session 001_14b9dc2a33c7 P1.M1.T1.S1 Complete
	cd $(DEMO) && printf '%s\n' \
	  '{"item_id": "P1.M1.T1.S2", "status": "Complete"}' \
	  '{"item_id": "P1.M1.T1.S3", "status": "Implementing"}' \
	  '{"item_id": "P1.M1.T1", "status": "Implementing"}' \
	  | ../$(BIN)/evstore append --session 001_14b9dc2a33c7 --jsonl -
	cd $(DEMO) && ../$(BIN)/evstore next --session 001_14b9dc2a33c7 --level subtask --claim --owner demo-agent
	cd $(DEMO) && ../$(BIN)/evstore project --flush-retries 3
	cd $(DEMO) && ../$(BIN)/evstore show --session 001_14b9dc2a33c7 --depth 2
	cd $(DEMO) && ../$(BIN)/evstore log --since 2
	cd $(DEMO) && ../$(BIN)/evstore report --out report.html
	@echo "open $(DEMO)/report.html in a browser: the backlog, its status chart and each item's timeline"

# The gates run first, with the versions pinned in the [test] extra: lint, then types.
test: venv
	$(BIN)/python -m ruff check eventstore projections cli
	$(BIN)/python -m mypy eventstore projections cli
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/append.py
	$(BIN)/python bench/project.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/agent_call.py
	$(BIN)/python bench/importing.py

clean:
	rm -rf $(VENV) $(DEMO) dist build .pytest_cache .hypothesis .mypy_cache .ruff_cache
