#!/usr/bin/env bash
# Configures and builds deltaserve into build/ (binaries in build/bin/). CUDA is compiled when
# nvcc is found. Usage: tools/build.sh [extra cmake -D options...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@"
cmake --build "$BUILD_DIR" -j "$JOBS"
ln -sf "$BUILD_DIR/compile_commands.json" compile_commands.json
