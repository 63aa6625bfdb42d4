#!/usr/bin/env bash
# Audited writes over HTTP: document creates with the audit trail on vs. the same creates with
# auditing switched off (a benchmark-only build), side by side in one run (issue 10, section 2:
# audited creates at least 0.85 of unaudited).
#
#   bash bench/writes.sh                 # Markdown results on stdout, progress on stderr
#   bash bench/writes.sh > results.md
#
# What it does (see docs/BENCHMARKS.md, section "Audited writes over HTTP"):
#   1. cargo build --release -p portcullis --features bench-unaudited (the feature only adds the
#      switch below; without the variable that binary audits exactly like a release build);
#      installs the load tool `oha` if missing (apt, else cargo install).
#   2. Drops and creates two databases, portcullis_bench_writes_audited and
#      portcullis_bench_writes_unaudited, and starts the SAME binary twice: "audited" on
#      127.0.0.1:9446 (BENCH_PORTCULLIS_UNAUDITED unset) and "unaudited" on :9447 with
#      BENCH_PORTCULLIS_UNAUDITED=disable-auditing (that process writes no audit entries and
#      logs an ERROR saying so). Own data dir per server under a temp dir, log level warn.
#   3. First-run setup on each (owner session), one project. Then checks the switch really
#      took: the audited database has audit entries from setup, the unaudited one none, and
#      only the unaudited server logged that auditing is disabled. Fails otherwise (e.g. a
#      binary built without the feature).
#   4. Warm-up, then ROUNDS rounds; in each round both tests run on both arms back to back
#      (order alternates per round: audited/unaudited, unaudited/audited, ...):
#        a. POST .../documents (JSON body ~1 KiB) at max throughput (16 connections, 15 s);
#        b. the same at a fixed rate (300 req/s, 15 s, latency-corrected), for p99.
#      Every response must be 201 and oha must report no errors, else the script fails.
#      An audited create commits its entry into audit_pending; the server's sequencer chains
#      it into audit_log in the background. So after every run the script waits until
#      audit_pending is empty in that arm's database (the "drain"), and reports both the
#      request throughput (creates / load time) and the chained throughput (creates / (load
#      time + drain time)); it also checks that audit_log grew by at least the number of
#      creates (audited) or stayed empty (unaudited). The unaudited arm goes through the same
#      check (its drain is 0).
#      CPU per create: the server process (all threads, so its sequencer too) plus every
#      PostgreSQL backend connected to the arm's database (the runtime pool, the sequencer's
#      role portcullis_sequencer, the other background roles, autovacuum workers), from
#      /proc/PID/stat, counted from before the load until the drain is done.
#      Ratios audited/unaudited are computed per round; medians over rounds are reported.
#   5. SIGTERM to both servers, drops both databases, removes the temp dir.
#
# Only 127.0.0.1 is targeted. On a shared machine run it under the benchmark lock, e.g.
#   flock /work/bench.lock env CARGO_TARGET_DIR=/work/bench-target bash bench/writes.sh
# Knobs (environment): BENCH_ROUNDS (3), BENCH_CONNS (16), BENCH_MAX_SECS (15), BENCH_RATE
# (300), BENCH_FIXED_SECS (15), BENCH_WARM_SECS (5), BENCH_BODY_BYTES (1024, the document
# body's length), BENCH_DRAIN_TIMEOUT (120 s), BENCH_DEADLINE_SECS (600, counted from the end
# of the build; remaining rounds are skipped), BENCH_PGHOST/BENCH_PGPORT/BENCH_PGUSER
# (127.0.0.1/5432/postgres, trust auth or PGPASSWORD), BENCH_KEEP_DB=1 (keep the databases),
# BENCH_RESULTS_DIR (copy raw oha JSON, per-run TSV, server logs and the table there),
# BENCH_SKIP_BUILD=1, BENCH_BIN (binary to run instead of target/release/portcullis; it must
# be built with --features bench-unaudited); CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNS="${BENCH_CONNS:-16}"
MAX_SECS="${BENCH_MAX_SECS:-15}"
RATE="${BENCH_RATE:-300}"
FIXED_SECS="${BENCH_FIXED_SECS:-15}"
WARM_SECS="${BENCH_WARM_SECS:-5}"
BODY_BYTES="${BENCH_BODY_BYTES:-1024}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-120}"
DEADLINE_SECS="${BENCH_DEADLINE_SECS:-600}"
PGH="${BENCH_PGHOST:-127.0.0.1}"
PGP="${BENCH_PGPORT:-5432}"
PGU="${BENCH_PGUSER:-postgres}"
SWITCH_VAR=BENCH_PORTCULLIS_UNAUDITED
SWITCH_VALUE=disable-auditing
SWITCH_LOG='AUDITING IS DISABLED'
ARMS=(aud unaud)
declare -A NAME=([aud]=audited [unaud]=unaudited)
declare -A PORT=([aud]=9446 [unaud]=9447)
declare -A DB=([aud]=portcullis_bench_writes_audited [unaud]=portcullis_bench_writes_unaudited)
declare -A PID=() BASE=() SESSION=() ENVID=() PROJECT=()
COMMAND="BENCH_ROUNDS=$ROUNDS BENCH_CONNS=$CONNS BENCH_MAX_SECS=$MAX_SECS BENCH_RATE=$RATE BENCH_FIXED_SECS=$FIXED_SECS BENCH_BODY_BYTES=$BODY_BYTES bash bench/writes.sh"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Anything PORTCULLIS_* in the caller's environment would change the servers' configuration,
# and the switch must reach the unaudited server only.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^PORTCULLIS_' || true)
unset "$SWITCH_VAR"

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
  log "cargo build --release -p portcullis --features bench-unaudited"
  (cd "$ROOT" && cargo build --release -p portcullis --features bench-unaudited >&2)
