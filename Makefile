# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
# Without a GPU, install PyTorch's CPU build first (pinned: it lies on these machines' disk, see README);
# with one, pip takes the CUDA build that the project's requirements resolve to.
CPU_TORCH ?= torch==2.13.0

.PHONY: demo test lint space clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	command -v nvidia-smi >/dev/null 2>&1 || $(PIP) install --quiet "$(CPU_TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/accelerate launch scripts/pretrain.py

lint: $(VENV)/.installed
	$(PYTHON) -m ruff check src tests scripts bench spaces utils
	$(PYTHON) -m ruff format --check src tests scripts bench spaces utils

test: lint
	# offline as CI is: a test that reaches for the Hub fails at once instead of waiting on the network
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# the demo Space, ready to upload: miram_hf is not on PyPI, so its wheel goes next to app.py, where requirements.txt
# tells pip to look
space: $(VENV)/.installed
	rm -f spaces/miram-demo/miram_hf-*.whl
	$(PIP) wheel --quiet --no-deps --no-build-isolation --wheel-dir spaces/miram-demo .

clean:
	rm -rf $(VENV) outputs .pytest_cache spaces/miram-demo/miram_hf-*.whl
