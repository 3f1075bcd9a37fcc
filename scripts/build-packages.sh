#!/usr/bin/env bash
# Builds the Debian and RPM packages of pam_totp into target/packages/
# ($CARGO_TARGET_DIR/packages/ when CARGO_TARGET_DIR is set).
#
#   bash scripts/build-packages.sh            # .deb and .rpm
#   bash scripts/build-packages.sh --deb-only # .deb only (what scripts/install.sh uses)
#
# Installs cargo-deb and cargo-generate-rpm from crates.io (`cargo install --locked`)
# when they are missing. Release builds are stripped, with LTO (root Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions installed when a tool is missing; a tool already on PATH is used as it is.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

want_rpm=1
case "${1:-}" in
    "") ;;
    --deb-only) want_rpm=0 ;;
    *) echo "usage: $0 [--deb-only]" >&2; exit 2 ;;
esac

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
out="$target_dir/packages"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

ensure_tool() { # ensure_tool BINARY CRATE VERSION
    if command -v "$1" >/dev/null 2>&1; then
        return
    fi
    echo "==> installing $2 $3 (cargo install --locked)"
    local start=$SECONDS
    # A private target dir: never shares (or locks) the project's build.
    CARGO_TARGET_DIR="$target_dir/tool-build" cargo install --locked --version "$3" "$2"
    echo "==> $2 installed in $((SECONDS - start)) s"
}

ensure_tool cargo-deb cargo-deb "$CARGO_DEB_VERSION"
[ "$want_rpm" = 1 ] && ensure_tool cargo-generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

echo "==> release build of pam_totp.so and totp-enroll"
start=$SECONDS
cargo build --release --locked -p pam_totp -p totp-enroll -p pam_totpd
echo "==> release build took $((SECONDS - start)) s"

mkdir -p "$out"
# Exactly one package of each kind built here is left in $out.
rm -f "$out"/*.deb
[ "$want_rpm" = 1 ] && rm -f "$out"/*.rpm

echo "==> .deb (cargo-deb)"
cargo deb --no-build --locked -p totp-enroll --output "$out/"

if [ "$want_rpm" = 1 ]; then
    echo "==> .rpm (cargo-generate-rpm)"
    cargo generate-rpm -p totp-enroll --target-dir "$target_dir" --output "$out/"
fi

echo "==> sizes (bytes)"
stat -c '%8s  %n' "$target_dir/release/libpam_totp.so" "$target_dir/release/totp-enroll" "$out"/*
