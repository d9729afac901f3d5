#!/usr/bin/env bash
# Check systemd/siblingfs@.service with `systemd-analyze verify`.
#
# Usage: bash scripts/verify-systemd.sh [UNIT_TEMPLATE]
# Exit 0 when the unit verifies cleanly (or when systemd-analyze is not
# installed: then "skipped" is printed), 1 otherwise.
#
# verify needs an instance, so the template is copied into a temp dir as
# siblingfs@example.service. verify also insists that every Exec*= binary
# exists. If /usr/local/bin/siblingfs is not installed, the copy points at
# a stub in the temp dir instead; nothing outside the temp dir is touched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit_src="${1:-$here/../systemd/siblingfs@.service}"
bin=/usr/local/bin/siblingfs
instance=siblingfs@example.service

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify-systemd: systemd-analyze not found: skipped"
  exit 0
fi
if [[ ! -f "$unit_src" ]]; then
  echo "verify-systemd: no such unit file: $unit_src" >&2
  exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/siblingfs-verify.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

unit="$tmp/$instance"
cp "$unit_src" "$unit"
if [[ ! -x "$bin" ]]; then
  printf '#!/bin/sh\nexit 0\n' >"$tmp/siblingfs"
  chmod +x "$tmp/siblingfs"
  sed -i "s#$bin #$tmp/siblingfs #g" "$unit"
  echo "verify-systemd: $bin is not installed; verifying against a stub"
fi

# Only our unit's own problems count: --recursive-errors=no ignores other
# units on the machine, and the output is also filtered to our unit's name
# because verify prints warnings (unknown keys, bad values) but exits 0.
set +e
out="$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --recursive-errors=no "$unit" 2>&1)"
rc=$?
set -e
ours="$(grep -F -e "$instance" -e "$unit" <<<"$out" || true)"
if [[ $rc -ne 0 || -n "$ours" ]]; then
  echo "verify-systemd: FAILED (systemd-analyze exit $rc)" >&2
  printf '%s\n' "$out" >&2
  exit 1
fi
[[ -z "$out" ]] || printf 'verify-systemd: unrelated output:\n%s\n' "$out"
echo "verify-systemd: $(basename "$unit_src") OK"
