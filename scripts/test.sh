#!/usr/bin/env bash
# Runs the whole test suite. Debian 12, as root: installs the test dependencies it lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

deps=(libpam0g-dev pamtester openssh-server openssh-client sudo oathtool faketime
      libpam-google-authenticator rpm passwd util-linux dpkg-dev)
deps+=(systemd) # systemd-socket-activate and systemd-analyze, for the daemon tests
missing=()
for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> licences"
python3 scripts/check-licenses.py

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> build (the tests load target/debug/libpam_totp.so and run target/debug/totp-enroll)"
cargo build --workspace --locked

echo "==> packages (.deb and .rpm into target/packages/, installed by tests/tests/e2e_package.rs)"
bash scripts/build-packages.sh

echo "==> tests"
# The packages were just built: the package tests must find them, never skip.
export PAM_TOTP_TEST_PACKAGES=required
cargo test --workspace --locked