fi
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}"
[[ -x "$BIN" ]] || die "no binary at $BIN"
SECONDS=0   # the deadline counts from here

# ---------------------------------------------------------------- temp dir and cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-writes.XXXXXX")"
RES="$TMP/results"; mkdir -p "$RES"
stop_server() {
  local arm=$1 pid=${PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "server ${NAME[$arm]} (pid $pid) did not stop within 30 s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  PID[$arm]=""
}
cleanup() {
  local rc=$?
  set +e
  for arm in "${ARMS[@]}"; do stop_server "$arm"; done
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
for arm in "${ARMS[@]}"; do
  if port_busy "${PORT[$arm]}"; then die "127.0.0.1:${PORT[$arm]} is already in use"; fi
done

# ---------------------------------------------------------------- databases and servers
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU")
sql() { "${PSQL[@]}" -d "${DB[$1]}" -Atc "$2"; }   # sql ARM QUERY, as superuser (bypasses RLS)
for arm in "${ARMS[@]}"; do
  dropdb --if-exists -h "$PGH" -p "$PGP" -U "$PGU" "${DB[$arm]}"
  createdb -h "$PGH" -p "$PGP" -U "$PGU" "${DB[$arm]}"
done

for arm in "${ARMS[@]}"; do
  mkdir -p "$TMP/data-$arm"
  BASE[$arm]="https://127.0.0.1:${PORT[$arm]}"
  switch=()
  if [[ "$arm" == unaud ]]; then switch=("$SWITCH_VAR=$SWITCH_VALUE"); fi
  env "${switch[@]}" \
    PORTCULLIS_SERVER__LISTEN="127.0.0.1:${PORT[$arm]}" \
    PORTCULLIS_DATA_DIR="$TMP/data-$arm" \
    PORTCULLIS_DATABASE__URL="postgres://$PGU@$PGH:$PGP/${DB[$arm]}" \
    PORTCULLIS_LOG__LEVEL=warn \
    "$BIN" serve >"$TMP/server-$arm.stdout.log" 2>"$TMP/server-$arm.stderr.log" </dev/null &
  PID[$arm]=$!
  log "started server ${NAME[$arm]} (pid ${PID[$arm]}) on ${BASE[$arm]}, database ${DB[$arm]}${switch[*]:+, ${switch[*]}}"
  # Sequential start: both bootstraps touch the cluster-wide roles (portcullis_app, ...).
  for i in $(seq 1 240); do
    kill -0 "${PID[$arm]}" 2>/dev/null || { cat "$TMP/server-$arm".*.log >&2; die "server ${NAME[$arm]} exited during start"; }
    curl -ksf -o /dev/null "${BASE[$arm]}/healthz" && break
    [[ $i -lt 240 ]] || die "server ${NAME[$arm]} not healthy after 120 s"
    sleep 0.5
  done
done

api() { # api ARM METHOD PATH [JSON] -> body on stdout; fails on non-2xx
  local arm=$1 method=$2 path=$3 data=${4:-} code
  local args=(-ks -o "$TMP/resp" -w '%{http_code}' -X "$method" -H 'content-type: application/json')
  [[ -n "${SESSION[$arm]:-}" ]] && args+=(-H "Authorization: Bearer ${SESSION[$arm]}")
  [[ -n "$data" ]] && args+=(--data-binary "$data")
  code=$(curl "${args[@]}" "${BASE[$arm]}$path") || die "$method $path on ${NAME[$arm]}: curl failed"
  [[ "$code" == 2* ]] || die "$method $path on ${NAME[$arm]}: HTTP $code: $(head -c 500 "$TMP/resp")"
  cat "$TMP/resp"
}

body_text="$(printf 'Portcullis write benchmark document body, line %03d. ' $(seq 1 $(( BODY_BYTES / 40 + 2 ))))"
body_text="${body_text:0:$BODY_BYTES}"
create_path() { echo "/v1/environments/${ENVID[$1]}/projects/${PROJECT[$1]}/documents"; }
CREATE_JSON="$(jq -nc --arg b "$body_text" '{title:"Benchmark create", body:$b}')"
for arm in "${ARMS[@]}"; do
  setup_token=$(grep -o '"setup_token":"[^"\\]*"' "$TMP/server-$arm.stdout.log" | head -1 | cut -d'"' -f4)
  [[ -n "$setup_token" ]] || die "no setup token on server ${NAME[$arm]}'s stdout"
  out=$(api "$arm" POST /v1/setup "$(jq -nc --arg t "$setup_token" \
    '{setup_token:$t, email:"bench@example.com", password:"bench-password-123456", environment_name:"Bench", region:"eu-central"}')")
  SESSION[$arm]=$(jq -er '.session.token' <<<"$out")
  ENVID[$arm]=$(jq -er '.environment.environment_id' <<<"$out")
  PROJECT[$arm]=$(api "$arm" POST "/v1/environments/${ENVID[$arm]}/projects" '{"name":"bench"}' | jq -er '.project_id')
  # One create through curl: the answer must be the document we sent.
  api "$arm" POST "$(create_path "$arm")" "$CREATE_JSON" \
    | jq -e --arg b "$body_text" '.body == $b and (.document_id | length) > 0' >/dev/null \
    || die "document create on ${NAME[$arm]} answered something else"
  log "server ${NAME[$arm]}: environment ${ENVID[$arm]}, project ${PROJECT[$arm]}"
done
CREATE_BYTES=${#CREATE_JSON}

# ---------------------------------------------------------------- did the switch take?
audit_rows() { sql "$1" "SELECT (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM audit_pending)"; }
pending() { sql "$1" "SELECT count(*) FROM audit_pending"; }
chained() { sql "$1" "SELECT count(*) FROM audit_log"; }
wait_drained() { # wait_drained ARM -> "pending_at_start drain_seconds" once audit_pending is empty
  local arm=$1 t0 n first=""
  t0=$EPOCHREALTIME
  while :; do
    n=$(pending "$arm")
    if [[ -z "$first" ]]; then first=$n; fi
    if [[ "$n" == 0 ]]; then break; fi
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v lim="$DRAIN_TIMEOUT" 'BEGIN {exit !(b - a > lim)}' \
      && die "${NAME[$arm]}: $n audit entries still pending ${DRAIN_TIMEOUT} s after the load"
    sleep 0.05
  done
  # Nothing pending at the first look: the sequencer kept up, the drain is 0.
  if [[ "$first" == 0 ]]; then echo "0 0"; else awk -v f="$first" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {print f, b - a}'; fi
}
for arm in "${ARMS[@]}"; do wait_drained "$arm" >/dev/null; done
declare -A SETUP_ENTRIES=()
for arm in "${ARMS[@]}"; do SETUP_ENTRIES[$arm]=$(audit_rows "$arm"); done
clean_log() { sed 's/\x1b\[[0-9;]*m//g' "$TMP/server-$1.stderr.log"; }
(( SETUP_ENTRIES[aud] > 0 )) || die "the audited server wrote no audit entries during setup"
if (( SETUP_ENTRIES[unaud] > 0 )); then
  die "the unaudited server wrote ${SETUP_ENTRIES[unaud]} audit entries: is $BIN built with --features bench-unaudited?"
fi
clean_log unaud | grep -q "$SWITCH_LOG" || die "the unaudited server did not log that auditing is disabled"
if clean_log aud | grep -q "$SWITCH_LOG"; then die "the audited server logged that auditing is disabled"; fi
log "switch checked: audited arm ${SETUP_ENTRIES[aud]} audit entries after setup, unaudited arm 0 (and it logged so)"

# ---------------------------------------------------------------- measurement
compiles() { pgrep -c -x rustc 2>/dev/null || true; }
# CPU per create: the server process's CPU (all its threads, the sequencer included) plus that
# of every PostgreSQL backend connected to the arm's database (any role: runtime pool,
# portcullis_sequencer, the other background roles, autovacuum), from /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }
cpu_snapshot() { # cpu_snapshot ARM -> "pid kind ticks" lines
  local arm=$1 p t
  echo "${PID[$arm]} srv $(ticks "${PID[$arm]}")"
  for p in $("${PSQL[@]}" -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '${DB[$arm]}'"); do
    t=$(ticks "$p")
    if [[ -n "$t" ]]; then echo "$p pg $t"; fi
  done
}
cpu_delta() { # cpu_delta BEFORE AFTER -> "server_ticks postgres_ticks" (backends that exit mid-run are lost)
  awk 'NR == FNR {b[$1] = $3; next} {d = $3 - (($1 in b) ? b[$1] : 0); if (d > 0) s[$2] += d}
       END {print s["srv"] + 0, s["pg"] + 0}' "$1" "$2"
}
printf 'round\ttest\tarm\tcreates\tload_s\trps\tpending_end\tdrain_s\tchained_rps\tp50_ms\tp99_ms\tload1\trustc\tsrv_us\tpg_us\tcpu_us\tnew_entries\n' >"$RES/runs.tsv"
# run_oha NAME ROUND ARM OHA-ARGS... : POSTs creates, waits for the drain, appends a TSV row
run_oha() {
  local name=$1 round=$2 arm=$3; shift 3
  local out="$RES/$name.r$round.$arm.json" load1 rustc srv pg log0 log1 drain creates bad
  load1=$(cut -d' ' -f1 /proc/loadavg); rustc=$(compiles)
  log0=$(chained "$arm")
  cpu_snapshot "$arm" >"$TMP/cpu.before"
  timeout -s INT $(( MAX_SECS + FIXED_SECS + WARM_SECS + 120 )) oha --no-tui "${OHA_JSON[@]}" --insecure -w \
    -m POST -d "$CREATE_JSON" -H 'content-type: application/json' \
    -H "authorization: Bearer ${SESSION[$arm]}" "$@" "${BASE[$arm]}$(create_path "$arm")" >"$out" 2>"$out.stderr" \
    || die "oha failed ($name round $round ${NAME[$arm]}): $(head -c 500 "$out.stderr")"
  drain=$(wait_drained "$arm")
  cpu_snapshot "$arm" >"$TMP/cpu.after"
  read -r srv pg < <(cpu_delta "$TMP/cpu.before" "$TMP/cpu.after")
  log1=$(chained "$arm")
  # Every answer a 201, no transport errors: anything else is a broken run, not a slow one.
  bad=$(jq -r '[((.statusCodeDistribution // {}) | to_entries[] | select(.key != "201") | "\(.value)x HTTP \(.key)"),
                ((.errorDistribution // {}) | to_entries[] | "\(.value)x \(.key)")] | join(", ")' "$out")
  [[ -z "$bad" ]] || die "$name round $round ${NAME[$arm]}: not every create answered 201: $bad"
  creates=$(jq -r '(.statusCodeDistribution // {})["201"] // 0' "$out")
  (( creates > 0 )) || die "$name round $round ${NAME[$arm]}: no create answered 201"
  if [[ "$arm" == aud ]]; then
    (( log1 - log0 >= creates )) || die "$name round $round: $creates creates but only $(( log1 - log0 )) entries chained"
  else
    (( log1 == 0 )) || die "$name round $round: the unaudited arm has $log1 chained audit entries"
  fi
  if [[ "$round" == w* ]]; then return 0; fi
  jq -r --arg r "$round" --arg n "$name" --arg a "$arm" --arg l "$load1" --arg c "$rustc" \
     --argjson creates "$creates" --arg drain "$drain" --argjson srv "$srv" --argjson pg "$pg" \
     --argjson hz "$CLK_TCK" --argjson entries $(( log1 - log0 )) '
    ($drain | split(" ") | map(tonumber)) as [$pend, $dr]
    | .summary.total as $t
    | [$r, $n, $a, $creates, $t, ($creates / $t), $pend, $dr, ($creates / ($t + $dr)),
       (.latencyPercentiles.p50 * 1000), (.latencyPercentiles.p99 * 1000),
       $l, $c,
       ($srv * 1e6 / $hz / $creates), ($pg * 1e6 / $hz / $creates), (($srv + $pg) * 1e6 / $hz / $creates),
       $entries] | @tsv' "$out" >>"$RES/runs.tsv"
  log "  $name r$round ${NAME[$arm]}: $(tail -1 "$RES/runs.tsv" | awk -F'\t' '{printf "%d creates, %.0f/s, chained %.0f/s (%d pending at end, drain %.2f s), p50 %.2f ms, p99 %.2f ms, CPU %.0f us/create (server %.0f + PostgreSQL %.0f)", $4, $6, $9, $7, $8, $10, $11, $16, $14, $15}')"
}
MAXT=(-z "${MAX_SECS}s" -c "$CONNS")
FIXED=(-z "${FIXED_SECS}s" -c "$CONNS" -q "$RATE" --latency-correction)

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up (${WARM_SECS} s per arm)"
for arm in "${ARMS[@]}"; do run_oha warm w0 "$arm" -z "${WARM_SECS}s" -c "$CONNS"; done

round_secs=$(( 2 * (MAX_SECS + FIXED_SECS) + 20 ))
done_rounds=0
for round in $(seq 1 "$ROUNDS"); do
  if (( SECONDS + round_secs > DEADLINE_SECS )); then
    log "deadline: skipping rounds $round..$ROUNDS"; break
  fi
  if (( round % 2 )); then order=(aud unaud); else order=(unaud aud); fi
  log "round $round/$ROUNDS (order ${NAME[${order[0]}]} ${NAME[${order[1]}]}; load $(cut -d' ' -f1-3 /proc/loadavg))"
  for arm in "${order[@]}"; do run_oha max "$round" "$arm" "${MAXT[@]}"; done
  for arm in "${order[@]}"; do run_oha fixed "$round" "$arm" "${FIXED[@]}"; done
  done_rounds=$round
done
(( done_rounds > 0 )) || die "no round completed before the deadline"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

for arm in "${ARMS[@]}"; do
  kill -0 "${PID[$arm]}" 2>/dev/null || die "server ${NAME[$arm]} died during the benchmark"
done
declare -A DOCS_TOTAL=() AUDIT_TOTAL=()
for arm in "${ARMS[@]}"; do
  DOCS_TOTAL[$arm]=$(sql "$arm" "SELECT count(*) FROM documents")
  AUDIT_TOTAL[$arm]=$(audit_rows "$arm")
done
for arm in "${ARMS[@]}"; do stop_server "$arm"; done

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
verdict_ge() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x >= lim) ? "met" : "**missed**"}'; }
cpu3() { echo "$(f0 "$(med "$1" "$2" 14)") + $(f0 "$(med "$1" "$2" 15)") = $(f0 "$(med "$1" "$2" 16)")"; }

R_CHAINED=$(ratio max 9 aud unaud); R_RPS=$(ratio max 6 aud unaud)
R_CPU=$(ratio max 16 unaud aud)            # unaudited CPU / audited CPU: the CPU-bound throughput ratio
R_CPU_FIXED=$(ratio fixed 16 unaud aud)
R_P99=$(ratio fixed 11 aud unaud)
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
{
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Command: \`$COMMAND\` (binary built with \`--features bench-unaudited\`)."
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average (1/5/15 min) at start of measurement $LOAD_START, at end $LOAD_END. PostgreSQL: $("${PSQL[@]}" -d postgres -Atc 'SHOW server_version'). Load tool: $OHA_VERSION. Code: commit $COMMIT, binary built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'). Rounds: $done_rounds (medians over rounds; ratios are medians of per-round ratios). Request: POST $(create_path aud | sed 's/[0-9a-f-]\{36\}/{id}/g'), $CREATE_BYTES-byte JSON body ($BODY_BYTES-character document body), owner session."
  echo
  echo "| Test | Metric | Audited | Unaudited | Ratio (median per round) |"
  echo "|---|---|---:|---:|---:|"
  echo "| Document create, max, c=$CONNS, ${MAX_SECS} s | creates/s, chained (load + drain) | $(f0 "$(med max aud 9)") | $(f0 "$(med max unaud 9)") | audited/unaudited **$(f2 "$R_CHAINED")** |"
  echo "| | creates/s, answered (load only) | $(f0 "$(med max aud 6)") | $(f0 "$(med max unaud 6)") | audited/unaudited $(f2 "$R_RPS") |"
  echo "| | pending at end of load / drain s | $(f0 "$(med max aud 7)") / $(f2 "$(med max aud 8)") | $(f0 "$(med max unaud 7)") / $(f2 "$(med max unaud 8)") | |"
  echo "| | p50 / p99 ms | $(f2 "$(med max aud 10)") / $(f2 "$(med max aud 11)") | $(f2 "$(med max unaud 10)") / $(f2 "$(med max unaud 11)") | |"
  echo "| | CPU µs/create: server + PostgreSQL = total | $(cpu3 max aud) | $(cpu3 max unaud) | unaudited/audited $(f2 "$R_CPU") |"
  echo "| Document create, fixed $RATE/s, c=$CONNS, ${FIXED_SECS} s | p50 / p99 ms | $(f2 "$(med fixed aud 10)") / $(f2 "$(med fixed aud 11)") | $(f2 "$(med fixed unaud 10)") / $(f2 "$(med fixed unaud 11)") | p99 audited/unaudited $(f2 "$R_P99") |"
  echo "| | achieved creates/s | $(f0 "$(med fixed aud 6)") | $(f0 "$(med fixed unaud 6)") | |"
  echo "| | CPU µs/create: server + PostgreSQL = total | $(cpu3 fixed aud) | $(cpu3 fixed unaud) | unaudited/audited $(f2 "$R_CPU_FIXED") |"
  echo "| All runs | creates (all 201) / audit entries chained | $(( $(sum max aud 4) + $(sum fixed aud 4) )) / $(( $(sum max aud 17) + $(sum fixed aud 17) )) | $(( $(sum max unaud 4) + $(sum fixed unaud 4) )) / $(( $(sum max unaud 17) + $(sum fixed unaud 17) )) | |"
  echo
  echo "| Target (issue 10, section 2) | Measured | Verdict |"
  echo "|---|---:|---|"
  echo "| Audited HTTP document creates >= 0.85 of unaudited (max throughput, chained) | $(f2 "$R_CHAINED") | $(verdict_ge "$R_CHAINED" 0.85) |"
  echo "| ... by answered requests only (drain not counted) | $(f2 "$R_RPS") | $(verdict_ge "$R_RPS" 0.85) |"
  echo "| ... by CPU per create (unaudited CPU / audited CPU) | $(f2 "$R_CPU") | $(verdict_ge "$R_CPU" 0.85) |"
  echo
  echo "Chained throughput counts a create only once its audit entry is in the chain: creates / (load time + time until audit_pending is empty). CPU per create (server process, all threads, plus every PostgreSQL backend of the arm's database, the sequencer's included, from before the load until the drain is done) is the steadier figure on a shared machine. Both arms are the same binary; the unaudited one runs with $SWITCH_VAR=$SWITCH_VALUE and writes no audit entries (checked: ${SETUP_ENTRIES[unaud]} after setup, ${AUDIT_TOTAL[unaud]} at the end; audited arm ${AUDIT_TOTAL[aud]} entries at the end). Documents at the end (warm-up included): audited ${DOCS_TOTAL[aud]}, unaudited ${DOCS_TOTAL[unaud]}."
  echo
  echo "<details><summary>Per-run results</summary>"
  echo
  echo "| round | test | arm | creates | creates/s | pending at end | drain s | chained/s | p50 ms | p99 ms | CPU µs/create (server + PG) | entries chained | load1 | rustc procs |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' 'BEGIN {n["aud"]="audited"; n["unaud"]="unaudited"}
    NR>1 {printf "| %s | %s | %s | %d | %.0f | %d | %.2f | %.0f | %.2f | %.2f | %.0f (%.0f + %.0f) | %d | %s | %s |\n", $1,$2,n[$3],$4,$6,$7,$8,$9,$10,$11,$16,$14,$15,$17,$12,$13}' "$RES/runs.tsv"
  echo
  echo "</details>"
} | tee "$RES/table.md"

# Server log lines at warn level or above (log level is warn, so any line is news), except the
# unaudited server's own announcement that auditing is off.
for arm in "${ARMS[@]}"; do
  n=$(clean_log "$arm" | grep -v "$SWITCH_LOG" | grep -c . || true)
  if [[ "$n" -gt 0 ]]; then
    log "server ${NAME[$arm]} wrote $n log line(s) at warn or above; first ones:"
    clean_log "$arm" | grep -v "$SWITCH_LOG" | head -20 >&2
  else
    log "server ${NAME[$arm]}: no warnings or errors logged"
  fi
done
