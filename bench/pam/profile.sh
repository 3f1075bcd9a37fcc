#!/usr/bin/env bash
# Instruction counts (callgrind) and syscalls (strace) of one login in pam_sm_authenticate,
# per workload and per phase. Repeatable on a loaded machine, unlike wall time. As root,
# from the repository root: bash bench/pam/profile.sh [N] [MODULE.so]
# Without MODULE, builds the release module with symbols into target/prof. See README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
n="${1:-20}"
module="${2:-}"
cd "$root"
if [ -z "$module" ]; then
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none \
        cargo build --release -p pam_totp --target-dir "$root/target/prof"
    module="$root/target/prof/release/libpam_totp.so"
fi
cargo build -p integration-tests --example pam_profile
driver="${CARGO_TARGET_DIR:-$root/target}/debug/examples/pam_profile"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Inclusive Ir of the first symbol matching each phase, per call.
phases=(
    "config file (read + parse)|common::config::load_file"
    "state dir (open + checks)|<pam_totp::auth::Files as pam_totp::auth::Storage>::backend"
    "host key (load)|<pam_totp::auth::Files as pam_totp::auth::Storage>::keys"
    "prompt|<pam_totp::ffi::LibPam as pam_totp::handle::Handle>::prompt"
    "transaction (login::authenticate)|common::login::authenticate"
    "  load (lock, counters, state read)|<common::files::FilesBackend as common::backend::Backend>::load"
    "    state file parse|common::state::SealedState::parse"
    "  state open (key id, AES-GCM)|common::login::open"
    "  code match (TOTP)|common::totp::verify"
    "  commit (counters write)|<common::files::FilesBackend as common::backend::Backend>::commit"
    "outcome + syslog line|pam_totp::auth::decide"
)
printf '| phase (Ir per login) | success | replay | wrong |\n|---|---:|---:|---:|\n' > "$out/table"
declare -A total
for w in success replay wrong; do
    valgrind --tool=callgrind --toggle-collect=pam_sm_authenticate \
        --callgrind-out-file="$out/cg-$w" "$driver" "$module" "$w" "$n" 2>"$out/vg-$w"
    callgrind_annotate --inclusive=yes --threshold=100 "$out/cg-$w" > "$out/ann-$w" 2>/dev/null
    total[$w]=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print int($1 / '"$n"'); exit}' "$out/ann-$w")
    strace -f -o "$out/st-$w" "$driver" "$module" "$w" 3 2>/dev/null
done
for p in "${phases[@]}"; do
    label="${p%%|*}"
    sym="${p#*|}"
    row="| $label"
    for w in success replay wrong; do
        # callgrind_annotate may list a function twice, by the file of its code and by the
        # file it was inlined into (with the object's name after it): the larger is the
        # inclusive count.
        ir=$(awk -v s=":$sym" '{
                i = index($0, s); if (!i) next
                rest = substr($0, i + length(s))
                if (rest != "" && substr(rest, 1, 2) != " [") next
                v = $1; gsub(",", "", v); if (v + 0 > max) max = v + 0
            } END { if (max) print int(max / '"$n"') }' "$out/ann-$w")
        row="$row | ${ir:--}"
    done
    echo "$row |" >> "$out/table"
done
echo "| **pam_sm_authenticate** | ${total[success]} | ${total[replay]} | ${total[wrong]} |" >> "$out/table"
row="| syscalls per login (strace, config open to syslog)"
for w in success replay wrong; do
    f="$out/st-$w"
    first=$(grep -n 'pam_totp.conf", O_RDONLY' "$f" | tail -1 | cut -d: -f1)
    last=$(awk -v l="$first" 'NR > l && /connect\(.*\/dev\/log|sendto\(.*<[0-9]+>/ {print NR; exit}' "$f")
    row="$row | $((last - first + 1))"
done
echo "$row |" >> "$out/table"
echo "module: $module; $n logins per workload, one PAM handle"
cat "$out/table"
