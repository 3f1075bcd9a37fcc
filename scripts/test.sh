#!/usr/bin/env bash
# Runs the whole test suite. Debian 12 or 13, as root: installs what it uses and lacks
# (the build dependencies too), builds, runs every test. Safe on a machine where pam_totp
# is installed and in use: the tests that run dpkg or use the default paths do so in a
# private root (tests/tests/e2e_support), and this script fails if the installed
# package, its key, its state or any PAM file differs after the suite from before.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "test.sh: run as root" >&2
    exit 1
fi

# Build: compiler and linker, PAM headers, pkg-config; python3 for the licence check;
# the rest is what the tests run (mount and util-linux: the private roots).
deps=(gcc libc6-dev libpam0g-dev pkg-config ca-certificates python3
      pamtester openssh-server openssh-client sudo oathtool faketime
      libpam-google-authenticator rpm passwd util-linux mount dpkg-dev
      etcd-server etcd-client protobuf-compiler libprotobuf-dev)
deps+=(systemd) # systemd-socket-activate and systemd-analyze, for the daemon tests
deps+=(strace) # holds a lock open for cli_unprivileged::a_user_cannot_freeze_their_own_lock
deps+=(gdb) # gcore, for core_dump::no_copy_of_the_host_key_after_pam_end
missing=()
for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
snapshot_before=$(bash scripts/system-snapshot.sh)

echo "==> licences"
python3 scripts/check-licenses.py

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> build (the tests load target/debug/libpam_totp.so and run target/debug/totp-enroll)"
cargo build --workspace --locked

echo "==> the login policy's and the module's decision-logic unit tests, as nobody"
# They must need neither root nor libpam's stack (issue 11): run as an unprivileged user,
# from copies in a directory that user can reach wherever the checkout is.
status=0
unpriv=$(mktemp -d -p /tmp)
chmod 755 "$unpriv"
mapfile -t bins < <(cargo test -p pam_totp_common -p pam_totp --lib --locked --no-run \
    --message-format=json | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])')
if [ ${#bins[@]} != 2 ]; then
    echo "test.sh: expected the 2 unit test binaries, found: ${bins[*]}" >&2
    exit 1
fi
for bin in "${bins[@]}"; do
    cp "$bin" "$unpriv/"
    (cd "$unpriv" && TMPDIR=/tmp setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
        "./$(basename "$bin")" -q) || status=$?
done
rm -rf "$unpriv"

echo "==> packages (.deb and .rpm into target/packages/, installed by tests/tests/e2e_package.rs)"
bash scripts/build-packages.sh

echo "==> tests"
# The packages were just built: the package tests must find them, never skip.
export PAM_TOTP_TEST_PACKAGES=required
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --workspace --locked --no-fail-fast || status=$?

echo "==> the system's pam_totp and PAM files, before and after the suite"
if ! diff -u <(echo "$snapshot_before") <(bash scripts/system-snapshot.sh); then
    echo "test.sh: the suite changed the files above (scripts/system-snapshot.sh)" >&2
    exit 1
fi
echo "unchanged: $(echo "$snapshot_before" | grep -c '^/') paths checked"
exit "$status"
