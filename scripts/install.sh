#!/usr/bin/env bash
# Installs pam_totp from this source tree on Debian 12 or 13, as root: the build dependencies
# from apt, cargo-deb from crates.io (when missing), then builds the .deb and installs
# it. Needs Rust 1.88 or newer (e.g. from rustup; Debian 12's own rustc is too old).
#
#   bash scripts/install.sh
#
# Changes no PAM configuration: see README.md, "PAM recipes", to enable the module.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root" >&2
    exit 1
fi

# protobuf: the daemon's fleet client (etcd-client) compiles its gRPC definitions with protoc.
deps=(gcc libc6-dev libpam0g-dev pkg-config dpkg-dev ca-certificates protobuf-compiler
      libprotobuf-dev)
missing=()
for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing build dependencies: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo not found. Install Rust 1.88 or newer (https://rustup.rs)," >&2
    echo "then run this again. Debian's own rustc (1.63 in 12, 1.85 in 13) is too old." >&2
    exit 1
fi
rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n' 1.88.0 "$rust" | sort -V | head -1)" != 1.88.0 ]; then
    echo "install.sh: Rust $rust is too old; 1.88 or newer is needed (rustup update)" >&2
    exit 1
fi

bash scripts/build-packages.sh --deb-only

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
# build-packages.sh leaves exactly one .deb there.
debs=("$target_dir"/packages/libpam-totp_*.deb)
deb=${debs[0]}
echo "==> installing $deb"
# Its dependencies (libc6, libpam0g, libpam-runtime) are part of every Debian system.
dpkg -i "$deb"

# The check that matters: a plain user can run the setuid CLI.
setpriv --reuid=nobody --regid=nogroup --clear-groups -- totp-enroll --version >/dev/null
echo
echo "pam_totp is installed. Nothing in /etc/pam.d was changed."
echo "  enroll (as each user):  totp-enroll"
echo "  enable:                 see /usr/share/doc/libpam-totp/README.md, \"PAM recipes\""
echo "  manual pages:           man pam_totp, man totp-enroll, man pam_totp.conf"
