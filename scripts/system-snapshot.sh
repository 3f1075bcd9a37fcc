#!/usr/bin/env bash
# Prints a fingerprint of everything an installation of pam_totp consists of or depends
# on: the package's dpkg status (with its conffiles' sums), every file it installed, the
# host key, the state directory, the config and every PAM file (/etc/pam.d and
# /usr/lib/pam.d): path, mode, owner and sha256 of each, "absent" for what is not there.
# Modification times are left out on purpose: the suite's own PAM services come and go.
#
# scripts/test.sh prints it before and after the suite and fails if the two differ; the
# package tests do the same around their private root (tests/tests/e2e_support).
set -euo pipefail
export LC_ALL=C

echo "== dpkg-query -s libpam-totp"
dpkg-query -s libpam-totp 2>&1 || true
echo "== files"
fixed=(/etc/security/pam_totp.key /etc/security/pam_totp.key.new /etc/security/pam_totp.conf
       /var/lib/pam_totp /etc/pam.d /usr/lib/pam.d)
{
    printf '%s\n' "${fixed[@]}"
    dpkg-query -L libpam-totp 2>/dev/null | grep '^/' || true
    for p in "${fixed[@]}"; do
        if [ -d "$p" ] && [ ! -L "$p" ]; then find "$p" -mindepth 1; fi
    done
} | sort -u | while IFS= read -r f; do
    if [ -L "$f" ]; then
        echo "$f link $(readlink "$f")"
    elif [ -f "$f" ]; then
        echo "$f $(stat -c '%a %u %g' "$f") $(sha256sum <"$f" | cut -d' ' -f1)"
    elif [ -d "$f" ]; then
        echo "$f dir $(stat -c '%a %u %g' "$f")"
    elif [ -e "$f" ]; then
        echo "$f other $(stat -c '%F %a %u %g' "$f")"
    else
        echo "$f absent"
    fi
done
