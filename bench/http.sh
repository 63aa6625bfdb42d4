#!/usr/bin/env bash
# HTTP API benchmark for Portcullis: row-level security on vs. off, and a baseline server on
# the same stack with no security work, side by side.
#
#   bash bench/http.sh                 # Markdown results on stdout, progress on stderr
#   bash bench/http.sh > results.md
#
# What it does (see docs/BENCHMARKS.md, section "HTTP API"):
#   1. cargo build --release, and the baseline server (cargo build --release -p portcullis-server
#      --example baseline, crates/server/examples/baseline.rs); installs the load tool `oha` if
#      missing (apt, else cargo install).
#   2. Drops and creates two databases, portcullis_bench_rls_on and portcullis_bench_rls_off,
#      and starts two `portcullis serve` instances on 127.0.0.1:9443 (on) and :9444 (off),
#      each with its own data dir under a temp dir, log level warn.
#   3. Runs first-run setup on each, creates one project with 50 documents (~1 KiB bodies).
#   3b. Starts the baseline arm on 127.0.0.1:9445 against the RLS-on arm's database and TLS
#      certificate: the same rustls/hyper/axum listener and sqlx pool, answering the document
#      GET with one SELECT by primary key as the connecting superuser (no authentication, no
#      context, no transaction, no decryption). It is the limit of this machine and stack.
#   4. On the "off" database only, as superuser, disables row-level security on every table in
#      schema public (NO FORCE + DISABLE). The server's boot self-check already passed, so it
#      keeps serving: that is the "RLS off" arm; everything else (queries, transactions,
#      session lookup, set_config calls) is identical.
#   5. Warm-up, then ROUNDS rounds; in each round every test runs on both arms back to back
#      (order alternates per round: on/off, off/on, ... so drift hits both arms alike):
#        a. single-document GET at a fixed rate (500 req/s, 20 s, latency-corrected)
#        b. single-document GET at max throughput (32 connections, 15 s), also on the baseline
#        c. 50-item list GET at max throughput (32 connections, 15 s)
#      Each run also records CPU per request (server process + the PostgreSQL backends of its
#      database, from /proc/PID/stat; the baseline's backends are told apart by their
#      application_name), which is far less sensitive to a busy machine than throughput.
#      Ratios (off/on and on/baseline throughput, on/off p99 and CPU) are computed per round;
#      medians over rounds are reported, with the targets of the lean-request-path issue.
#   6. One indicative pair with an API token (viewer) instead of a session token.
#   7. SIGTERM to the three servers, drops both databases, removes the temp dir.
#
# Only 127.0.0.1 is targeted. Measurement phase is bounded (~10 min with defaults; a hard
# deadline skips remaining rounds). Knobs (environment): BENCH_ROUNDS (5), BENCH_RATE (500),
# BENCH_FIXED_SECS (20), BENCH_MAX_SECS (15), BENCH_CONNS (32), BENCH_DEADLINE_SECS (780,
# counted from the end of the build), BENCH_PGHOST/BENCH_PGPORT/BENCH_PGUSER
# (127.0.0.1/5432/postgres, trust auth or PGPASSWORD), BENCH_KEEP_DB=1 (keep the databases),
# BENCH_RESULTS_DIR (copy raw oha JSON, per-run TSV, server logs and the table there),
# BENCH_SKIP_BUILD=1, BENCH_BIN (binary to run instead of target/release/portcullis),
# BENCH_BASELINE_BIN (instead of target/release/examples/baseline), BENCH_PERF_DIR (record a
# system-wide `perf` profile of 8 s in the middle of each round-1 run there); CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-5}"
RATE="${BENCH_RATE:-500}"
FIXED_SECS="${BENCH_FIXED_SECS:-20}"
MAX_SECS="${BENCH_MAX_SECS:-15}"
CONNS="${BENCH_CONNS:-32}"
DEADLINE_SECS="${BENCH_DEADLINE_SECS:-780}"
PGH="${BENCH_PGHOST:-127.0.0.1}"
PGP="${BENCH_PGPORT:-5432}"
PGU="${BENCH_PGUSER:-postgres}"
DOCS=50
ARMS=(on off)        # the two Portcullis servers
ALL=(on off base)     # ... and the baseline
declare -A PORT=([on]=9443 [off]=9444 [base]=9445)
BASE_APP=portcullis-baseline   # the baseline's application_name (examples/baseline.rs)
declare -A DB=([on]=portcullis_bench_rls_on [off]=portcullis_bench_rls_off)
declare -A PID=() BASE=() SESSION=() APITOKEN=() ENVID=() PROJECT=() DOC=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Anything PORTCULLIS_* in the caller's environment would change the servers' configuration.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^PORTCULLIS_' || true)

