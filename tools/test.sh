#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds (CUDA compiled when nvcc exists; GPU tests
# skip without a GPU), runs every ctest test (C++ and Python tool tests), then runs the engine's
# concurrency tests again under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install_deps.sh
tools/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900

# ThreadSanitizer pass: a CPU-only build of the targets labelled `tsan` (engine concurrency tests).
BUILD_DIR=build-tsan BUILD_TYPE=RelWithDebInfo JOBS=$(nproc) \
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTASERVE_TSAN=ON \
  -DDELTASERVE_CUDA=OFF -DDELTASERVE_TSAN_ONLY=ON >/dev/null
cmake --build build-tsan -j "$(nproc)" --target tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L tsan --output-on-failure -j "$(nproc)" --timeout 900
