#!/usr/bin/env bash
# Builds the release module and the benchmark, then runs it against the module. See README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --release -p pam_totp)
(cd "$root/bench/pam" && cargo build --release)
bench_target="${CARGO_TARGET_DIR:-$root/bench/pam/target}"
# The run creates a user and may put a placeholder on /dev/log: one run at a time, and not
# while the project's system-wide tests run.
exec flock /tmp/pam_totp-system.lock \
    "$bench_target/release/pam-bench" "$target/release/libpam_totp.so" "$@"
