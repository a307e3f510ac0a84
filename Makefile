# infersuite — every target sets up what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.installed-$(shell cat requirements/serve.txt requirements/protos.txt requirements/dev.txt | sha1sum | cut -c1-12)
# Serving alone needs no torch: requirements/serve.txt + the stub generator.
SERVE_STAMP := $(VENV)/.serve-$(shell cat requirements/serve.txt requirements/protos.txt | sha1sum | cut -c1-12)
PROTO_SRC := $(wildcard infersuite/protos/*.proto)
PROTO_STAMP := infersuite/protos/.generated
REPOSITORY ?= model_repository
REPOSITORY_STAMP := $(REPOSITORY)/.built
# The default models committed with the project (`make ship-models` rebuilds them from the current code).
SHIPPED := shipped_models
# `make serve` serves model_repository/ once `make models` built it, else the shipped models.
SERVE_REPOSITORY ?= $(if $(wildcard $(REPOSITORY_STAMP)),$(REPOSITORY),$(SHIPPED))
PAYLOADS := build/splitcompute_payloads
PAYLOADS_STAMP := $(PAYLOADS)/.written
# What development targets need: the full environment (torch, tests, lint) and the stubs.
DEV := $(SETUP_STAMP) $(PROTO_STAMP)

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

TRITON_STAMP := .triton/.installed

.PHONY: hear-tools hear-validate setup serve-setup ship-models verify-models tools triton deploy-tools docker-tools docker docker-test protos models serve test test-fast lint bench-ctr bench-serving quantize-report loadtest bench-loadtest bench-loadtest-generator report-ctr train-ctr report-ctr-user-data train-splitcompute report-splitcompute-user-data train-segmentation report-segmentation-user-data eval-audio train-audio report-quantization report-segmentation report-audio report-splitcompute splitcompute-studies splitcompute-payloads reliability-test bench-reliability bench-overload bench-refusal-cost bench-stop-backlog bench-shutdown bench-supervision bench-hostile bench-quantization bench-metrics-cost bench-transport bench-hostile-sync peers peers-check clean
# Old names of report and bench targets, kept as aliases of the new ones (at the end of this file).
.PHONY: bench-audio bench-splitcompute bench-quant-production reliability-report report-hostile report-reliability
.PHONY: audio-studies
.PHONY: audio-tools audio-corpus report-audio-corpus report-audio-fine-tune pretrain-audio report-audio-pretrain ship-audio-pretrained
.PHONY: report-audio-pretrain-seeds report-audio-patchout report-audio-quantization
.PHONY: verify-audio-pretrained pretrain-audio-stats report-audio-pooling
.PHONY: bench-triton-front
.PHONY: bench-data-throughput bench-audio-rtf report-audio-bow-corpus bench-ctr-regularisers report-ctr-sparse-quality report-ctr-regulariser-sweep
.PHONY: report-segmentation-parents report-splitcompute-gdn

setup: $(SETUP_STAMP)

# Debian tools the tests use: promtool (from prometheus) checks the /metrics text.
tools:
	@command -v promtool >/dev/null || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

# Debian packages the audio corpus is built from (issue 25; ~20 MB installed; tests/unit/models/test_audio_corpus.py
# renders a few clips with them and checks this list against models/audio/corpus).
AUDIO_CORPUS_PACKAGES := espeak-ng espeak-ng-data fluidsynth timgm6mb-soundfont sound-theme-freedesktop \
  oxygen-sounds yaru-theme-sound deepin-sound-theme sound-icons heroes-sound-effects
audio-tools:
	@test "$$(dpkg-query -W -f '$${db:Status-Status}\n' $(AUDIO_CORPUS_PACKAGES) 2>/dev/null | grep -cx installed)" \
	  = "$(words $(AUDIO_CORPUS_PACKAGES))" || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(AUDIO_CORPUS_PACKAGES); }

# The audio corpus of real recordings and renderings (issue 25) into artifacts/audio-corpus: manifest.md
# states its size, sources, versions, licences and held-out splits (541 s on this 2-core machine; a rebuild is byte-identical).
audio-corpus: $(DEV) audio-tools
	$(PY) -m models.audio.corpus build --out artifacts/audio-corpus

# The shipped audio embedders and log-mel statistics on the corpus's held-out voices, words, instruments and
# packages (linear probe, bootstrap intervals, shuffled-label controls): reports/audio_corpus.md, with the
# corpus's manifest (sources, versions, licences, size) beside it. Builds the corpus first when absent.
report-audio-corpus: $(DEV) audio-tools hear-baseline
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	@test -d artifacts/audio-corpus/tasks/onset_unseen_sources || $(PY) -m models.audio.corpus onsets --corpus artifacts/audio-corpus
	$(PY) -m models.audio.corpus evaluate --corpus artifacts/audio-corpus --repository shipped_models \
		--report reports/audio_corpus.md --hear-baseline $(HEAR_BASELINE_VENV)/bin/python
	cp artifacts/audio-corpus/manifest.md reports/audio_corpus_manifest.md

# The audio family's run on real packaged data (issue 24): recorded sound effects of Debian game packages (none
# in the audio corpus) as a HEAR scene task of six kinds, 5 folds (models/audio/packaged_task.py), through the same
# path as a user's task, linear and MLP probes -> reports/audio_packaged.md with the packages, versions, licences;
# then the same clips in folds of whole packages (held-out games) -> reports/audio_packaged_by_package.md.
AUDIO_PACKAGED_PACKAGES := btanks-data scorched3d-data lbreakout2-data mirrormagic-data chromium-bsu-data \
  pingus-data tuxpaint-data frozen-bubble-data
.PHONY: report-audio-packaged
report-audio-packaged: $(DEV) hear-baseline
	@test "$$(dpkg-query -W -f '$${db:Status-Status}\n' $(AUDIO_PACKAGED_PACKAGES) 2>/dev/null | grep -cx installed)" \
	  = "$(words $(AUDIO_PACKAGED_PACKAGES))" || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(AUDIO_PACKAGED_PACKAGES); }
	rm -rf artifacts/audio-packaged
	$(PY) -m models.audio.packaged_task build artifacts/audio-packaged/task
	$(PY) -m models.audio.user_data --format hear --data artifacts/audio-packaged/task --repository $(SHIPPED) \
		--probe both --no-progress --report reports/audio_packaged.md \
		--hear-baseline $(HEAR_BASELINE_VENV)/bin/python
	cat artifacts/audio-packaged/task/sources.md >> reports/audio_packaged.md
	$(PY) -m models.audio.packaged_task build artifacts/audio-packaged/by-package --split packages
	$(PY) -m models.audio.user_data --format hear --data artifacts/audio-packaged/by-package --repository $(SHIPPED) \
		--probe both --no-progress --report reports/audio_packaged_by_package.md \
		--hear-baseline $(HEAR_BASELINE_VENV)/bin/python
	cat artifacts/audio-packaged/by-package/sources.md >> reports/audio_packaged_by_package.md

# PaSST (shipped config, Patchout in training) pretrained on the corpus's pretrain clips only, one linear head per
# label (source, word, voice, GM family, pitch class, octave, event kind), then probed on the held-out tasks beside
# the shipped embedders, log-mel statistics and the untrained PaSST, with paired bootstrap differences:
# artifacts/audio-pretrain/{pretrain.pt,quality.md} (~8 min pretraining + ~3 min evaluation on this 2-core machine).
pretrain-audio: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	$(PY) -m models.audio.pretrain --corpus artifacts/audio-corpus --out artifacts/audio-pretrain --epochs 40

# The first pretraining's held-out table, seed 0 (~11 min): reports/audio_pretrain.md.
report-audio-pretrain: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	$(PY) -m models.audio.pretrain --corpus artifacts/audio-corpus --out artifacts/audio-pretrain/seed0-e40 --epochs 40
	cp artifacts/audio-pretrain/seed0-e40/quality.md reports/audio_pretrain.md

# The same pretraining over training seeds (issues 25 and 27): each seed of AUDIO_PRETRAIN_SEEDS whose
# artifacts/audio-pretrain/seed<s>-e40/pretrain.pt is missing is pretrained and evaluated as above (~11 min each); each
# checkpoint whose $(AUDIO_PRETRAIN_EVAL)/seed<s>/quality.json is missing is re-evaluated on the held-out tasks
# (~3 min each: linear probe and hear-eval-kit's MLP probe, per-clip results; the seed<s>-e40 runs' own quality.json
# is left as it was), then models.audio.pretrain_seeds reads those quality.json files (seconds): per task and probe,
# hierarchical bootstrap intervals (seeds x test clips) of the pretrained PaSST minus log-mel statistics and minus the
# untrained PaSST, and issue 25's goal per task: reports/audio_pretrain_seeds.{md,json}.
AUDIO_PRETRAIN_SEEDS ?= 0 1 2 3 4
AUDIO_PRETRAIN_EVAL := artifacts/audio-pretrain/eval-mlp
report-audio-pretrain-seeds: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	for seed in $(AUDIO_PRETRAIN_SEEDS); do test -f artifacts/audio-pretrain/seed$$seed-e40/pretrain.pt || \
	  $(PY) -m models.audio.pretrain --corpus artifacts/audio-corpus --out artifacts/audio-pretrain/seed$$seed-e40 \
	  --epochs 40 --seed $$seed || exit 1; test -f $(AUDIO_PRETRAIN_EVAL)/seed$$seed/quality.json || \
	  $(PY) -m models.audio.pretrain --corpus artifacts/audio-corpus --seed $$seed \
	  --checkpoint artifacts/audio-pretrain/seed$$seed-e40/pretrain.pt --out $(AUDIO_PRETRAIN_EVAL)/seed$$seed || exit 1; done
	$(PY) -m models.audio.pretrain_seeds --runs $(foreach seed,$(AUDIO_PRETRAIN_SEEDS),$(AUDIO_PRETRAIN_EVAL)/seed$(seed)) \
	  --report reports/audio_pretrain_seeds.md

# The corpus-pretrained PaSST shipped as the default audio-passt-fp32 (exporters/audio_pretrained.py): the checkpoint of
# report-audio-pretrain (pretrained here when missing, ~11 min; AUDIO_PRETRAIN_SEED=1 ships artifacts/.../seed1-e40),
# exported by the exporter and parity gate of exporters/audio.py, the quantization gate of quantize-report
# (reports/audio_passt_quantization.md), hearvalidator on the export, then only that model replaced in $(SHIPPED)
# (manifest, SHIPPED.json update with the seed and these commands); bag-of-words stays as shipped. ~3 min.
# exporters.build (the synthetic world) does not build this model: verify-audio-pretrained checks it (below).
AUDIO_PRETRAIN_SEED ?= 0
AUDIO_PRETRAINED := artifacts/audio-pretrain/seed$(AUDIO_PRETRAIN_SEED)-e40
AUDIO_SHIP := artifacts/ship-audio/repository
AUDIO_SHIP_ARGS := --checkpoint $(AUDIO_PRETRAINED)/pretrain.pt --out $(AUDIO_SHIP) \
	--quantization-report reports/audio_passt_quantization.md
AUDIO_BUILT_BY := make ship-audio-pretrained AUDIO_PRETRAIN_SEED=$(AUDIO_PRETRAIN_SEED): python -m models.audio.pretrain \
	--corpus artifacts/audio-corpus --out $(AUDIO_PRETRAINED) --epochs 40 --seed $(AUDIO_PRETRAIN_SEED); \
	python -m exporters.audio_pretrained export $(AUDIO_SHIP_ARGS)
# The quantization gate alone on the shipped audio-passt-fp32 (a copy), scored on the corpus's held-out tasks
# -> reports/audio_passt_quantization.md (~10 min; builds the corpus first when missing)
report-audio-quantization: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	$(PY) -m exporters.audio_pretrained gate --shipped $(SHIPPED) --quantization-report reports/audio_passt_quantization.md

ship-audio-pretrained: $(DEV) audio-tools hear-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	@test -f $(AUDIO_PRETRAINED)/pretrain.pt -a -f $(AUDIO_PRETRAINED)/quality.json || $(PY) -m models.audio.pretrain \
	  --corpus artifacts/audio-corpus --out $(AUDIO_PRETRAINED) --epochs 40 --seed $(AUDIO_PRETRAIN_SEED)
	rm -rf $(AUDIO_SHIP)
	$(PY) -m exporters.audio_pretrained export $(AUDIO_SHIP_ARGS)
	PYTHONPATH=$(CURDIR) $(HEAR_VENV)/bin/hear-validator hear_infersuite.passt --model $(AUDIO_SHIP)/audio-passt-fp32 \
	  2>&1 | tee /dev/stderr | grep -q '^Looks good!$$' || { echo "hearvalidator failed on the export"; exit 1; }
	$(PY) -m exporters.audio_pretrained ship $(AUDIO_SHIP_ARGS) --to $(SHIPPED) --built-by "$(AUDIO_BUILT_BY)"

$(SETUP_STAMP): requirements/serve.txt requirements/protos.txt requirements/dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt
	@rm -f $(VENV)/.installed-* $(VENV)/.serve-* && touch $@ $(SERVE_STAMP)

serve-setup: $(SERVE_STAMP)

$(SERVE_STAMP): requirements/serve.txt requirements/protos.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "Installing the serving dependencies (requirements/serve.txt: no torch) into $(VENV)"
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/serve.txt -r requirements/protos.txt
	@rm -f $(VENV)/.serve-* && touch $@

# A real Triton Inference Server for the scale-out tests: the tritonserver binary inside the
# nvidia-pytriton wheel (without pytriton's own dependencies), plus numpy 1.x for its python backend.
triton: $(TRITON_STAMP)

$(TRITON_STAMP): $(SETUP_STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target .triton/server nvidia-pytriton==0.7.0
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target .triton/python numpy==1.26.4
	@touch $@

HEAR_VENV := .hear-venv
HEAR_STAMP := $(HEAR_VENV)/.installed-$(shell cat requirements/hear.txt | sha1sum | cut -c1-12)
HEARVALIDATOR := hearvalidator==2021.0.6

# The official HEAR 2021 validator in its own venv (see requirements/hear.txt for why); the tests run it.
hear-tools: $(HEAR_STAMP)

$(HEAR_STAMP): requirements/hear.txt
	@test -x $(HEAR_VENV)/bin/python || python3 -m venv $(HEAR_VENV)
	$(HEAR_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/hear.txt
	$(HEAR_VENV)/bin/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python $(HEARVALIDATOR)
	@rm -f $(HEAR_VENV)/.installed-* && touch $@

# The public HEAR 2021 baseline in its own venv (requirements/hear-baseline.txt says why); report-audio-corpus and
# report-audio-packaged probe it beside the shipped embedders (models.audio.user_data --hear-baseline PYTHON).
HEAR_BASELINE_VENV := .hear-baseline-venv
HEAR_BASELINE_STAMP := $(HEAR_BASELINE_VENV)/.installed-$(shell cat requirements/hear-baseline.txt | sha1sum | cut -c1-12)
.PHONY: hear-baseline
hear-baseline: $(HEAR_BASELINE_STAMP)

$(HEAR_BASELINE_STAMP): requirements/hear-baseline.txt
	@test -x $(HEAR_BASELINE_VENV)/bin/python || python3 -m venv $(HEAR_BASELINE_VENV)
	$(HEAR_BASELINE_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/hear-baseline.txt
	$(HEAR_BASELINE_VENV)/bin/pip install -q --disable-pip-version-check --no-deps hearbaseline==2021.1.1
	@rm -f $(HEAR_BASELINE_VENV)/.installed-* && touch $@

# hearvalidator on both embedders of the model repository; fails unless it prints its success line.
hear-validate: $(REPOSITORY_STAMP) hear-tools
	@for embedder in passt bow; do \
	  PYTHONPATH=$(CURDIR) $(HEAR_VENV)/bin/hear-validator hear_infersuite.$$embedder --model $(REPOSITORY)/audio-$$embedder-fp32 \
	    2>&1 | tee /dev/stderr | grep -q '^Looks good!$$' || { echo "hearvalidator failed on $$embedder"; exit 1; }; \
	done

DEPLOY_VENV := .deploy-venv
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-compose
CONTAINERS_CONF := $(CURDIR)/docker/containers.conf

# Compose tools in their own venv: docker-compose 1.29.2 pins PyYAML<6/jsonschema<4 and builds PyYAML 5.4.1 (needs cython<3).
deploy-tools: $(DEPLOY_STAMP)

$(DEPLOY_STAMP):
	@test -x $(DEPLOY_VENV)/bin/python || python3 -m venv $(DEPLOY_VENV)
	echo 'cython<3' > $(DEPLOY_VENV)/constraints.txt
	PIP_CONSTRAINT=$(CURDIR)/$(DEPLOY_VENV)/constraints.txt $(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check docker-compose==1.29.2 podman-compose==1.6.0
	@touch $@

# Debian tools for the container test: podman+runc build/run the images, debootstrap makes the local base image.
docker-tools:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null && test -x /usr/libexec/podman/catatonit || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    podman runc catatonit golang-github-containernetworking-plugin-dnsname debootstrap uidmap slirp4netns fuse-overlayfs; }

docker: docker-tools
	CONTAINERS_CONF=$(CONTAINERS_CONF) docker/build_base_image.sh
	CONTAINERS_CONF=$(CONTAINERS_CONF) podman build -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore --format docker --target runtime -t localhost/infersuite:cpu .

docker-test: $(DEV) tools docker-tools deploy-tools
	$(PY) -m pytest -q tests/deploy

protos: $(PROTO_STAMP)

# Stubs are generated, never edited, never committed (see .gitignore).
$(PROTO_STAMP): $(SERVE_STAMP) $(PROTO_SRC)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_SRC)
	@touch $@

models: $(REPOSITORY_STAMP)

$(REPOSITORY_STAMP): $(DEV) $(shell find models exporters -name '*.py' 2>/dev/null)
	@echo "Training and exporting the default models into $(REPOSITORY)/ (first run only: ~13 CPU-minutes of training for the four families, roughly 15 minutes on an idle 2-core machine)"
	$(PY) -m exporters.build --out $(REPOSITORY)
	@touch $@

# One serving process per core this shell may use (INFERSUITE_WORKERS=N to choose; INFERSUITE_CPU_AFFINITY=1-3
# or taskset to pin them), one gRPC port, one merged /metrics (docs/scaling.md).
# The shipped audio-passt-fp32 against the build its manifest records (exporters/audio_pretrained.py verify): the
# recorded checkpoint (sha256 checked) exported again, its graph equal to the shipped one, its figures within
# tolerance (~1 min); AUDIO_VERIFY=pretrain re-runs the recorded pretraining and held-out evaluation instead (~11 min).
AUDIO_VERIFY ?= checkpoint
verify-audio-pretrained: $(DEV)
	$(if $(filter pretrain,$(AUDIO_VERIFY)),@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus)
	rm -rf artifacts/verify/audio-pretrained
	$(PY) -m exporters.audio_pretrained verify --shipped $(SHIPPED) --out artifacts/verify/audio-pretrained \
	  $(if $(filter pretrain,$(AUDIO_VERIFY)),--pretrain --corpus artifacts/audio-corpus)

# Statistics pooling (PasstConfig.pooling="stats": the patch tokens' std beside the mean) pretrained like
# pretrain-audio, seeds 0 and 1 (~8 min each): artifacts/audio-pretrain/stats-seed<s>-e40/pretrain.pt.
pretrain-audio-stats: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	for seed in 0 1; do $(PY) -m models.audio.pretrain --corpus artifacts/audio-corpus \
	  --out artifacts/audio-pretrain/stats-seed$$seed-e40 --epochs 40 --seed $$seed --pooling stats --no-eval || exit 1; done

# Statistics vs mean pooling on validation (the choice) and the held-out test, hierarchical bootstrap over the
# two seeds and the clips (benchmarks/audio/pooling.py, ~6 min): reports/audio_pooling.md. Needs the checkpoints of
# pretrain-audio-stats and of report-audio-pretrain at seeds 0 and 1 (artifacts/audio-pretrain/seed<s>-e40).
report-audio-pooling: $(DEV) audio-tools
	$(PY) -m benchmarks.audio.pooling --corpus artifacts/audio-corpus --seeds 0 1 --report reports/audio_pooling.md

# The shipped bag of words' architecture fitted on the corpus's pretraining clips (seeds 0-2), scored beside the
# shipped embedders on the held-out tasks, hierarchical intervals over seeds x clips (models/audio/pretrain_bow.py,
# ~10 min): reports/audio_bow_corpus.md.
report-audio-bow-corpus: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	$(PY) -m models.audio.pretrain_bow --corpus artifacts/audio-corpus --seeds 0 1 2 \
		--out artifacts/audio-bow-corpus --report reports/audio_bow_corpus.md

# PaSST fine-tuned on each held-out corpus task's train split by the user path (--fine-tune-embedder passt;
# 3 seeds, 10 epochs) against the frozen PaSST and log-mel statistics, hierarchical bootstrap over seeds x test
# clips: reports/audio_fine_tune.md. Builds the corpus first when absent.
# Patchout vs no Patchout at equal CPU budgets (15, 30, 60 s), 10 training seeds, a fresh test set
# (~40 min on one core; resumes from artifacts/audio/patchout.json) -> reports/audio_patchout.md
report-audio-patchout: $(DEV)
	$(PY) -m benchmarks.audio.patchout --seeds 10 --budgets 15 30 60 --report reports/audio_patchout.md

report-audio-fine-tune: $(DEV) audio-tools
	@test -f artifacts/audio-corpus/manifest.json || $(MAKE) audio-corpus
	$(PY) -m models.audio.fine_tune_study --corpus artifacts/audio-corpus --repository shipped_models \
		--embedder passt --seeds 0 1 2 --epochs 10 --learning-rate 1e-4 3e-4 1e-3 --no-progress \
		--report reports/audio_fine_tune.md

# Scene-embedding real-time factor of the shipped audio graphs against those shipped at e59cb36 (issue 25's goal:
# within 20%), interleaved rounds in one run (benchmarks/audio/rtf.py, ~3 min; run alone): reports/audio_rtf.md.
bench-audio-rtf: $(DEV)
	$(PY) -m benchmarks.audio.rtf

# What regularising DIN's embeddings costs per training step (the paper's case for MBA, eq. 4): dense tables under
# Adam (none, L2 on every row, MBA) and sparse tables under lazy Adam (none, MBA) at 10k-3M item rows, one thread,
# each arm in its own process, interleaved rounds (benchmarks/ctr/regularisers.py, ~10 min; run alone):
# reports/ctr_regularisers.md.
bench-ctr-regularisers: $(DEV)
	$(PY) -m benchmarks.ctr.regularisers

# Does DIN train as well with --sparse-embeddings (lazy Adam) as with dense tables (Adam)? The regulariser study's
# long tail on a fresh world, 8 training seeds per arm, seeds x users bootstrap (benchmarks/ctr/sparse_quality.py,
# ~20 min; runs cached in artifacts/ctr_sparse_quality): reports/ctr_sparse_quality.md.
report-ctr-sparse-quality: $(DEV)
	$(PY) -m benchmarks.ctr.sparse_quality

# L2 and MBA each at the strength validation chooses from three, against none, on the same fresh long-tail world,
# 5 training seeds (benchmarks/ctr/regulariser_sweep.py, ~35 min; runs cached in artifacts/ctr_sparse_quality):
# reports/ctr_regulariser_sweep.md.
report-ctr-regulariser-sweep: $(DEV)
	$(PY) -m benchmarks.ctr.regulariser_sweep

serve: $(SERVE_STAMP) $(PROTO_STAMP)
	@$(PY) -m exporters.ship describe $(SERVE_REPOSITORY)
	INFERSUITE_MODEL_REPOSITORY=$(SERVE_REPOSITORY) $(PY) -m infersuite.services

# Rebuilds shipped_models/ from the current code: fresh training of every family (no cached
# checkpoints), export, then the fp32 models + a manifest per model. Rerun after changing a model.
ship-models: $(DEV)
	rm -rf artifacts/ship
	$(PY) -m exporters.build --out artifacts/ship/repository --artifacts artifacts/ship/checkpoints
	$(PY) -m exporters.ship ship --source artifacts/ship/repository --to $(SHIPPED)

# Retrains from scratch and checks every shipped quality figure reproduces within its manifest's tolerance; the
# corpus-pretrained audio-passt-fp32, which exporters.build does not build, by verify-audio-pretrained.
verify-models: $(DEV)
	rm -rf artifacts/verify
	$(PY) -m exporters.build --out artifacts/verify/repository --artifacts artifacts/verify/checkpoints
	$(PY) -m exporters.ship verify --retrained artifacts/verify/repository --shipped $(SHIPPED)
	$(MAKE) verify-audio-pretrained

# The whole suite; it ends with the PYTEST_DURATIONS slowest tests (what CI prints), PYTEST_ARGS adds options.
PYTEST_DURATIONS ?= 30
PYTEST_ARGS ?=
# Every test; each unit test without network sockets (tests/no_sockets.py).
test: $(DEV) tools triton deploy-tools docker-tools hear-tools audio-tools
	$(PY) -m pytest -q -p tests.no_sockets --durations=$(PYTEST_DURATIONS) $(PYTEST_ARGS)

# The fast lane (well under 2 minutes): unit tests only, without the slow-marked torch exports, and a test
# that opens a network socket fails (tests/no_sockets.py). Needs no promtool, Triton, podman or HEAR tools.
test-fast: $(DEV)
	$(PY) -m pytest -q -p tests.no_sockets -m "not slow" --durations=10 tests/unit $(PYTEST_ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy infersuite models exporters benchmarks hear_infersuite

bench-ctr: $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.ctr.latency --repository $(REPOSITORY)

# Every quantization recipe on every family present: quantized models into the repository, the
# family defaults (aliases.json), reports/quantization.md + .json + .png.
quantize-report: $(REPOSITORY_STAMP)
	$(PY) -m exporters.quantize.report --repository $(REPOSITORY)

# The recipes at the papers' sizes with random weights (PaSST-base, ECO-M2F encoder at d=256, DIN with 1M items):
# CPU p50 at batch 1 and 32, 1 and all threads, interleaved rounds (~10 min on 2 cores)
# -> reports/quantization_production.md + .json. BENCH_QUANT_ARGS="--layers 2 ..." for more.
bench-quantization: $(DEV)
	$(PY) -m benchmarks.quantization.production $(BENCH_QUANT_ARGS)

# * = every family found (infersuite/services/families.py), or a comma list of them
LOADTEST_SERVICES ?= *
LOADTEST_TARGET ?=
LOADTEST_ARGS ?=
# Short closed-loop sweep (1, 4, 16 clients, 5 s steps) for every service the suite hosts, the OIP endpoint
# of every ready model and the grpc.health floor -> artifacts/loadtest/ (bench-loadtest writes reports/loadtest/). LOADTEST_TARGET=host:port: a running suite.
LOADTEST_OUT ?= artifacts/loadtest
loadtest: $(DEV) $(PAYLOADS_STAMP)
	$(PY) -m infersuite.loadtest suite --repository $(SERVE_REPOSITORY) --out-dir $(LOADTEST_OUT) \
	  --param splitcompute.payloads=$(PAYLOADS) \
	  $(if $(LOADTEST_TARGET),--target $(LOADTEST_TARGET),--start-server '$(LOADTEST_SERVICES)') $(LOADTEST_ARGS)

# The parents the segmentation report compares with the default one (one conv per backbone stage, local encoder
# attention): the same FPN head on a 2-conv backbone with global attention, and Mask2Former's query decoder on that
# backbone for 5 epochs (a step costs ~2x the FPN head's); ~15 CPU-minutes together, not in `make models`.
SEGMENTATION_COMPARE := artifacts/segmentation-fpn-global/eco_m2f.pt artifacts/segmentation-query/eco_m2f.pt
.PHONY: segmentation-compare
segmentation-compare: $(DEV)
	$(PY) -m models.segmentation.train --out artifacts/segmentation-fpn-global --stage-convs 2 \
		--set attention_radius=0 --no-progress
	$(PY) -m models.segmentation.train --out artifacts/segmentation-query --stage-convs 2 --set attention_radius=0 \
		--epochs 5 --set head=query --no-progress

# The gate over 3 independently trained parents (seeds 0-2, step 1 from scratch: ~8 min each, cached in
# artifacts/segmentation_parents), every beta of the segmentation report, scored on fresh scenes (seed 41) with a
# hierarchical bootstrap over parents x scenes (benchmarks/segmentation/parents.py, ~35 min; run alone):
# reports/segmentation_parents.md.
report-segmentation-parents: $(DEV)
	$(PY) -m benchmarks.segmentation.parents

report-segmentation: $(REPOSITORY_STAMP) report-segmentation-gate
	$(PY) -m benchmarks.segmentation.report --repository $(REPOSITORY) \
		$(if $(wildcard $(SEGMENTATION_COMPARE)),--compare $(wildcard $(SEGMENTATION_COMPARE)))

# Which gate design beats a fixed-depth mix of equal compute (steps 2-3 only, the parent frozen; settings
# chosen on the validation scenes, 3 seeds on test) -> reports/segmentation_gate.md; ~5 minutes on one thread here.
.PHONY: report-segmentation-gate
report-segmentation-gate: $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.segmentation.gate_study

report-audio: $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.audio.report --repository $(REPOSITORY)

# Generality of the audio embeddings (held-out classes, other tasks, Patchout at equal compute): trains for
# a few CPU-minutes -> artifacts/audio/generality.json; quantization quality on 1,000 windows ->
# artifacts/audio/quant_quality.json. report-audio renders both into reports/audio.md.
audio-studies: $(REPOSITORY_STAMP)
	nice -n 10 $(PY) -m benchmarks.audio.generality
	nice -n 10 $(PY) -m benchmarks.audio.quant_quality --repository $(REPOSITORY)

report-splitcompute: $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.splitcompute.report --artifacts artifacts/splitcompute --repository $(REPOSITORY)

# The long splitcompute trainings the report reads when present (more betas, the codec-augmented teacher,
# the learned image codec, the stage-1 ablation): ~1.5 h on the shared 2 cores, cached in artifacts/splitcompute/studies.
splitcompute-studies: $(REPOSITORY_STAMP)
	OMP_NUM_THREADS=1 nice -n 10 $(PY) -m benchmarks.splitcompute.studies --artifacts artifacts/splitcompute

# The paper's GDN encoder from scratch against the served student's encoder (teacher stem), beta 0.25, 3 training
# seeds each, 2 runs at a time (benchmarks/splitcompute/gdn.py, ~30 min; run alone): reports/splitcompute_gdn.md.
report-splitcompute-gdn: $(DEV)
	$(PY) -m benchmarks.splitcompute.gdn

# Edge-SDK wire frames for the splitcompute load test, remade when the served encoder (its codec) changes.
splitcompute-payloads: $(PAYLOADS_STAMP)

$(PAYLOADS_STAMP): $(DEV) $(SERVE_REPOSITORY)/splitcompute-encoder-fp32/1/meta.json
	rm -rf $(PAYLOADS)
	$(PY) -m benchmarks.splitcompute.payloads --bundle $(SERVE_REPOSITORY)/splitcompute-encoder-fp32/1 --out $(PAYLOADS)
	@touch $@

# Reliability scenarios as tests (~2-3 min on 2 cores, incl. every family's tiny models).
reliability-test: $(DEV) tools triton
	$(PY) -m pytest -q -m reliability tests/reliability

# Every reliability scenario at full length (30 s of 3x overload, 10-minute soak; ~16 min): reports/reliability.md + .json
bench-reliability: $(DEV) triton
	$(PY) -m benchmarks.reliability.measure $(RELIABILITY_ARGS)

# Overload inside the SLO (ctr at 3x for 60 s and 10x for 10 s, server and client pinned apart, the default
# queue and queue-time bound, a control with the time bound off; ~9 min): reports/overload.md + .json
bench-overload: $(DEV)
	$(PY) -m benchmarks.reliability.overload $(OVERLOAD_ARGS)

# Server CPU per call-limit refusal on either transport, the suite's (pushback) vs grpcio's
# (~2 min): reports/refusal_cost.md
bench-refusal-cost: $(DEV)
	$(PY) -m benchmarks.reliability.refusal_cost

# Calls sent before a plain grpc.aio server's stop(grace) while it runs behind (~30 s): reports/stop_backlog.md
bench-stop-backlog: $(DEV)
	$(PY) -m benchmarks.reliability.stop_backlog

# SIGTERM near capacity on the suite itself (ctr): the transport stopped at once vs new calls refused by the
# suite first (shutdown_refuse_s), with and without a drain: reports/shutdown.md (~6 min).
bench-shutdown: $(DEV)
	$(PY) -m benchmarks.reliability.shutdown

# Supervised workers (one SIGKILLed under load, fail-fast and wait_for_ready clients; a crash loop) and the
# budget of request bytes in flight (16 clients of worst-case DIN requests, budget off / default / tight),
# on the shipped models: the supervision sections of reports/reliability.md (~2 min).
bench-supervision: $(DEV)
	$(PY) -m benchmarks.reliability.supervision --repository shipped_models

# The whole hostile corpus on one serving process of all four services, and each model's worst-case
# request memory at its declared limits: the hostile sections of reports/reliability.md (minutes).
bench-hostile: $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.reliability.hostile --repository $(REPOSITORY)

# The same corpus on the synchronous transport (INFERSUITE_TRANSPORT=sync, docs/scaling.md), on the shipped models
# -> reports/sync_transport/reliability.md (its own folder: the grpc.aio figures above stay as they are).
bench-hostile-sync: $(DEV)
	mkdir -p reports/sync_transport
	INFERSUITE_TRANSPORT=sync $(PY) -m benchmarks.reliability.hostile --repository $(SHIPPED) \
		--out reports/sync_transport/reliability.md

# The committed reports: only report-* and bench-* targets write reports/ (builds write artifacts/).
bench-loadtest:
	$(MAKE) loadtest LOADTEST_OUT=reports/loadtest

bench-loadtest-generator: $(DEV)
	$(PY) -m infersuite.loadtest selfcheck --out reports/loadtest/generator --quiet

# DIN with 3 seeds and paired-bootstrap intervals: BaseModel vs DIN-PReLU vs DIN-Dice (Dice statistics), the
# regulariser comparison on a long-tail vocabulary, QAT vs PTQ vs an fp32 fine-tune control -> reports/ctr_quality.md
# + .json (~40 CPU-min of training, one thread per run; runs are cached in artifacts/ctr_study/runs, so a rerun re-renders).
report-ctr: $(DEV)
	$(PY) -m benchmarks.ctr.report --out artifacts/ctr_study --report reports/ctr_quality.md

# Bring your own data, ctr: DIN on your click log (CSV with user,item,category,timestamp,clicked; your own
# integer ids; models/ctr/user_data.py) or on Amazon reviews (DATA=reviews_<Category>_5.json[.gz], the metadata
# meta_<Category>.json[.gz] found beside it or TRAIN_ARGS='--meta FILE'; models/ctr/amazon.py) -> artifacts/ctr-user/
# quality.md, and din-fp32 with its id vocabulary (Amazon: and string_ids.json, asin -> id) in $(USER_REPOSITORY),
# beside it the quantized recipes that pass the quantization gate on your test split (TRAIN_ARGS=--no-quantize: fp32
# only; docs/ctr_own_data.md): serve it with `make serve SERVE_REPOSITORY=$(USER_REPOSITORY)`.
USER_REPOSITORY ?= user_models
train-ctr: $(DEV)
	@test -n "$(DATA)" || { echo "usage: make train-ctr DATA=clicks.csv|reviews_Books_5.json.gz [USER_REPOSITORY=dir] [TRAIN_ARGS='--oov bucket --min-count 5']"; exit 2; }
	$(PY) -m models.ctr.train --data $(DATA) --out artifacts/ctr-user --repository $(USER_REPOSITORY) $(TRAIN_ARGS)

# Bring your own data, audio: the exported embedders (and log-mel statistics) under a linear probe on your
# labelled recordings (DATA folder, LABELS csv: file,label[,split][,group]; FORMAT=hear: DATA is a HEAR 2021 task
# folder, no LABELS) -> artifacts/audio-user/quality.md; TRAIN_ARGS go to models.audio.user_data as they are
# (e.g. '--seed 1 --test-fraction 0.3'); docs/audio_own_data.md.
AUDIO_DATA_ARGS = $(if $(FORMAT),--format $(FORMAT)) --data $(DATA) $(if $(filter hear,$(FORMAT)),,--labels $(LABELS))
AUDIO_USAGE = DATA=recordings/ LABELS=labels.csv | FORMAT=hear DATA=task_dir/
eval-audio: $(DEV)
	@test -n "$(DATA)" -a \( "$(FORMAT)" = hear -o -n "$(LABELS)" \) || { echo "usage: make eval-audio $(AUDIO_USAGE) [TRAIN_ARGS='--seed 1']"; exit 2; }
	$(PY) -m models.audio.user_data $(AUDIO_DATA_ARGS) --repository $(SERVE_REPOSITORY) $(TRAIN_ARGS)

# The same with an embedder fine-tuned on your train split (EMBEDDER=bow, the bag of words, or EMBEDDER=passt;
# --fine-tune 10 unless TRAIN_ARGS gives --fine-tune EPOCHS; the epoch chosen on a validation part of the train
# split) beside the frozen embedders in artifacts/audio-user/quality.md, and exported as audio-bow-fp32 or
# audio-passt-fp32 (ONNX, parity checked) into USER_REPOSITORY (scene tasks and the CSV layout; not for a HEAR
# folds task, where each fold fine-tunes its own).
EMBEDDER ?= bow
train-audio: $(DEV)
	@test -n "$(DATA)" -a \( "$(FORMAT)" = hear -o -n "$(LABELS)" \) || { echo "usage: make train-audio $(AUDIO_USAGE) [EMBEDDER=bow|passt] [USER_REPOSITORY=dir] [TRAIN_ARGS='--fine-tune 20 --learning-rate 3e-5']"; exit 2; }
	$(PY) -m models.audio.user_data $(AUDIO_DATA_ARGS) --repository $(SERVE_REPOSITORY) \
		$(if $(filter --fine-tune,$(TRAIN_ARGS)),,--fine-tune 10) --fine-tune-embedder $(EMBEDDER) \
		--out-repository $(USER_REPOSITORY) $(TRAIN_ARGS)

# Bring your own data, split computing: an image folder (one sub-folder per class, or train/ val/ test/) ->
# teacher + Entropic Student per beta, the rate-accuracy report against JPEG/WebP on your test split
# (artifacts/splitcompute-user/quality.md), the default student exported into USER_REPOSITORY.
train-splitcompute: $(DEV)
	@test -n "$(DATA)" || { echo "usage: make train-splitcompute DATA=images/ [USER_REPOSITORY=dir] [TRAIN_ARGS='--seeds 3 --image-size 128 --no-quantize']"; exit 2; }
	$(PY) -m benchmarks.splitcompute.user_data --data $(DATA) --out artifacts/splitcompute-user \
		--report artifacts/splitcompute-user/quality.md --repository $(USER_REPOSITORY) $(TRAIN_ARGS)

# The same path on the synthetic gratings written as an image folder of mixed sizes and formats (its own seed,
# 300 images per class, 3 training seeds): reports/splitcompute_user_data.md (~8 min).
report-splitcompute-user-data: $(DEV)
	$(PY) -m models.splitcompute.user_data example artifacts/splitcompute-user-example/images --per-class 300
	$(PY) -m benchmarks.splitcompute.user_data --data artifacts/splitcompute-user-example/images \
		--out artifacts/splitcompute-user-example --report reports/splitcompute_user_data.md --seeds 3 --teacher-epochs 16 --student-epochs 3

# Real images that ship inside an installed package: scikit-learn's handwritten digits (models/splitcompute/user_data.py
# DIGITS_SOURCE: 1,797 8x8 images, 13 writers, CC BY 4.0) as an ImageFolder, through the same path as yours, 3 seeds
# -> reports/splitcompute_digits.md (~5 min on 2 cores).
.PHONY: report-splitcompute-digits
report-splitcompute-digits: $(DEV)
	rm -rf artifacts/splitcompute-digits
	$(PY) -m models.splitcompute.user_data digits artifacts/splitcompute-digits/images
	$(PY) -m benchmarks.splitcompute.user_data --data artifacts/splitcompute-digits/images --source digits \
		--out artifacts/splitcompute-digits --report reports/splitcompute_digits.md --seeds 3 --teacher-epochs 16 --student-epochs 3

# Bring your own data, segmentation: DIR/images + DIR/annotations (one-byte PNG class indices) + classes.txt,
# or the ADE20K layout (TRAIN_ARGS='--format ade20k') -> ECO-M2F sized to your classes, the test report at
# each image's own size (artifacts/segmentation-user/quality.md), the staged graphs exported into USER_REPOSITORY
# with the quantized recipes that pass the quantization gate on your test split (TRAIN_ARGS=--no-quantize skips
# the gate); docs/segmentation_own_data.md.
train-segmentation: $(DEV)
	@test -n "$(DATA)" || { echo "usage: make train-segmentation DATA=dir/ [USER_REPOSITORY=dir] [TRAIN_ARGS='--format ade20k --image-size 128']"; exit 2; }
	$(PY) -m models.segmentation.train --data $(DATA) --out artifacts/segmentation-user --repository $(USER_REPOSITORY) $(TRAIN_ARGS)

# Segmentation's path on the synthetic scenes written as a labelled folder (its own seed, 1,200 images of mixed
# sizes with ignored outlines, 3 training seeds: the gate against equal compute and full depth with seed-level
# intervals): reports/segmentation_user_data.md.
report-segmentation-user-data: $(DEV)
	rm -rf artifacts/segmentation-user-example
	$(PY) -m models.segmentation.user_data example artifacts/segmentation-user-example/scenes --images 1200
	$(PY) -m models.segmentation.train --data artifacts/segmentation-user-example/scenes \
		--out artifacts/segmentation-user-example --seeds 3 --no-progress
	cp artifacts/segmentation-user-example/quality.md reports/segmentation_user_data.md

# The Amazon path on a generated dataset in that layout (models/ctr/amazon_example.py: 2,000 users, ~20,000 reviews,
# gzip; 3 training seeds) -> reports/ctr_amazon.md, then the reader's peak RSS on a generated $(AMAZON_MEMORY_USERS)
# users (~1,000,000 reviews) appended to it (~7 min on 2 cores).
.PHONY: report-ctr-amazon
AMAZON_MEMORY_USERS ?= 100000
report-ctr-amazon: $(DEV)
	$(PY) -m models.ctr.amazon_example example artifacts/ctr-amazon-example
	$(PY) -m models.ctr.train --data artifacts/ctr-amazon-example/reviews_Synthetic_5.json.gz \
		--out artifacts/ctr-amazon-example --report reports/ctr_amazon.md --min-count 2 --seeds 3 --no-progress
	$(PY) -m models.ctr.amazon_example example artifacts/ctr-amazon-memory --users $(AMAZON_MEMORY_USERS) --items 50000
	$(PY) -m models.ctr.amazon_example measure artifacts/ctr-amazon-memory/reviews_Synthetic_5.json.gz >> reports/ctr_amazon.md

# The same path on the synthetic world written as a click log with external ids (known structure, 3 seeds):
# reports/ctr_user_data.md (~5 min).
report-ctr-user-data: $(DEV)
	$(PY) -m models.ctr.user_data example artifacts/ctr-user-example/clicks.csv
	$(PY) -m models.ctr.train --data artifacts/ctr-user-example/clicks.csv --out artifacts/ctr-user-example \
		--report reports/ctr_user_data.md --min-count 2 --seeds 3 --no-progress

report-quantization: quantize-report

# Where the server's CPU goes, batching on/off, streaming, workers, against bare onnxruntime and the Python
# peers (MLServer, KServe; `make peers` installs them), server and load generator pinned to disjoint cores,
# interleaved rounds -> reports/serving.md + .json + .png (~20 min). BENCH_SERVING_ARGS="--rounds 1 ..." for less.
# Then the suite in front of a real Triton, with Triton direct beside it (bench-triton-front, ~6 min more):
# BENCH_TRITON_FRONT=0 leaves it out.
BENCH_TRITON_FRONT ?= 1
bench-serving: $(REPOSITORY_STAMP) peers
	$(PY) -m benchmarks.serving --repository $(REPOSITORY) $(BENCH_SERVING_ARGS)
	@if [ "$(BENCH_TRITON_FRONT)" = 1 ]; then $(MAKE) --no-print-directory bench-triton-front; fi

# The two transports side by side (INFERSUITE_TRANSPORT aio vs sync; docs/scaling.md), ranking mix, 1 and 64
# clients, with the ceiling, KServe, MLServer and both empty-RPC floors in the same rounds (~10 min, alone)
# -> reports/serving_transport.md.
bench-transport: $(DEV) peers
	$(PY) -m benchmarks.serving --repository $(SHIPPED) --mixes ranking --clients 1 64 --skip open extras profile \
		--out reports/serving_transport.md

# The suite in front of a real Triton (issue 28): server CPU per request of Triton direct, the suite with
# INFERSUITE_BACKEND=triton in front of it (both on the server core) and the suite on its embedded onnxruntime,
# din-fp32 ranking mix, 1 and 64 clients, 3 interleaved rounds (~6 min, alone) -> reports/serving_triton.md + .json.
bench-triton-front: $(DEV) triton
	$(PY) -m benchmarks.serving.triton_front --repository $(SHIPPED) $(BENCH_TRITON_FRONT_ARGS)

# What a metrics update costs in memory vs prometheus_client's multiprocess files, and the parent's merge per
# scrape (docs/scaling.md) -> reports/metrics_cost.md.
bench-metrics-cost: $(DEV)
	$(PY) -m benchmarks.serving.metrics_cost

# Data throughput per family through its user-data loader (rows, reviews, images, audio seconds per second, CPU,
# peak RSS) against one training epoch it feeds, on generated examples (issue 24; ~4 min alone; SCALE=0.1 for a
# quick look) -> reports/data_throughput.md + .json.
bench-data-throughput: $(DEV)
	$(PY) -m benchmarks.data_throughput $(if $(SCALE),--scale $(SCALE))

# The Python peers for bench-serving (MLServer 1.7.1, KServe 0.21), each in its own venv under .peers/, from fully
# pinned lock files plus the suite's own numpy/onnxruntime/grpcio/protobuf pins, so the peers run the same core.
PEERS_DIR := .peers
PEER_KINDS := mlserver kserve
PEER_CORE_PINS := $(shell grep -E '^(numpy|onnxruntime|grpcio|protobuf)==' requirements/serve.txt)

peers: $(foreach kind,$(PEER_KINDS),$(PEERS_DIR)/$(kind)/.installed)

$(PEERS_DIR)/%/.installed: benchmarks/peers/requirements-%.txt requirements/serve.txt
	@test -x $(PEERS_DIR)/$*/bin/pip || python3 -m venv --clear $(PEERS_DIR)/$*
	$(PEERS_DIR)/$*/bin/python -m pip install -q --disable-pip-version-check -r $< $(PEER_CORE_PINS)
	$(PEERS_DIR)/$*/bin/python -m pip check
	@touch $@

# Every peer serves the trained din-fp32 and answers ragged ModelInfer requests like onnxruntime does.
peers-check: peers $(REPOSITORY_STAMP)
	$(PY) -m benchmarks.peers.check --onnx $(REPOSITORY)/din-fp32/1/model.onnx

clean:
	rm -rf $(REPOSITORY) artifacts .triton infersuite/protos/*_pb2*.py infersuite/protos/*_pb2.pyi $(PROTO_STAMP)

# Old target names, kept so existing docs, reports' command lines and users keep working.
bench-audio: report-audio
bench-splitcompute: report-splitcompute
bench-quant-production: bench-quantization
reliability-report: bench-reliability

# reports/reliability.md re-rendered from the .json files beside it (reliability.json, overload.json,
# reliability_hostile.json, reliability_supervision.json); nothing is measured (seconds).
report-reliability: $(DEV)
	$(PY) -m benchmarks.reliability.report
report-hostile: bench-hostile
