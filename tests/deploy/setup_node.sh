#!/usr/bin/env bash
# Installs the npm packages of deploy/ci (package-lock.json, `npm ci`) into NODE_DIR and copies
# deploy/ci's scripts beside them. Re-running with an unchanged lock file skips the install.
# Usage: setup_node.sh SOURCE_DIR NODE_DIR
set -euo pipefail
src=$1/deploy/ci
dst=$2
mkdir -p "$dst"
if ! cmp -s "$src/package-lock.json" "$dst/package-lock.json" || [ ! -d "$dst/node_modules" ]; then
  cp "$src/package.json" "$src/package-lock.json" "$dst/"
  (cd "$dst" && npm ci --no-audit --no-fund --loglevel=error)
fi
cp "$src"/*.mjs "$src"/*.ts "$dst/"
echo "setup_node: npm packages ready in $dst"
