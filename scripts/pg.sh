#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1 (initdb + pg_ctl) and prints its URI on stdout.
#   scripts/pg.sh start DIR   → prints postgresql://mltrail@127.0.0.1:PORT/mltrail
#   scripts/pg.sh stop DIR
# PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged
# system user, created on first use.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data directory}
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id mltrailpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mltrailpg
  as_pg=(runuser -u mltrailpg --)
fi
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ ${#as_pg[@]} -eq 0 ] || chown mltrailpg "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U mltrail --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" start >/dev/null
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U mltrail mltrail
    echo "postgresql://mltrail@127.0.0.1:$port/mltrail"
    ;;
  stop)
    [ -d "$dir/data" ] && "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
esac
