#!/usr/bin/env bash
# Runs on a GPU machine, from the repository root, with pack/ made by tools/pack_gpu.sh:
#   1. every packed GPU test binary;
#   2. `deltaserve generate` greedy on models/default, CUDA backend against CPU backend;
#   3. `deltaserve serve --backend cuda` under deltaserve-loadtest (closed loop), zero errors.
# Logs go to $OUT (or /tmp/gpu_check); a summary table is printed last. Exit status: failures.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
run=pack/run.sh
declare -a rows
fail=0
record() { rows+=("$(printf '%-34s %s' "$1" "$2")"); [[ "$2" == PASS* ]] || fail=$((fail + 1)); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

for t in gpu_gdn2_decode_test gpu_decode_ops_test gpu_cuda_model_test gpu_gdn2_chunk_prefill_test; do
  if "$run" "$t" > "$out/$t.log" 2>&1; then
    record "$t" "PASS ($(grep -c '^\[       OK' "$out/$t.log") ok)"
  else
    record "$t" "FAIL (see $t.log)"
  fi
done

gen() {  # gen BACKEND: greedy ids of a fixed prompt on the last line
  "$run" deltaserve generate --model models/default --prompt "And God said" --temperature 0 \
    --max-new-tokens 48 --ignore-eos --print-ids --backend "$1" > "$out/generate_$1.txt" \
    2> "$out/generate_$1.err"
}
if gen cpu && gen cuda; then
  cpu_ids=$(tail -n 1 "$out/generate_cpu.txt"); cuda_ids=$(tail -n 1 "$out/generate_cuda.txt")
  if [[ "$cpu_ids" == "$cuda_ids" ]]; then
    record "generate cuda == cpu (48 greedy)" "PASS"
  else
    record "generate cuda == cpu (48 greedy)" "FAIL (ids differ)"
  fi
else
  record "generate cpu/cuda" "FAIL (see generate_*.err)"
fi

"$run" deltaserve serve --model models/default --backend cuda --port 50151 --metrics-port 9451 \
  > "$out/serve_cuda.log" 2>&1 &
server=$!
for _ in $(seq 60); do
  curl -sf localhost:9451/metrics > /dev/null 2>&1 && break
  sleep 1
done
if "$run" deltaserve-loadtest --target localhost:50151 --mode closed --concurrency 16 \
     --duration 15 --json_out "$out/loadtest_cuda.json" > "$out/loadtest_cuda.txt" 2>&1; then
  record "serve --backend cuda + loadtest" "PASS"
else
  record "serve --backend cuda + loadtest" "FAIL (see loadtest_cuda.txt)"
fi
curl -s localhost:9451/metrics > "$out/metrics_cuda.txt" 2>/dev/null
kill -TERM "$server" 2>/dev/null
wait "$server"
record "serve --backend cuda SIGTERM exit" "$([[ $? -eq 0 ]] && echo PASS || echo FAIL)"

cat "$out/loadtest_cuda.txt" 2>/dev/null | tail -n 15
echo
printf '%s\n' "${rows[@]}"
exit "$fail"
