# braingan: StyleGAN2 for 2-D brain MRI slices.  `make help` lists the targets.
# Every target runs inside .venv (created by `make install`). Pass Hydra overrides with ARGS:
#   make train ARGS="resolution=128 model=small"
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
CKPT ?=
PYTEST_ARGS ?=
# Another torch build (README: Another CUDA build of torch), e.g. for an older CUDA driver:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu121 TORCH=2.4.1
# TORCH_INDEX: a wheel index holding that build (pip's --index-url); TORCH: its version (default: the
# index's newest); TORCHVISION: the matching release (default: derived from TORCH, 2.N.x -> 0.(N+15).*).
TORCH ?=
TORCH_INDEX ?=
TORCHVISION ?= $(if $(TORCH),$(shell echo '$(TORCH)' | awk -F. '{printf "0.%d.*", $$2 + 15}'))
TORCH_VENV ?= .venv-torch$(TORCH)
LOWEST_VENV ?= .venv-lowest

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-torch test-lowest lint format train resume prepare bench-loader eval audit generate export project plots tensorboard demo-data clean-outputs sweep sweep-report bench guard wheelhouse gpu-check

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY) ## Create .venv and install the pinned requirements and this package (TORCH_INDEX=, TORCH=: another torch build)
	$(PY) -m pip install --upgrade pip
ifeq ($(strip $(TORCH)$(TORCH_INDEX)),)
	$(PY) -m pip install -r requirements.txt
else
	@# That torch first, then the other pins with torch and torchvision held where they are.
	$(PY) -m pip install $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') 'torch$(if $(TORCH),==$(TORCH))' 'torchvision$(if $(TORCHVISION),==$(TORCHVISION))'
	$(PY) -c 'from importlib.metadata import version as v; print("torch==" + v("torch")); print("torchvision==" + v("torchvision"))' > $(VENV)/torch-constraints.txt
	grep -vE '^(torch|torchvision)[ =<>!~;]' requirements.txt > $(VENV)/requirements-without-torch.txt
	$(PY) -m pip install -r $(VENV)/requirements-without-torch.txt -c $(VENV)/torch-constraints.txt
endif
	$(PY) -m pip install --no-deps -e .
	@$(PY) -c "import torch, torchvision, pytorch_lightning, hydra, nilearn; print('installed: torch', torch.__version__, '| lightning', pytorch_lightning.__version__, '| CUDA available:', torch.cuda.is_available())"

test: ## Run the test suite (CPU; GPU tests skip without CUDA)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: ## Run the unit tests only (leaves out the slow end-to-end runs)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-torch: ## The unit tests on another torch, in .venv-torch<TORCH>/: make test-torch TORCH=2.4.1 TORCHVISION=0.19.1
	@test -n '$(TORCH)' || { echo "make test-torch: name the version, e.g. make test-torch TORCH=2.4.1 TORCHVISION=0.19.1" >&2; exit 2; }
	$(MAKE) --no-print-directory install VENV='$(TORCH_VENV)' TORCH='$(TORCH)' TORCHVISION='$(TORCHVISION)' TORCH_INDEX='$(TORCH_INDEX)'
	$(TORCH_VENV)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider $(PYTEST_ARGS)

test-lowest: ## The unit tests with every dependency at the lowest version pyproject.toml allows, in a new .venv-lowest/ (PYTHON=python3.10)
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install uv
	$(LOWEST_VENV)/bin/python -m uv pip install --python $(LOWEST_VENV)/bin/python --resolution lowest-direct -e '.[dev]'
	$(LOWEST_VENV)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider $(PYTEST_ARGS)

lint: ## Check lint, formatting and types (ruff check, ruff format --check, mypy)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy src/braingan

format: ## Format the code and apply ruff's safe fixes
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

train: ## Train (default: demo data; GPU if present, else the CPU preset). ARGS="..." for overrides
	$(PY) -m braingan.train $(ARGS)

resume: ## Continue the newest run exactly where it stopped (resume=last)
	$(PY) -m braingan.train resume=last $(ARGS)

prepare: ## NIfTI/Analyze volumes -> OASIS-layout PNG slices: ARGS="input=/data/vols output=/data/slices"
	$(PY) -m braingan.prepare $(ARGS)

bench: ## Training sec/kimg, peak GPU memory, generation and Inception img/s: ARGS="model=paper batch_size=32 trainer.precision=16-mixed"
	$(PY) -m braingan.bench $(ARGS)

guard: ## Plain vs optimized speed path from one seed: loss and D-output curves overlaid, guard.png + guard.json: ARGS="guard.kimg=4"
	$(PY) -m braingan.guard $(ARGS)

gpu-check: ## A GPU node in one command (8 min): environment, GPU tests, sec/kimg per precision vs official, a short run: ARGS="budget_s=600"
	$(PY) -m braingan.gpu_check $(ARGS)

bench-loader: ## Measure the training data loader in img/s (256x256, 2 workers): ARGS="--workers 2"
	$(PY) -m braingan.data.bench $(ARGS)

project: ## GAN inversion of real slices (CKPT=path, default the newest last.ckpt): ARGS="images=<folder | heldout> mode=w"
	$(PY) -m braingan.project $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

eval: ## FID, KID, precision/recall of a checkpoint (CKPT=path, default the newest last.ckpt): ARGS="num_gen=10000"
	$(PY) -m braingan.eval $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

audit: ## Memorization audit: generated vs training vs held-out subjects (CKPT=path)
	$(PY) -m braingan.audit $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

generate: ## Images, grid, interpolation GIF, style mixing, style embedding (CKPT=path): ARGS="seeds=0-15 psi=0.7"
	$(PY) -m braingan.generate $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

export: ## A generator to share: safetensors + config.json + MODEL_CARD.md (CKPT=path): ARGS="out=<folder> torchscript=true"
	$(PY) -m braingan.export_model $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

sweep: ## SLURM sweep, one job per point (conf/hydra/launcher/slurm.yaml): ARGS="model.r1_gamma=1,2,4 resolution=256"
	$(PY) -m braingan.train -m hydra/launcher=slurm $(filter-out -m --multirun,$(ARGS))

sweep-report: ## Table + CSV of a sweep's runs (DIR=sweep folder, default the newest outputs/multirun/<date>/<time>)
	$(PY) -m braingan.sweep_report $(DIR) $(ARGS)

plots: ## Loss and metric curves of a run as PNGs: ARGS="run=outputs/<date>/<time>"
	$(PY) -m braingan.plots $(ARGS)

demo-data: ## Build the embedded demo dataset (MNI152 slices) into the cache now
	$(PY) -m braingan.data.demo

tensorboard: ## Open TensorBoard on outputs/
	$(VENV)/bin/tensorboard --logdir outputs --bind_all

wheelhouse: ## Wheels for offline compute nodes into wheelhouse/ (not torch): ARGS="python=3.12 only=gpu-check have=have.txt"
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) scripts/wheelhouse.py $(ARGS)

clean-outputs: ## Delete all run folders under outputs/
	find outputs -mindepth 1 -not -name .gitkeep -delete
