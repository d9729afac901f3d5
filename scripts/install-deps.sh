#!/usr/bin/env bash
# Install everything siblingfs needs on Debian 12, then install the npm
# dependencies and build. Safe to run again: apt is only asked for packages
# that are missing (no `apt-get update` at all when nothing is), and npm ci
# always recreates node_modules from package-lock.json.
#
# Usage: bash scripts/install-deps.sh        (as root, or with sudo available)
#
# Node.js >= 20 with npm must already be installed: Debian 12's own nodejs
# package is version 18, which is too old.
set -euo pipefail

# Runtime: libfuse2 (loaded by fuse-native), fuse3 (fusermount, fusermount3),
# bubblewrap (`siblingfs run --isolate bwrap`), liblz4-1 (the patched fuse-native
# decodes compressed chunks with it in C; always there on Debian, named to be sure).
# Native addons: build-essential, python3 (node-gyp rebuilds fuse-native).
# Tests and benchmarks: peer filesystems, workloads, timing; procps (ps,
# free) because minimal Debian images lack it and .ci/run uses it.
packages=(
  libfuse2 fuse3 bubblewrap liblz4-1
  build-essential python3
  git sqlite3 make gcc tar attr fuse-overlayfs unionfs-fuse fio hyperfine
  procps
)

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# Become root: re-run through sudo when we are not.
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    log "not root, re-running with sudo"
    exec sudo --preserve-env=CI,TMPDIR,npm_config_cache bash "$(realpath "${BASH_SOURCE[0]}")" "$@"
  fi
  die "must run as root (installs Debian packages and uses /dev/fuse), and sudo is not available.
Run it as root: su -c 'bash scripts/install-deps.sh'"
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- Debian packages -----------------------------------------------------
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian 12 (bookworm) only"

missing=()
for p in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  log "Debian packages already installed"
else
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -o Acquire::Retries=3
  apt-get install -y --no-install-recommends -o Acquire::Retries=3 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"
fi

# --- /dev/fuse -----------------------------------------------------------
if [[ ! -c /dev/fuse ]]; then
  log "/dev/fuse missing, trying: modprobe fuse"
  modprobe fuse 2>/dev/null || true
  # Containers often have the module loaded but no device node.
  if [[ ! -c /dev/fuse ]] && grep -qw fuse /proc/filesystems 2>/dev/null; then
    mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
  fi
fi
if [[ -c /dev/fuse ]] && (exec 3<>/dev/fuse) 2>/dev/null; then
  log "/dev/fuse: $(ls -l /dev/fuse)"
else
  printf '%s\n' \
    "install-deps: WARNING: /dev/fuse is missing or cannot be opened, so nothing can be mounted." \
    "  On a normal machine: modprobe fuse (package kmod; the module ships with the kernel)." \
    "  In a container: start it with --device /dev/fuse (and --cap-add SYS_ADMIN)." \
    "  Continuing: the build works, but mount tests will fail or skip." >&2
fi

# --- Node.js -------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer (Debian 12's nodejs is 18, too old)"
command -v npm >/dev/null 2>&1 || die "npm not found: install the npm that comes with Node.js 20 or newer"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || die "node $(node --version) is too old: siblingfs needs Node.js 20 or newer"
log "node $(node --version), npm $(npm --version)"

# node-gyp (lz4's install script, the fuse-native rebuild) needs Node's C
# headers. Without a nodedir it downloads them from nodejs.org, which CI
# cannot reach; Node packages (Debian/NodeSource) and the official tarball
# ship them next to the binary, so point node-gyp there when nothing else is
# configured.
if [[ -z "${npm_config_nodedir:-}" ]]; then
  configured="$(npm config get nodedir 2>/dev/null || true)"
  node_prefix="$(node -p 'require("path").resolve(process.execPath, "../..")')"
  if [[ -n "$configured" && "$configured" != undefined && "$configured" != null ]]; then
    log "node headers: nodedir=$configured (npm config)"
  elif [[ -f "$node_prefix/include/node/common.gypi" ]]; then
    export npm_config_nodedir="$node_prefix"
    log "node headers: $node_prefix/include/node"
  else
    log "WARNING: no Node headers next to $(command -v node); node-gyp will try to download them"
  fi
fi

# --- npm dependencies and build -----------------------------------------
cd "$repo"
[[ -f package-lock.json ]] || log "WARNING: no package-lock.json; npm ci will refuse to run"
# postinstall patches fuse-native and rebuilds it with node-gyp (needs the
# build tools above). Never prompts; no audit/fund network calls.
npm ci --no-audit --no-fund
npm run build
log "done"
