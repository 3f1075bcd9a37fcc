#!/usr/bin/env bash
# Builds the release module and runs the benchmark against it. See README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --release -p pam_totp)
cd "$root/bench/pam"
cargo run --release -- "$target/release/libpam_totp.so" "$@"
