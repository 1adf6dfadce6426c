#!/bin/bash
# The main job end to end on the embedded default: a throwaway PostgreSQL with sample data, the agent's
# built-in local store, then list and a restore into a second fresh cluster, compared with pg_dumpall.
# Fresh Debian 12, as root. Everything lives in a temp dir that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

tests/deps.sh
if [ -f "$top/config.status" ]; then
        builddir=$top
else
        builddir=$top/build-demo
        mkdir -p "$builddir"
        [ -x "$top/configure" ] || ./autogen.sh >/dev/null 2>&1
        [ -f "$builddir/config.status" ] || (cd "$builddir" && "$top/configure" -q)
fi
make -C "$builddir" -j"$(nproc)" -s skyforge-agent
agent=$builddir/skyforge-agent

bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
demo=$(mktemp -d /tmp/skyforge-demo.XXXXXX)
chmod 755 "$demo"
clusters=()
cleanup() {
        for d in "${clusters[@]}"; do
                runuser -u postgres -- "$bindir/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
        done
        rm -rf "$demo"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_cluster() { # DIR PORT
        mkdir -p "$1" && chown postgres "$1"
        runuser -u postgres -- "$bindir/initdb" -D "$1/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
        runuser -u postgres -- "$bindir/pg_ctl" -D "$1/data" -l "$1/log" -w \
                -o "-p $2 -k $1 -c listen_addresses=127.0.0.1" start >/dev/null
        clusters+=("$1")
}
psql_to() { "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -d "host=127.0.0.1 port=$1 user=postgres dbname=${2:-postgres}"; }

src_port=$(free_port)
dst_port=$(free_port)
echo "== Starting a throwaway PostgreSQL on 127.0.0.1:$src_port with sample data"
start_cluster "$demo/src" "$src_port"
psql_to "$src_port" <<'SQL'
CREATE ROLE gitea LOGIN PASSWORD 'demo';
CREATE DATABASE gitea OWNER gitea;
CREATE DATABASE netbox;
SQL
psql_to "$src_port" gitea <<'SQL'
CREATE TABLE repo (id serial PRIMARY KEY, name text);
INSERT INTO repo (name) SELECT 'repo-' || g FROM generate_series(1, 100000) g;
SQL

cat >"$demo/agent.conf" <<EOF2
; Nothing but the database: the agent's built-in local store (state_dir/backups/postgres) is used.
[agent]
state_dir = $demo/state

[postgres]
conninfo = host=127.0.0.1 port=$src_port user=postgres
EOF2

echo "== skyforge-agent run postgres"
id=$("$agent" -c "$demo/agent.conf" run postgres)
echo "new backup: $id"
echo "== skyforge-agent list"
"$agent" -c "$demo/agent.conf" list
echo "== skyforge-agent status"
"$agent" -c "$demo/agent.conf" status

echo "== Restoring $id into a second fresh cluster on 127.0.0.1:$dst_port"
start_cluster "$demo/dst" "$dst_port"
"$agent" -c "$demo/agent.conf" restore postgres "$id" --to "host=127.0.0.1 port=$dst_port user=postgres"

key=()
"$bindir/pg_dumpall" --help | grep -q -- --restrict-key && key=(--restrict-key=demo)
"$bindir/pg_dumpall" "${key[@]}" -d "host=127.0.0.1 port=$src_port user=postgres" >"$demo/src.sql"
"$bindir/pg_dumpall" "${key[@]}" -d "host=127.0.0.1 port=$dst_port user=postgres" >"$demo/dst.sql"
if cmp -s "$demo/src.sql" "$demo/dst.sql"; then
        echo "== OK: pg_dumpall of the restored cluster equals the original ($(wc -c <"$demo/src.sql") bytes)"
else
        echo "== FAILED: the restored cluster differs from the original" >&2
        diff "$demo/src.sql" "$demo/dst.sql" | head -20 >&2
        exit 1
fi