# ---------------------------------------------------------------- tools and build
need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  need apt-get || return 1
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get install -y -qq "$@" >&2 || { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq "$@" >&2; }
}
for tool in curl jq psql createdb dropdb timeout; do
  if ! need "$tool"; then
    case "$tool" in
      psql|createdb|dropdb) apt_install postgresql-client ;;
      timeout) apt_install coreutils ;;
      *) apt_install "$tool" ;;
    esac || die "missing tool: $tool"
  fi
done
export PATH="$HOME/.cargo/bin:$PATH"
if ! need oha; then
  log "oha not found; trying the distribution package, else cargo install oha --locked (slow)"
  if need apt-cache && [[ -n "$(apt-cache policy oha 2>/dev/null | awk '/Candidate:/ && $2 != "(none)"')" ]]; then
    apt_install oha || true
  fi
  need oha || cargo install oha --locked >&2 || die "could not install oha"
fi
OHA_VERSION="$(oha --version 2>/dev/null | head -1)"
if oha --help 2>/dev/null | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(-j); fi

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release >&2)
  log "cargo build --release -p portcullis-server --example baseline"
  (cd "$ROOT" && cargo build --release -p portcullis-server --example baseline >&2)
fi
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}"
BASELINE_BIN="${BENCH_BASELINE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/baseline}"
[[ -x "$BIN" ]] || die "no binary at $BIN"
[[ -x "$BASELINE_BIN" ]] || die "no baseline binary at $BASELINE_BIN"
SECONDS=0   # the deadline counts from here

