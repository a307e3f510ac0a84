#!/usr/bin/env bash
# A new user's first minutes, timed: clone this repository into an empty directory, run `make serve`
# there until grpc.health.v1 answers SERVING (venv, serving dependencies, stubs, loading and warming
# the shipped models), then send one request per service with the examples. Prints the time; fails
# only if the suite never serves or an example fails (speed is reported, not asserted).
#   .ci/first_run.sh [clone dir]      (ports: FIRST_RUN_PORT, default 50771; metrics FIRST_RUN_METRICS_PORT)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:-$(mktemp -d)/infersuite}"
port="${FIRST_RUN_PORT:-50771}"
limit_s="${FIRST_RUN_LIMIT_S:-900}"
rm -rf "$clone"
start=$(date +%s.%N)
git clone -q "$repo" "$clone"
cd "$clone"
setsid env INFERSUITE_PORT="$port" INFERSUITE_METRICS_PORT="${FIRST_RUN_METRICS_PORT:-9471}" \
  make serve > "$clone/serve.log" 2>&1 &
serve_pid=$!
trap 'kill -TERM -- -$serve_pid 2>/dev/null || true' EXIT
probe='import grpc, sys
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    print(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status)'
until [ "$(.venv/bin/python -c "$probe" "127.0.0.1:$port" 2>/dev/null)" = "1" ]; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then echo "make serve exited before serving:"; tail -30 serve.log; exit 1; fi
  if [ "$(echo "$(date +%s) - ${start%.*} > $limit_s" | bc)" = "1" ]; then echo "not SERVING after $limit_s s"; exit 1; fi
  sleep 1
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
grep -m1 '^models:' serve.log || true
printf 'first run: fresh clone -> make serve -> SERVING in %.0f s (%s CPUs, load average %s)\n' \
  "$elapsed" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
export INFERSUITE_TARGET="127.0.0.1:$port"
for example in ctr_score audio_embed segmentation_segment; do .venv/bin/python -m "infersuite.examples.$example"; done
.venv/bin/python -m infersuite.examples.splitcompute_edge shipped_models/splitcompute-encoder-fp32/1
