#!/usr/bin/env bash
# The audited/plain ratio with no Portcullis code at all: pgbench runs the SQL skeleton of a
# plain mutation, of the same mutation plus a chained audit append (lock the head, insert the
# entry, advance the head), and of the mutation plus one bare extra INSERT. It bounds what any
# synchronous, same-transaction audit append can reach on this machine.
# Usage: bash bench/audit/skeleton.sh [postgres URL]   (default: local server, user postgres)
set -euo pipefail
cd "$(dirname "$0")"
url="${1:-postgresql://postgres@127.0.0.1:5432/postgres}"
db="portcullis_skeleton_$$"
psql -q "$url" -c "CREATE DATABASE $db"
trap 'psql -q "$url" -c "DROP DATABASE IF EXISTS $db"' EXIT
target="${url%/*}/$db"
psql -q "$target" <<'SQL'
CREATE TABLE docs (env int, id bigserial, title text, body text, PRIMARY KEY (env, id));
CREATE TABLE log (env int, seq bigint, audit_id uuid DEFAULT gen_random_uuid(), at timestamptz DEFAULT now(),
                  action text, after jsonb, prev bytea, h bytea, PRIMARY KEY (env, seq), UNIQUE (env, audit_id));
CREATE INDEX log_time ON log (env, at);
CREATE TABLE heads (env int PRIMARY KEY, seq bigint NOT NULL, head bytea, frontier bytea[]);
INSERT INTO heads SELECT g, 0, '\x00', '{}' FROM generate_series(1, 64) g;
CREATE TABLE log2 (env int, id bigserial, action text, after jsonb, PRIMARY KEY (env, id));
SQL
for round in 1 2 3; do
    for arm in plain audited insert-only; do
        tps=$(pgbench -n -c 8 -j 2 -T 8 -f "skeleton-$arm.sql" "$target" 2>&1 | awk '/^tps/ {print $3}')
        echo "round $round  $arm  $tps tx/s"
    done
done