# ---------------------------------------------------------------- temp dir and cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
RES="$TMP/results"; mkdir -p "$RES"
stop_server() {
  local arm=$1 pid=${PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "server $arm (pid $pid) did not stop within 30 s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  PID[$arm]=""
}
cleanup() {
  local rc=$?
  set +e
  for arm in "${ALL[@]}"; do stop_server "$arm"; done
  if [[ "${BENCH_KEEP_DB:-0}" != 1 ]]; then
    for arm in "${ARMS[@]}"; do dropdb --if-exists -h "$PGH" -p "$PGP" -U "$PGU" "${DB[$arm]}" 2>/dev/null; done
  fi
  if [[ -n "${BENCH_RESULTS_DIR:-}" && -d "$RES" ]]; then
    mkdir -p "$BENCH_RESULTS_DIR" && cp -r "$RES"/. "$BENCH_RESULTS_DIR"/ && cp "$TMP"/*.log "$BENCH_RESULTS_DIR"/ 2>/dev/null
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for arm in "${ALL[@]}"; do
  if port_busy "${PORT[$arm]}"; then die "127.0.0.1:${PORT[$arm]} is already in use"; fi
done

# ---------------------------------------------------------------- databases and servers
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU")
for arm in "${ARMS[@]}"; do
  dropdb --if-exists -h "$PGH" -p "$PGP" -U "$PGU" "${DB[$arm]}"
  createdb -h "$PGH" -p "$PGP" -U "$PGU" "${DB[$arm]}"
done

for arm in "${ARMS[@]}"; do
  mkdir -p "$TMP/data-$arm"
  BASE[$arm]="https://127.0.0.1:${PORT[$arm]}"
  PORTCULLIS_SERVER__LISTEN="127.0.0.1:${PORT[$arm]}" \
  PORTCULLIS_DATA_DIR="$TMP/data-$arm" \
  PORTCULLIS_DATABASE__URL="postgres://$PGU@$PGH:$PGP/${DB[$arm]}" \
  PORTCULLIS_LOG__LEVEL=warn \
    "$BIN" serve >"$TMP/server-$arm.stdout.log" 2>"$TMP/server-$arm.stderr.log" </dev/null &
  PID[$arm]=$!
  log "started server $arm (pid ${PID[$arm]}) on ${BASE[$arm]}, database ${DB[$arm]}"
  # Sequential start: both bootstraps touch the cluster-wide role portcullis_app.
  for i in $(seq 1 240); do
    kill -0 "${PID[$arm]}" 2>/dev/null || { cat "$TMP/server-$arm".*.log >&2; die "server $arm exited during start"; }
    curl -ksf -o /dev/null "${BASE[$arm]}/healthz" && break
    [[ $i -lt 240 ]] || die "server $arm not healthy after 120 s"
    sleep 0.5
  done
done

api() { # api ARM METHOD PATH [JSON] -> body on stdout; fails on non-2xx
  local arm=$1 method=$2 path=$3 data=${4:-} code
  local args=(-ks -o "$TMP/resp" -w '%{http_code}' -X "$method" -H 'content-type: application/json')
  [[ -n "${SESSION[$arm]:-}" ]] && args+=(-H "Authorization: Bearer ${SESSION[$arm]}")
  [[ -n "$data" ]] && args+=(--data-binary "$data")
  code=$(curl "${args[@]}" "${BASE[$arm]}$path") || die "$method $path on $arm: curl failed"
  [[ "$code" == 2* ]] || die "$method $path on $arm: HTTP $code: $(head -c 500 "$TMP/resp")"
  cat "$TMP/resp"
}

body_text="$(printf 'Portcullis benchmark document body, line %02d. ' $(seq 1 30))"
body_text="${body_text:0:1024}"
for arm in "${ARMS[@]}"; do
  setup_token=$(grep -o '"setup_token":"[^"\\]*"' "$TMP/server-$arm.stdout.log" | head -1 | cut -d'"' -f4)
  [[ -n "$setup_token" ]] || die "no setup token on server $arm's stdout"
  out=$(api "$arm" POST /v1/setup "$(jq -nc --arg t "$setup_token" \
    '{setup_token:$t, email:"bench@example.com", password:"bench-password-123456", environment_name:"Bench", region:"eu-central"}')")
  SESSION[$arm]=$(jq -er '.session.token' <<<"$out")
  ENVID[$arm]=$(jq -er '.environment.environment_id' <<<"$out")
  PROJECT[$arm]=$(api "$arm" POST "/v1/environments/${ENVID[$arm]}/projects" '{"name":"bench"}' | jq -er '.project_id')
  for i in $(seq 1 "$DOCS"); do
    id=$(api "$arm" POST "/v1/environments/${ENVID[$arm]}/projects/${PROJECT[$arm]}/documents" \
      "$(jq -nc --arg t "Document $i" --arg b "$body_text" '{title:$t, body:$b}')" | jq -er '.document_id')
    if [[ $i -eq 1 ]]; then DOC[$arm]=$id; fi
  done
  APITOKEN[$arm]=$(api "$arm" POST "/v1/environments/${ENVID[$arm]}/tokens" '{"name":"bench","role":"viewer"}' | jq -er '.token')
  log "server $arm: environment ${ENVID[$arm]}, project ${PROJECT[$arm]}, $DOCS documents"
done

# The baseline serves the "on" arm's database (its superuser bypasses row-level security
# there) with the "on" server's certificate, and answers the same document.
ENVID[base]=${ENVID[on]}; PROJECT[base]=${PROJECT[on]}; DOC[base]=${DOC[on]}; SESSION[base]=${SESSION[on]}
BASE[base]="https://127.0.0.1:${PORT[base]}"
"$BASELINE_BIN" "postgres://$PGU@$PGH:$PGP/${DB[on]}" "127.0.0.1:${PORT[base]}" \
  "$TMP/data-on/tls/cert.pem" "$TMP/data-on/tls/key.pem" \
  >"$TMP/server-base.stdout.log" 2>"$TMP/server-base.stderr.log" </dev/null &
PID[base]=$!
log "started baseline (pid ${PID[base]}) on ${BASE[base]}, database ${DB[on]}"
for i in $(seq 1 60); do
  kill -0 "${PID[base]}" 2>/dev/null || { cat "$TMP/server-base".*.log >&2; die "baseline exited during start"; }
  port_busy "${PORT[base]}" && break
  [[ $i -lt 60 ]] || die "baseline not listening after 30 s"
  sleep 0.5
done

doc_path() { echo "/v1/environments/${ENVID[$1]}/projects/${PROJECT[$1]}/documents/${DOC[$1]}"; }
list_path() { echo "/v1/environments/${ENVID[$1]}/projects/${PROJECT[$1]}/documents?limit=50"; }

# ---------------------------------------------------------------- the "RLS off" arm
"${PSQL[@]}" -d "${DB[off]}" <<'SQL'
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') LOOP
    EXECUTE format('ALTER TABLE public.%I NO FORCE ROW LEVEL SECURITY', t.relname);
    EXECUTE format('ALTER TABLE public.%I DISABLE ROW LEVEL SECURITY', t.relname);
  END LOOP;
END $$;
SQL
declare -A RLS_STATE=()
for arm in "${ARMS[@]}"; do
  RLS_STATE[$arm]=$("${PSQL[@]}" -d "${DB[$arm]}" -Atc "SELECT count(*) FILTER (WHERE relrowsecurity) || ' enabled, ' ||
      count(*) FILTER (WHERE relforcerowsecurity) || ' forced, of ' || count(*) || ' tables'
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r','p')")
  log "RLS $arm: ${RLS_STATE[$arm]}"
done

# Both arms must answer the same thing: same document, 50 items in the list.
for arm in "${ARMS[@]}"; do
  api "$arm" GET "$(doc_path "$arm")" | jq -e --arg b "$body_text" '.body == $b' >/dev/null || die "document GET on $arm returned something else"
  n=$(api "$arm" GET "$(list_path "$arm")" | jq '.items | length')
  [[ "$n" == "$DOCS" ]] || die "list on $arm returned $n items, expected $DOCS"
done
base_doc=$(api base GET "$(doc_path base)")
jq -e --arg d "${DOC[on]}" '.document_id == $d' >/dev/null <<<"$base_doc" || die "baseline returned another document"
BODY_BYTES_ON=$(api on GET "$(doc_path on)" | wc -c); BODY_BYTES_BASE=$(wc -c <<<"$base_doc")
log "both arms answer identically (document body, $DOCS-item list); baseline answers the same document ($BODY_BYTES_BASE bytes of JSON, Portcullis $BODY_BYTES_ON)"

# ---------------------------------------------------------------- measurement
compiles() { pgrep -c -x rustc 2>/dev/null || true; }
# run_oha NAME ROUND ARM TOKEN PATH OHA-ARGS... : writes $RES/NAME.r ROUND.ARM.json, appends a TSV row
# CPU time is far less sensitive to a busy machine than wall-clock throughput: per request,
# the server process's CPU plus that of the PostgreSQL backends connected to its database.
CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }
cpu_snapshot() { # cpu_snapshot ARM -> "pid kind ticks" lines
  local arm=$1 p t filter
  case "$arm" in
    base) filter="datname = '${DB[on]}' AND application_name = '$BASE_APP'" ;;
    *) filter="datname = '${DB[$arm]}' AND application_name <> '$BASE_APP'" ;;
  esac
  echo "${PID[$arm]} srv $(ticks "${PID[$arm]}")"
  for p in $("${PSQL[@]}" -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE $filter"); do
    t=$(ticks "$p")
    if [[ -n "$t" ]]; then echo "$p pg $t"; fi
  done
}
cpu_delta() { # cpu_delta BEFORE AFTER -> "server_ticks postgres_ticks" (backends that exit mid-run are lost)
  awk 'NR == FNR {b[$1] = $3; next} {d = $3 - (($1 in b) ? b[$1] : 0); if (d > 0) s[$2] += d}
       END {print s["srv"] + 0, s["pg"] + 0}' "$1" "$2"
}
printf 'round\ttest\tarm\trps_ok\tp50_ms\tp99_ms\terrors\tnon2xx\tload1\trustc\tsrv_cpu_ms\tpg_cpu_ms\tcpu_ms\n' >"$RES/runs.tsv"
run_oha() {
  local name=$1 round=$2 arm=$3 token=$4 path=$5; shift 5
  local out="$RES/$name.r$round.$arm.json" load1 rustc srv pg
  load1=$(cut -d' ' -f1 /proc/loadavg); rustc=$(compiles)
  cpu_snapshot "$arm" >"$TMP/cpu.before"
  local perf_pid=""
  if [[ -n "${BENCH_PERF_DIR:-}" && "$round" == 1 && "$name" != warm* ]]; then
    # A system-wide profile of the middle of this run (server and PostgreSQL alike).
    mkdir -p "$BENCH_PERF_DIR"
    (sleep 2; perf record -q -a -g -o "$BENCH_PERF_DIR/$name.$arm.perf.data" -- sleep 8 >/dev/null 2>&1) &
    perf_pid=$!
  fi
  timeout -s INT 120 oha --no-tui "${OHA_JSON[@]}" --insecure -w \
    -H "Authorization: Bearer $token" "$@" "${BASE[$arm]}$path" >"$out" 2>"$out.stderr" \
    || die "oha failed ($name round $round $arm): $(head -c 500 "$out.stderr")"
  cpu_snapshot "$arm" >"$TMP/cpu.after"
  if [[ -n "$perf_pid" ]]; then wait "$perf_pid" || true; fi
  read -r srv pg < <(cpu_delta "$TMP/cpu.before" "$TMP/cpu.after")
  if [[ "$round" == w* ]]; then return 0; fi
  jq -r --arg r "$round" --arg n "$name" --arg a "$arm" --arg l "$load1" --arg c "$rustc" \
     --argjson srv "$srv" --argjson pg "$pg" --argjson hz "$CLK_TCK" '
    (.statusCodeDistribution // {}) as $s
    | ([$s | to_entries[] | select(.key | startswith("2")) | .value] | add // 0) as $ok
    | ([$s | to_entries[] | .value] | add // 0) as $all
    | [$r, $n, $a,
       ($ok / .summary.total),
       (.latencyPercentiles.p50 * 1000), (.latencyPercentiles.p99 * 1000),
       ([(.errorDistribution // {}) | to_entries[] | .value] | add // 0),
       ([$s | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0),
       $l, $c,
       (if $all > 0 then $srv * 1000 / $hz / $all else 0 end),
       (if $all > 0 then $pg * 1000 / $hz / $all else 0 end),
       (if $all > 0 then ($srv + $pg) * 1000 / $hz / $all else 0 end)] | @tsv' "$out" >>"$RES/runs.tsv"
  log "  $name r$round $arm: $(tail -1 "$RES/runs.tsv" | awk -F'\t' '{printf "%.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d, non-2xx %d, CPU %.2f ms/req (server %.2f + PostgreSQL %.2f)", $4, $5, $6, $7, $8, $13, $11, $12}')"
}
FIXED=(-z "${FIXED_SECS}s" -c "$CONNS" -q "$RATE" --latency-correction)
MAXT=(-z "${MAX_SECS}s" -c "$CONNS")

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up (5 s per arm and endpoint)"
for arm in "${ARMS[@]}"; do
  run_oha warmdoc w0 "$arm" "${SESSION[$arm]}" "$(doc_path "$arm")" -z 5s -c "$CONNS"
  run_oha warmlist w0 "$arm" "${SESSION[$arm]}" "$(list_path "$arm")" -z 5s -c "$CONNS"
done
run_oha warmdoc w0 base "${SESSION[base]}" "$(doc_path base)" -z 5s -c "$CONNS"

round_secs=$(( 2 * (FIXED_SECS + 2 * MAX_SECS) + MAX_SECS + 10 ))
done_rounds=0
for round in $(seq 1 "$ROUNDS"); do
  if (( SECONDS + round_secs > DEADLINE_SECS )); then
    log "deadline: skipping rounds $round..$ROUNDS"; break
  fi
  # The baseline takes part in the max-throughput document GET, first or last in turn.
  if (( round % 2 )); then order=(on off); order3=(on off base); else order=(off on); order3=(base off on); fi
  log "round $round/$ROUNDS (order ${order3[*]}; load $(cut -d' ' -f1-3 /proc/loadavg))"
  for arm in "${order[@]}"; do run_oha fixed "$round" "$arm" "${SESSION[$arm]}" "$(doc_path "$arm")" "${FIXED[@]}"; done
  for arm in "${order3[@]}"; do run_oha doc "$round" "$arm" "${SESSION[$arm]}" "$(doc_path "$arm")" "${MAXT[@]}"; done
  for arm in "${order[@]}"; do run_oha list "$round" "$arm" "${SESSION[$arm]}" "$(list_path "$arm")" "${MAXT[@]}"; done
  done_rounds=$round
done
(( done_rounds > 0 )) || die "no round completed before the deadline"
log "API-token pair (indicative, 10 s each)"
for arm in "${ARMS[@]}"; do run_oha apidoc 1 "$arm" "${APITOKEN[$arm]}" "$(doc_path "$arm")" -z 10s -c "$CONNS"; done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

for arm in "${ALL[@]}"; do
  kill -0 "${PID[$arm]}" 2>/dev/null || die "server $arm died during the benchmark"
done
for arm in "${ALL[@]}"; do stop_server "$arm"; done

# ---------------------------------------------------------------- report
# median of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
col() { # col TEST ARM FIELD -> values across rounds
  awk -F'\t' -v t="$1" -v a="$2" -v f="$3" 'NR>1 && $2==t && $3==a {print $f}' "$RES/runs.tsv"
}
med() { col "$1" "$2" "$3" | median; }
sum() { col "$1" "$2" "$3" | awk '{s+=$1} END {print s+0}'; }
ratio() { # ratio TEST FIELD NUM_ARM DEN_ARM -> median over rounds of NUM/DEN
  awk -F'\t' -v t="$1" -v f="$2" -v n="$3" -v d="$4" '
    NR>1 && $2==t {v[$1 SUBSEP $3]=$f; r[$1]=1}
    END {for (k in r) if (v[k SUBSEP d] > 0) print v[k SUBSEP n] / v[k SUBSEP d]}' "$RES/runs.tsv" | median
}
f0() { printf '%.0f' "$1"; }
f2() { printf '%.2f' "$1"; }
verdict() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x <= lim) ? "met" : "**missed**"}'; }
verdict_lt() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x < lim) ? "met" : "**missed**"}'; }
verdict_ge() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x >= lim) ? "met" : "**missed**"}'; }

R_DOC=$(ratio doc 4 off on); R_LIST=$(ratio list 4 off on)
R_FIXED_P99=$(ratio fixed 6 on off); R_FIXED_P50=$(ratio fixed 5 on off)
R_CPU_DOC=$(ratio doc 13 on off); R_CPU_LIST=$(ratio list 13 on off); R_CPU_FIXED=$(ratio fixed 13 on off)
P99_ON=$(med fixed on 6)
R_BASE=$(ratio doc 4 on base); R_BASE_OFF=$(ratio doc 4 off base); R_CPU_BASE=$(ratio doc 13 on base)
CPU_DOC_ON=$(med doc on 13)
cpu3() { echo "$(f2 "$(med "$1" "$2" 11)") + $(f2 "$(med "$1" "$2" 12)") = $(f2 "$(med "$1" "$2" 13)")"; }
{
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average (1/5/15 min) at start of measurement $LOAD_START, at end $LOAD_END. Load tool: $OHA_VERSION. Code: working tree at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), binary built $(date -u -r "$BIN" '+%H:%M UTC'). Rounds: $done_rounds (medians over rounds)."
  echo
  echo "| Test | Metric | RLS on | RLS off | Baseline | Ratio (median per round) |"
  echo "|---|---|---:|---:|---:|---:|"
  echo "| Document GET, fixed $RATE req/s, ${FIXED_SECS} s | p50 ms | $(f2 "$(med fixed on 5)") | $(f2 "$(med fixed off 5)") | | on/off $(f2 "$R_FIXED_P50") |"
  echo "| | p99 ms | $(f2 "$P99_ON") | $(f2 "$(med fixed off 6)") | | on/off $(f2 "$R_FIXED_P99") |"
  echo "| | achieved req/s | $(f0 "$(med fixed on 4)") | $(f0 "$(med fixed off 4)") | | |"
  echo "| | errors / non-2xx (all rounds) | $(sum fixed on 7) / $(sum fixed on 8) | $(sum fixed off 7) / $(sum fixed off 8) | | |"
  echo "| | CPU ms/request: server + PostgreSQL = total | $(cpu3 fixed on) | $(cpu3 fixed off) | | on/off $(f2 "$R_CPU_FIXED") |"
  echo "| Document GET, max, c=$CONNS, ${MAX_SECS} s | req/s | $(f0 "$(med doc on 4)") | $(f0 "$(med doc off 4)") | $(f0 "$(med doc base 4)") | off/on **$(f2 "$R_DOC")**; on/baseline **$(f2 "$R_BASE")**; off/baseline $(f2 "$R_BASE_OFF") |"
  echo "| | p50 / p99 ms | $(f2 "$(med doc on 5)") / $(f2 "$(med doc on 6)") | $(f2 "$(med doc off 5)") / $(f2 "$(med doc off 6)") | $(f2 "$(med doc base 5)") / $(f2 "$(med doc base 6)") | |"
  echo "| | errors / non-2xx (all rounds) | $(sum doc on 7) / $(sum doc on 8) | $(sum doc off 7) / $(sum doc off 8) | $(sum doc base 7) / $(sum doc base 8) | |"
  echo "| | CPU ms/request: server + PostgreSQL = total | $(cpu3 doc on) | $(cpu3 doc off) | $(cpu3 doc base) | on/off **$(f2 "$R_CPU_DOC")**; on/baseline $(f2 "$R_CPU_BASE") |"
  echo "| List GET (50 items), max, c=$CONNS, ${MAX_SECS} s | req/s | $(f0 "$(med list on 4)") | $(f0 "$(med list off 4)") | | off/on **$(f2 "$R_LIST")** |"
  echo "| | p50 / p99 ms | $(f2 "$(med list on 5)") / $(f2 "$(med list on 6)") | $(f2 "$(med list off 5)") / $(f2 "$(med list off 6)") | | |"
  echo "| | errors / non-2xx (all rounds) | $(sum list on 7) / $(sum list on 8) | $(sum list off 7) / $(sum list off 8) | | |"
  echo "| | CPU ms/request: server + PostgreSQL = total | $(cpu3 list on) | $(cpu3 list off) | | on/off **$(f2 "$R_CPU_LIST")** |"
  echo "| Document GET with API token, max, 10 s, 1 pair | req/s | $(f0 "$(med apidoc on 4)") | $(f0 "$(med apidoc off 4)") | | off/on $(f2 "$(ratio apidoc 4 off on)") |"
  echo "| | CPU ms/request: server + PostgreSQL = total | $(cpu3 apidoc on) | $(cpu3 apidoc off) | | |"
  echo
  echo "Targets (lean-request-path issue, section 1), RLS on unless stated:"
  echo
  echo "| Target | Measured | Verdict |"
  echo "|---|---:|---|"
  echo "| Document GET throughput, full stack / baseline >= 0.5 | $(f2 "$R_BASE") | $(verdict_ge "$R_BASE" 0.5) |"
  echo "| CPU per authorized document GET (max, server + PostgreSQL) < 0.8 ms | $(f2 "$CPU_DOC_ON") ms | $(verdict_lt "$CPU_DOC_ON" 0.8) |"
  echo "| RLS on/off <= 1.10, document GET, by CPU per request | $(f2 "$R_CPU_DOC") | $(verdict "$R_CPU_DOC" 1.10) |"
  echo "| RLS on/off <= 1.10, list GET (50 items), by CPU per request | $(f2 "$R_CPU_LIST") | $(verdict "$R_CPU_LIST" 1.10) |"
  echo "| RLS off/on <= 1.10, document GET, by throughput | $(f2 "$R_DOC") | $(verdict "$R_DOC" 1.10) |"
  echo "| RLS off/on <= 1.10, list GET (50 items), by throughput | $(f2 "$R_LIST") | $(verdict "$R_LIST" 1.10) |"
  echo "| Document GET p99 at $RATE req/s < 10 ms | $(f2 "$P99_ON") ms | $(verdict_lt "$P99_ON" 10) |"
  echo
  echo "CPU per request is the steadier figure on a shared machine; throughput and p99 move with other load. The baseline (crates/server/examples/baseline.rs) answers the document GET with one SELECT by primary key on the RLS-on database as superuser, on the same TLS/HTTP stack, without authentication, context, transaction or decryption; its JSON is $BODY_BYTES_BASE bytes against Portcullis's $BODY_BYTES_ON."
  echo
  echo "RLS state after the switch: on arm ${RLS_STATE[on]}; off arm ${RLS_STATE[off]}."
  echo
  echo "<details><summary>Per-run results</summary>"
  echo
  echo "| round | test | arm | req/s (2xx) | p50 ms | p99 ms | errors | non-2xx | CPU ms/req | load1 | rustc procs |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR>1 {printf "| %s | %s | %s | %.0f | %.2f | %.2f | %d | %d | %.2f | %s | %s |\n", $1,$2,$3,$4,$5,$6,$7,$8,$13,$9,$10}' "$RES/runs.tsv"
  echo
  echo "</details>"
} | tee "$RES/table.md"

# Server log lines at warn level or above (log level is warn, so any line is news).
for arm in "${ALL[@]}"; do
  n=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/server-$arm.stderr.log" | grep -c . || true)
  if [[ "$n" -gt 0 ]]; then
    log "server $arm wrote $n log line(s) at warn or above; first ones:"
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/server-$arm.stderr.log" | head -20 >&2
  else
    log "server $arm: no warnings or errors logged"
  fi
done
