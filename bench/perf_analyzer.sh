#!/usr/bin/env bash
# Throughput and p50/p99 latency of serve-kit under Triton's Performance Analyzer (perf_analyzer), the
# standard V2 load generator: gRPC and HTTP, concurrency 1, 4, 16, 32, real JPEGs on the BYTES input
# `images` (shape [1, 1]: one JPEG per request, cycled). perf_analyzer asks the server for the model's
# metadata and config first, so this also checks that serve-kit answers it the way Triton does.
#
# perf_analyzer comes from the tritonclient 2.40.0 wheel (its newer wheels and the PyPI `perf-analyzer`
# need glibc 2.38), with libb64 (Debian's libb64-0d) and libcudart (PyPI's nvidia-cuda-runtime-cu12) on
# LD_LIBRARY_PATH: all fetched once into $PERF_CACHE (pip download + apt-get download, no root) and reused.
# By default the script builds a tiny `tags` bundle (the serving tests' write_tags: a resnet18 at 32 px,
# seeded weights) in a temporary repository, starts `serve-kit serve` on 127.0.0.1 (free ports), runs
# perf_analyzer against it and stops it (SIGTERM to its PID). HTTP rows need the server's HTTP/REST port
# (`serve-kit serve --http-port`); without that flag they are skipped, with a note in the JSON.
# Prints one JSON line (stdout); perf_analyzer's own output goes to stderr on failure only.
#
#   bash bench/perf_analyzer.sh
#   MODELS=models MODEL=planet bash bench/perf_analyzer.sh            # a repository of your own
#   GRPC_URL=127.0.0.1:8001 HTTP_URL=127.0.0.1:8000 MODEL=planet bash bench/perf_analyzer.sh  # running
#
# Knobs (environment): PERF_CACHE (~/.cache/serve-kit-perf), PYTHON (.venv/bin/python), CONCURRENCY
# ("1 4 16 32"), INTERVAL_MS (measurement window, 2000), STABILITY (% between the last 3 windows, 20),
# MAX_TRIALS (windows per level before giving up, 6), JPEGS (16), JPEG_SIZE (128), PA_ASYNC (1: --async);
# the server started here also takes any SERVE_* setting from the environment (SERVE_DEVICE=cpu, ...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PERF_CACHE=${PERF_CACHE:-$HOME/.cache/serve-kit-perf}
CONCURRENCY=${CONCURRENCY:-1 4 16 32}
INTERVAL_MS=${INTERVAL_MS:-2000}
STABILITY=${STABILITY:-20}
MAX_TRIALS=${MAX_TRIALS:-6}
JPEGS=${JPEGS:-16}
JPEG_SIZE=${JPEG_SIZE:-128}
PA_ASYNC=${PA_ASYNC:-0}
MODELS=${MODELS:-}
MODEL=${MODEL:-tags}
GRPC_URL=${GRPC_URL:-}
HTTP_URL=${HTTP_URL:-}

TRITONCLIENT_VERSION=2.40.0
CUDART_VERSION=12.3.101
PA_HOME=$PERF_CACHE/tritonclient-$TRITONCLIENT_VERSION-cudart-$CUDART_VERSION
PA=$PA_HOME/bin/perf_analyzer

