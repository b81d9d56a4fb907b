#!/usr/bin/env bash
# Jaeger (v2, an OpenTelemetry Collector build) as the local trace store: OTLP in, the
# query API and the trace viewer (infra/local/trace-viewer) out, traces kept in memory only.
#
# The binary is built from source through the Go module proxy, once, into
# $PHONEBILL_CACHE/tools/jaeger-<version>/bin/jaeger. Nothing else is downloaded.
#
# Sourced by the scripts that want traces (functions jaeger_*), or run:
#   infra/local/jaeger.sh ensure                  build the binary (skipped when present)
#   infra/local/jaeger.sh start DIR OTLP_HTTP_PORT OTLP_GRPC_PORT UI_PORT
#                                                 an instance working in DIR (config
#                                                 DIR/jaeger.yaml, pid DIR/jaeger.pid,
#                                                 log DIR/jaeger.log)
#   infra/local/jaeger.sh stop DIR                SIGTERM, then SIGKILL after 15 s
#
# Everything listens on 127.0.0.1 only: OTLP/HTTP (POST /v1/traces), OTLP/gRPC, and the
# query service on UI_PORT (GET /api/services, /api/traces?service=S, /api/traces/ID,
# /api/v3/...; a v3 search needs query.num_traces, or it fails on "search depth"). The
# query service's gRPC API takes an ephemeral loopback port, and the collector's own
# metrics are off, so instances never collide on ports of their own.
# Settings (environment): PHONEBILL_JAEGER_MAX_TRACES (traces kept, oldest dropped first;
# default 10000).
set -euo pipefail

# v1.75.0 is the approved release (later ones are served but not approved). Its v1.x
# tags carry the same v2 binary as the v2.x tags, under a module path `go get` accepts.
JAEGER_VERSION="v1.75.0"
JAEGER_HOME="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}/tools/jaeger-$JAEGER_VERSION"
JAEGER_BIN="$JAEGER_HOME/bin/jaeger"
# Jaeger's Go module has no UI assets (its web UI is built separately, from a JavaScript
# project not published to npm): the UI port serves this project's own viewer instead.
JAEGER_VIEWER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/trace-viewer"

jaeger_log() { printf '\033[1m[jaeger]\033[0m %s\n' "$*" >&2; }

# `go install ...@version` refuses Jaeger's module (its go.mod has a replace directive),
# so the binary is built as a tool of a throwaway module that repeats that replace, the
# build upstream tests. About 10 minutes on 2 cores, once. Modules go to the tools cache's
# gomod like infra/tests/run.sh's (writable, so it can be deleted); GOCACHE stays Go's.
jaeger_ensure() {
  [ -x "$JAEGER_BIN" ] && return 0
  command -v go >/dev/null || { jaeger_log "Go 1.24 or newer is needed to build Jaeger"; return 1; }
  jaeger_log "building Jaeger $JAEGER_VERSION from source into $JAEGER_BIN (once, about 10 minutes)"
  local mod="$JAEGER_HOME/build"
  rm -rf "$mod"; mkdir -p "$mod" "$JAEGER_HOME/bin"
  # Chained with &&: errexit does not hold inside a subshell that is followed by ||.
  # -s -w drops the symbol tables (a third smaller); nobody debugs this binary.
  (
    export GOMODCACHE="${JAEGER_HOME%/*}/gomod" GOFLAGS=-modcacherw GOTOOLCHAIN=local
    cd "$mod" &&
      go mod init phonebill.local/jaeger-tool 2>/dev/null &&
      go mod edit -replace github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0 &&
      go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
      go build -trimpath -ldflags='-s -w' -o "$JAEGER_BIN.partial" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >&2 || { jaeger_log "the build failed (kept $mod)"; return 1; }
  mv "$JAEGER_BIN.partial" "$JAEGER_BIN"
  rm -rf "$mod"
}

jaeger_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

jaeger_ready() { # UI_PORT
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/api/services")" = 200 ]
}

# jaeger_start DIR OTLP_HTTP_PORT OTLP_GRPC_PORT UI_PORT: starts an instance unless DIR's
# pid file names a live process; returns once the query API answers (60 s at most: a
# loaded 2-core machine starts even a Go binary slowly).
jaeger_start() {
  local dir="$1" http_port="$2" grpc_port="$3" ui_port="$4"
  mkdir -p "$dir"
  if [ -f "$dir/jaeger.pid" ] && kill -0 "$(cat "$dir/jaeger.pid")" 2>/dev/null; then return 0; fi
  local port
  for port in "$http_port" "$grpc_port" "$ui_port"; do
    jaeger_port_open "$port" && { jaeger_log "port $port is taken by a process this script did not start"; return 1; }
  done
  [ -x "$JAEGER_BIN" ] || { jaeger_log "no binary at $JAEGER_BIN (run jaeger_ensure)"; return 1; }
  cat >"$dir/jaeger.yaml" <<EOF
# Written by infra/local/jaeger.sh.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # Off: the collector's own Prometheus endpoint would take a fixed port (8888).
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: ${PHONEBILL_JAEGER_MAX_TRACES:-10000}
  jaeger_query:
    storage:
      traces: memory_store
    # Its own spans would be stored next to the project's and show up as service "jaeger".
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$ui_port
    # The trace viewer (infra/local/trace-viewer) at /, on the query API's port.
    ui:
      assets_path: $JAEGER_VIEWER
    grpc:
      # An ephemeral loopback port: nothing here uses the gRPC query API.
      endpoint: 127.0.0.1:0

receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$http_port
      grpc:
        endpoint: 127.0.0.1:$grpc_port

processors:
  # Short timeout: a span sent by a test is queryable within a fraction of a second.
  batch:
    timeout: 100ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
EOF
  nohup "$JAEGER_BIN" --config "$dir/jaeger.yaml" >>"$dir/jaeger.log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + 60))
  echo "$pid" >"$dir/jaeger.pid"
  until jaeger_ready "$ui_port"; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/jaeger.log" >&2; jaeger_log "Jaeger ($dir) exited"; rm -f "$dir/jaeger.pid"; return 1; }
    [ $SECONDS -lt $deadline ] || { jaeger_log "Jaeger's query API on $ui_port is not ready after 60 s ($dir/jaeger.log)"; return 1; }
    sleep 0.2
  done
}

# jaeger_stop DIR
jaeger_stop() {
  local file="$1/jaeger.pid" pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    ensure) jaeger_ensure ;;
    start) shift; jaeger_ensure; jaeger_start "$@" ;;
    stop) jaeger_stop "$2" ;;
    *) sed -n '2,/^set -euo/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
fi
