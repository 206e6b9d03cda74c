#!/usr/bin/env bash
# Seeds the fuzz corpus with real plugins: each example plugin reduced to its headers and the
# provenance section (objcopy), plus the raw provenance blob. Nothing is checked in.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p hello -p redact -p wc -p plugin-host
corpus=fuzz/corpus/provenance
mkdir -p "$corpus"
for p in hello redact wc; do
    lib="target/release/lib$p.so"
    objcopy --only-section=.note.plgprov "$lib" "$corpus/$p-skeleton.so"
    objcopy --dump-section .note.plgprov="$corpus/$p-blob.bin" "$lib" /dev/null
done
# One whole real plugin, stripped of debug info to keep the fuzzer's inputs small.
strip --strip-all -o "$corpus/hello-stripped.so" target/release/libhello.so
ls -la "$corpus"
# The lazy index's cache file as the CLI writes it for the three plugins: `run` indexes the
# directory and saves the cache; run again once the directory has settled (see
# `lazy::cache::SETTLE`), it also records the directory's identity.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/plugins" fuzz/corpus/index_cache
cp target/release/libhello.so target/release/libredact.so target/release/libwc.so "$scratch/plugins/"
for _ in 1 2; do
    sleep 0.2
    XDG_CACHE_HOME="$scratch/cache" target/release/plugin-host run --plugins "$scratch/plugins" hello fuzz \
        >/dev/null 2>"$scratch/run.log" || { cat "$scratch/run.log" >&2; exit 1; }
done
cp "$scratch/cache/plugin-host/index.bin" fuzz/corpus/index_cache/three-plugins.bin
ls -la fuzz/corpus/index_cache
