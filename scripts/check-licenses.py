#!/usr/bin/env python3
"""Checks that every dependency's licence is compatible with GPL-3.0-or-later.

Reads `cargo metadata` (no network beyond what cargo already fetched) and evaluates each
package's SPDX expression: an OR needs one acceptable side, an AND needs both.
"""
import json
import re
import subprocess
import sys

# Licences that may be combined into a GPL-3.0-or-later work.
OK = {
    "MIT", "MIT-0", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0",
    "Unlicense", "0BSD", "BSL-1.0", "MPL-2.0", "LGPL-2.1-or-later", "LGPL-3.0-or-later",
    "GPL-3.0", "GPL-3.0-only", "GPL-3.0-or-later", "GPL-2.0-or-later",
}


def acceptable(expr: str) -> bool:
    expr = expr.replace("/", " OR ").strip()
    # Keep "X WITH Y" together as one token.
    expr = re.sub(r"(\S+) WITH (\S+)", lambda m: m.group(1) + "__WITH__" + m.group(2), expr)
    tokens = re.findall(r"\(|\)|AND|OR|[^\s()]+", expr)
    pos = 0

    def parse_or():
        nonlocal pos
        value = parse_and()
        while pos < len(tokens) and tokens[pos] == "OR":
            pos += 1
            value = parse_and() or value
        return value

    def parse_and():
        nonlocal pos
        value = parse_atom()
        while pos < len(tokens) and tokens[pos] == "AND":
            pos += 1
            value = parse_atom() and value
        return value

    def parse_atom():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = parse_or()
            pos += 1  # ")"
            return value
        return tok.replace("__WITH__", " WITH ") in OK

    return parse_or()


def main() -> int:
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"]))
    bad = []
    for pkg in meta["packages"]:
        lic = pkg.get("license")
        if not lic or not acceptable(lic):
            bad.append(f"{pkg['name']} {pkg['version']}: {lic!r}")
    ours = [p for p in meta["packages"] if p["source"] is None]
    for p in ours:
        if p.get("license") != "GPL-3.0-or-later":
            bad.append(f"{p['name']}: workspace crate must be GPL-3.0-or-later")
    if bad:
        print("licences not known to be GPL-3.0-or-later compatible:", *bad, sep="\n  ")
        return 1
    print(f"licences: {len(meta['packages'])} packages, all compatible with GPL-3.0-or-later")
    return 0


if __name__ == "__main__":
    sys.exit(main())
