#!/usr/bin/env bash
# Seeds the fuzz corpus with real plugins: each example plugin reduced to its headers and the
# provenance section (objcopy), plus the raw provenance blob. Nothing is checked in.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p hello -p redact -p wc
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
