#!/usr/bin/env bash
# The main job: build the host and the example plugins, then show the host verifying, loading
# and using them. Plugins are copied into a directory of their own, as a deployment would.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --workspace
host=target/release/plugin-host
plugins=target/demo-plugins
rm -rf "$plugins" && mkdir -p "$plugins"
for p in hello redact wc; do cp "target/release/lib$p.so" "$plugins/"; done

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$host" host-info
step "$host" scan "$plugins"
# Something that is not a plugin, dropped into the directory: refused, with a reason, no code run.
cp "$host" "$plugins/libimpostor.so"
step "$host" scan --no-load "$plugins"
rm "$plugins/libimpostor.so"
step "$host" run --plugins "$plugins" hello Ada
step "$host" run --plugins "$plugins" wc README.md Cargo.toml
printf '\n\033[1m$ %s\033[0m\n' "<sample log> | $host transform --plugins $plugins redact"
cat <<'LOG' | "$host" --log warn transform --plugins "$plugins" redact
2026-11-21T10:00:01Z INFO  login ok user=ada@example.com ip=192.168.10.7
2026-11-21T10:00:02Z DEBUG upstream call Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig
2026-11-21T10:00:03Z WARN  aws key AKIAIOSFODNN7EXAMPLE used from 10.0.0.12
2026-11-21T10:00:04Z INFO  nothing secret here, version 1.2.3
LOG
# The same plugins isolated: each in a worker process of its own, called over shared memory.
step "$host" scan --isolate all "$plugins"
step "$host" run --plugins "$plugins" --isolate hello hello Ada