log() { echo "perf_analyzer.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $PYTHON ]] || die "no $PYTHON: run \`make install\` (or set PYTHON)"

LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/perf-analyzer.XXXXXX")
SERVER_PID=
STAGE=

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local status=$?
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "serve-kit (pid $SERVER_PID) did not stop after SIGTERM; SIGKILL"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK" ${STAGE:+"$STAGE"}
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- perf_analyzer, once, into the cache -----------------------------------------------------------

run_pa() { LD_LIBRARY_PATH="$PA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PA" "$@"; }

setup_perf_analyzer() {
  if [[ -f $PA_HOME/.ready ]] && run_pa --version >/dev/null 2>&1; then
    return
  fi
  command -v apt-get >/dev/null || die "apt-get is needed to fetch Debian's libb64-0d"
  log "fetching perf_analyzer (tritonclient==$TRITONCLIENT_VERSION), libb64, libcudart into $PA_HOME"
  mkdir -p "$PERF_CACHE"
  STAGE=$(mktemp -d "$PERF_CACHE/.setup.XXXXXX")  # removed on exit, whatever happens
  local stage=$STAGE
  mkdir -p "$stage/home/bin" "$stage/home/lib" "$stage/deb"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$stage" \
    "tritonclient==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDART_VERSION" \
    >"$stage/pip.log" 2>&1 \
    || { cat "$stage/pip.log" >&2; die "pip download failed"; }
  # The wheels' members we need, nothing else: the binary (a data file of the wheel) and libcudart.
  "$PYTHON" - "$stage" <<'EOF'
import shutil, sys, zipfile
from pathlib import Path

stage = Path(sys.argv[1])
wanted = {"/bin/perf_analyzer": "bin/perf_analyzer", "/lib/libcudart.so.12": "lib/libcudart.so.12"}
found = set()
for wheel in stage.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            for suffix, target in wanted.items():
                if member.endswith(suffix):
                    with archive.open(member) as src, (stage / "home" / target).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    found.add(suffix)
missing = set(wanted) - found
if missing:
    sys.exit(f"not in the wheels: {sorted(missing)}")
EOF
  chmod +x "$stage/home/bin/perf_analyzer"
  (cd "$stage/deb" && apt-get download libb64-0d >/dev/null 2>&1) \
    || die "apt-get download libb64-0d failed (run \`apt-get update\` first?)"
  dpkg -x "$stage"/deb/libb64-0d_*.deb "$stage/deb/root"
  find "$stage/deb/root" -name 'libb64.so*' -exec cp -P {} "$stage/home/lib/" \;
  LD_LIBRARY_PATH="$stage/home/lib" "$stage/home/bin/perf_analyzer" --version >/dev/null \
    || die "perf_analyzer does not run; missing libraries: $(LD_LIBRARY_PATH="$stage/home/lib" \
      ldd "$stage/home/bin/perf_analyzer" | grep 'not found' | tr -s ' \t\n' ' ')"
  touch "$stage/home/.ready"
  rm -rf "$PA_HOME"
  mv "$stage/home" "$PA_HOME"
}

setup_perf_analyzer
PA_VERSION=$(run_pa --version 2>&1 | grep -o 'Version [0-9.]*' | cut -d ' ' -f 2)

# --- inputs, server --------------------------------------------------------------------------------

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

prepare=("$PYTHON" "$ROOT/bench/perf_analyzer_input.py" prepare "$WORK/input" --jpegs "$JPEGS"
  --jpeg-size "$JPEG_SIZE")
EXTERNAL=0
GRPC_SKIPPED=
HTTP_SKIPPED=
if [[ -n $GRPC_URL || -n $HTTP_URL ]]; then
  EXTERNAL=1
  [[ -n $GRPC_URL ]] || GRPC_SKIPPED="no GRPC_URL given"
  [[ -n $HTTP_URL ]] || HTTP_SKIPPED="no HTTP_URL given"
  (cd "$ROOT" && "${prepare[@]}") >&2
else
  if [[ -z $MODELS ]]; then
    MODELS=$WORK/models
    (cd "$ROOT" && "${prepare[@]}" --models "$MODELS" --model "$MODEL") >&2
  else
    [[ -d $MODELS/$MODEL ]] || die "no $MODELS/$MODEL: set MODEL to a model of $MODELS"
    (cd "$ROOT" && "${prepare[@]}") >&2
  fi
  GRPC_PORT=$(free_port)
  serve=("$PYTHON" -m serving.cli serve --models "$MODELS" --host 127.0.0.1 --port "$GRPC_PORT"
    --metrics-port "$(free_port)")
  if (cd "$ROOT" && "$PYTHON" -m serving.cli serve --help) 2>/dev/null | grep -q -- '--http-port'; then
    HTTP_PORT=$(free_port)
    serve+=(--http-port "$HTTP_PORT")
    HTTP_URL=127.0.0.1:$HTTP_PORT
  else
    HTTP_SKIPPED="serve-kit serve has no --http-port (no V2 HTTP/REST endpoint yet)"
  fi
  GRPC_URL=127.0.0.1:$GRPC_PORT
  # No pre-stop pause on SIGTERM (nobody routes traffic here), no repository polling while measured.
  (cd "$ROOT" && exec env SERVE_DRAIN_PRESTOP_S=0 SERVE_POLL_INTERVAL_S=0 "${serve[@]}") \
    >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 240); do
    grep -q 'listening on' "$WORK/server.out" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 40 "$WORK/server.log" >&2; die "serve-kit exited"; }
    sleep 0.5
  done
  grep -q 'listening on' "$WORK/server.out" || { tail -n 40 "$WORK/server.log" >&2; die "serve-kit not up"; }
  log "$(head -n 1 "$WORK/server.out") (pid $SERVER_PID)"
fi

# --- perf_analyzer, one run per protocol and concurrency -------------------------------------------

mkdir -p "$WORK/pa"
mode=()
[[ $PA_ASYNC == 1 ]] && mode=(--async)

measure() {  # protocol url concurrency stability-% out (writes out.csv when it succeeds, out.log always)
  rm -f "$5.csv"
  run_pa -m "$MODEL" -i "$1" -u "$2" --input-data "$WORK/input/input.json" --shape images:1 \
    --concurrency-range "$3:$3" --measurement-interval "$INTERVAL_MS" --stability-percentage "$4" \
    --max-trials "$MAX_TRIALS" "${mode[@]}" -f "$5.csv" --verbose-csv >"$5.log" 2>&1 \
    || { rm -f "$5.csv"; return 1; }
}
listening() {  # host:port [seconds]: whether something accepts connections there (within seconds)
  local host=${1%:*} port=${1##*:}
  for _ in $(seq 1 $((${2:-10} * 2))); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

FAILED=0
for protocol in grpc http; do
  url=$GRPC_URL skipped=$GRPC_SKIPPED
  [[ $protocol == http ]] && url=$HTTP_URL skipped=$HTTP_SKIPPED
  if [[ -z $skipped ]] && ! listening "$url" 10; then
    skipped="nothing accepts connections on $url"
    FAILED=1
    [[ $protocol == grpc ]] && GRPC_SKIPPED=$skipped || HTTP_SKIPPED=$skipped
  fi
  if [[ -n $skipped ]]; then
    log "$protocol: skipped ($skipped)"
    continue
  fi
  for c in $CONCURRENCY; do
    out=$WORK/pa/$protocol-c$c
    log "$protocol, concurrency $c"
    if ! measure "$protocol" "$url" "$c" "$STABILITY" "$out" \
      && grep -q 'Failed to obtain stable measurement' "$out.log"; then
      # A busy 2-core box rarely gives 3 windows within a few %: measure again, taking any 3 windows,
      # and say so in the JSON (`"stable": false`).
      log "$protocol, concurrency $c: not stable within $STABILITY%; again, without the stability check"
      mv "$out.log" "$out.unstable.log"
      measure "$protocol" "$url" "$c" 1000 "$out" && touch "$out.unstable"
    fi
    if [[ ! -f $out.csv ]]; then
      FAILED=1
      log "perf_analyzer failed ($protocol, concurrency $c):"
      tail -n 20 "$out.log" >&2
    fi
  done
done

fields=(
  --text "perf_analyzer=$PA_VERSION (the tritonclient $TRITONCLIENT_VERSION wheel's binary)"
  --text "server=$([[ $EXTERNAL == 1 ]] && echo external || echo "serve-kit started by the bench")"
  --text "model=$MODEL" --text "mode=$([[ $PA_ASYNC == 1 ]] && echo async || echo sync)"
  --field "measurement_interval_ms=$INTERVAL_MS" --field "stability_pct=$STABILITY"
  --field "max_trials=$MAX_TRIALS" --field "load_avg_before=[${LOAD_BEFORE// /, }]"
)
[[ -n $GRPC_SKIPPED ]] && fields+=(--text "grpc_skipped=$GRPC_SKIPPED")
[[ -n $HTTP_SKIPPED ]] && fields+=(--text "http_skipped=$HTTP_SKIPPED")
(cd "$ROOT" && "$PYTHON" bench/perf_analyzer_input.py report --csv-dir "$WORK/pa" \
  --concurrency "$(echo "$CONCURRENCY" | tr -s ' ' ',')" --jpegs "$WORK/input/jpegs.json" "${fields[@]}")
exit "$FAILED"
