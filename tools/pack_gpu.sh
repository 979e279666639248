#!/usr/bin/env bash
# Builds deltaserve with CUDA on a machine without a GPU and packs what a GPU machine needs to run
# the GPU tests and benchmarks into pack/ (ignored by git):
#   pack/bundle.tar.xz  bin/ (the binaries, stripped) and lib/ (every shared library they load,
#                       per ldd, except the C runtime, the CUDA driver and the CUDA toolkit's
#                       cuBLAS / cuBLASLt, which are hundreds of MB and present on the GPU machine)
#   pack/run.sh         unpacks the bundle once (into pack/unpacked/) and runs a packed binary
#                       with LD_LIBRARY_PATH set:  pack/run.sh <binary> [args...]
#                       `pack/run.sh --env` prints the export line instead (for wrappers such as
#                       compute-sanitizer).
# Compressed, the bundle stays well under the size limit of what travels to the GPU machine.
#
# Usage: tools/pack_gpu.sh [target ...]   (default: the GPU tests, the CUDA benchmarks, the
#        deltaserve server and the load generator: what tools/gpu_check.sh runs). BUILD_DIR
#        (default build-gpu), JOBS (default 2) and PACK (the output folder, default pack;
#        another name must be ignored by git too) are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
JOBS=${JOBS:-2}
PACK=${PACK:-pack}
DEFAULT_TARGETS=(gpu_gdn2_decode_test gpu_decode_ops_test gpu_cuda_model_test
                 gpu_gdn2_chunk_prefill_test gdn2_decode_bench decode_e2e_bench gdn2_prefill_bench
                 swa_prefill_bench ttft_bench state_pattern_bench gemm_algo_bench deltaserve
                 deltaserve-loadtest)
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=("${DEFAULT_TARGETS[@]}"); fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DDELTASERVE_CUDA=ON \
  >/dev/null
# Keep only targets this tree defines (some are added once their sources exist).
AVAILABLE=$(cmake --build "$BUILD_DIR" --target help | sed -n 's/^\([A-Za-z0-9_.-]*\): .*/\1/p')
BUILD=()
for t in "${TARGETS[@]}"; do
  if grep -qx "$t" <<<"$AVAILABLE"; then BUILD+=("$t"); else echo "pack_gpu: skipping $t (not defined)"; fi
done
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${BUILD[@]}"

STAGE="$BUILD_DIR/pack-stage"
rm -rf "$PACK" "$STAGE"
mkdir -p "$PACK" "$STAGE/bin" "$STAGE/lib"
is_system_lib() {
  case "$(basename "$1")" in
    linux-vdso*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*| \
    libstdc++.so*|libcuda.so*|libcublas.so*|libcublasLt.so*|libnvidia-*) return 0 ;;
  esac
  return 1
}
for t in "${BUILD[@]}"; do
  bin="$BUILD_DIR/bin/$t"
  [[ -x "$bin" ]] || { echo "pack_gpu: $bin missing" >&2; exit 1; }
  cp "$bin" "$STAGE/bin/"
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    is_system_lib "$lib" || cp -Lu "$lib" "$STAGE/lib/"
  done
done
# The SentencePiece plugin is opened with dlopen (ldd of the binaries does not list it); it is
# found in ../lib of the binary.
plugin="$BUILD_DIR/bin/libdeltaserve_sentencepiece.so"
if [[ -f "$plugin" ]]; then
  cp "$plugin" "$STAGE/lib/"
  ldd "$plugin" | awk '/=> \//{print $3}' | while read -r lib; do
    is_system_lib "$lib" || cp -Lu "$lib" "$STAGE/lib/"
  done
fi
strip "$STAGE"/bin/* 2>/dev/null || true
strip --strip-unneeded "$STAGE"/lib/* 2>/dev/null || true
rm -f "$PACK/bundle.tar.gz"
XZ_OPT="-6 -T${JOBS}" tar -C "$STAGE" -cJf "$PACK/bundle.tar.xz" bin lib
# The binaries were built against this toolkit's libstdc++ ABI; the GPU machine's libstdc++ is
# at least as new (Ubuntu 24.04), so it is not packed.
cat > "$PACK/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs a packed binary: pack/run.sh <binary-name> [args...]
here="$(cd "$(dirname "$0")" && pwd)"
if [[ ! -d "$here/unpacked" ]]; then
  mkdir -p "$here/unpacked.tmp" &&
    { tar -C "$here/unpacked.tmp" -xJf "$here/bundle.tar.xz" 2>/dev/null ||
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$here/bundle.tar.xz" "$here/unpacked.tmp"; } &&
    mv "$here/unpacked.tmp" "$here/unpacked" || exit 1
fi
cuda_lib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e "$d/libcublasLt.so.13" ]] && cuda_lib="$d" && break
done
if [[ -z "$cuda_lib" ]]; then
  cuda_lib=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
fi
export LD_LIBRARY_PATH="$here/unpacked/lib${cuda_lib:+:$cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ "${1:-}" == "--env" ]]; then
  echo "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH PACK_BIN=$here/unpacked/bin"
  exit 0
fi
bin="$1"; shift
exec "$here/unpacked/bin/$bin" "$@"
RUN
chmod +x "$PACK/run.sh"
du -sh "$PACK"
ls "$STAGE/bin"
