# Shared helpers for the benchmark scripts (bash). Source it: . "$(dirname "$0")/lib.sh"
set -euo pipefail
shopt -s inherit_errexit
bench_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# A release build (no sanitizers) in build-bench/, so numbers are not skewed by ASan.
bench_build() {
        local b=$bench_top/build-bench
        mkdir -p "$b"
        [ -x "$bench_top/configure" ] || (cd "$bench_top" && ./autogen.sh >/dev/null 2>&1)
        if [ -f "$bench_top/config.status" ]; then
                # A tree configured in place cannot also host a VPATH build: copy the sources aside.
                b=/tmp/skyforge-bench-build
                rm -rf "$b" && mkdir -p "$b"
                git -C "$bench_top" archive HEAD | tar -x -C "$b"
                (cd "$b" && ./autogen.sh >/dev/null 2>&1 && ./configure -q && make -j"$(nproc)" -s skyforge-agent skyforge-agentd skyforge-wal-fetch) >&2
                echo "$b/skyforge-agent"
                return
        fi
        [ -f "$b/config.status" ] || (cd "$b" && "$bench_top/configure" -q) >&2
        make -C "$b" -j"$(nproc)" -s skyforge-agent skyforge-agentd skyforge-wal-fetch >&2
        echo "$b/skyforge-agent"
}

bench_machine() {
        echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)," \
             "$(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -r); date: $(date -u +%Y-%m-%dT%H:%MZ)"
}

# bench_time CMD...: runs CMD under GNU time; prints "wall_s max_rss_MiB".
# The max RSS is that of the largest process in the command (time reports the children's maximum).
bench_time() {
        local tf
        tf=$(mktemp)
        /usr/bin/time -v -o "$tf" "$@"
        local wall rss
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tf")
        rss=$(awk -F': ' '/Maximum resident set size/{printf "%.1f", $2/1024}' "$tf")
        rm -f "$tf"
        echo "$wall $rss"
}

bench_pg_bindir() {
        dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
}

# bench_pg_start DIR PORT: a throwaway cluster (trust auth, loopback only).
bench_pg_start() {
        local bindir
        bindir=$(bench_pg_bindir)
        mkdir -p "$1" && chown postgres "$1" && chmod 755 "$1"
        runuser -u postgres -- "$bindir/initdb" -D "$1/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
        runuser -u postgres -- "$bindir/pg_ctl" -D "$1/data" -l "$1/log" -w \
                -o "-p $2 -k $1 -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
}

bench_pg_stop() {
        runuser -u postgres -- "$(bench_pg_bindir)/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

bench_free_port() {
        /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
