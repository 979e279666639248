#!/usr/bin/env bash
# Renders every kustomization of deploy/ with `kubectl kustomize` into OUT_DIR:
#   overlays-cpu.yaml, overlays-gpu.yaml, prometheus-adapter.yaml, grafana.yaml
# and checks that each overlay renders the objects a deployment needs.
# Usage: render.sh SOURCE_DIR OUT_DIR
set -euo pipefail
src=$1/deploy
out=$2
command -v kubectl >/dev/null || { echo "render: kubectl is not installed" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
for k in k8s/overlays/cpu k8s/overlays/gpu k8s/prometheus-adapter grafana; do
  name=${k#k8s/}
  name=${name//\//-}
  kubectl kustomize "$src/$k" > "$out/$name.yaml"
  echo "render: $k -> $name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
done
for overlay in overlays-cpu overlays-gpu; do
  for kind in ConfigMap Deployment Service PodDisruptionBudget HorizontalPodAutoscaler ServiceMonitor PrometheusRule; do
    grep -q "^kind: $kind\$" "$out/$overlay.yaml" || { echo "render: $overlay has no $kind" >&2; exit 1; }
  done
done
grep -q 'nvidia.com/gpu: "1"' "$out/overlays-gpu.yaml" || { echo "render: gpu overlay requests no GPU" >&2; exit 1; }
if grep -q 'nvidia.com/gpu' "$out/overlays-cpu.yaml"; then echo "render: cpu overlay requests a GPU" >&2; exit 1; fi
echo "render: all kustomizations rendered"
