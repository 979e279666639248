#!/usr/bin/env bash
# Builds the deltaserve image: stages the root file system (stage_rootfs.sh) into a build
# context and builds Containerfile with podman (or buildah when podman is absent).
#
# Usage: deploy/container/build_image.sh --variant cpu|cuda --tag IMAGE
#          [--binary build/bin/deltaserve] [--model models/default] [--context DIR] [--version V]
# Then push: podman push IMAGE (deploy/README.md, "Build and push").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

variant="" tag="" binary="$repo/build/bin/deltaserve" model="$repo/models/default" context="" version=dev
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) variant=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) echo "build_image: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$tag" ] || { echo "build_image: --tag is required" >&2; exit 2; }
if [ -z "$context" ]; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
fi

"$here/stage_rootfs.sh" --variant "$variant" --binary "$binary" --model "$model" --out "$context"
cp "$here/Containerfile" "$context/Containerfile"

nvidia=void
[ "$variant" = cuda ] && nvidia=all
build_args=(--build-arg "VARIANT=$variant" --build-arg "VERSION=$version"
            --build-arg "NVIDIA_VISIBLE_DEVICES=$nvidia")
# chroot isolation: the build runs no command (FROM scratch, COPY only), so it needs no
# namespaces and works inside unprivileged containers and CI sandboxes.
if command -v podman >/dev/null; then
  podman build --isolation=chroot --format=oci "${build_args[@]}" -t "$tag" -f "$context/Containerfile" "$context"
elif command -v buildah >/dev/null; then
  buildah bud --isolation=chroot --format=oci "${build_args[@]}" -t "$tag" -f "$context/Containerfile" "$context"
else
  echo "build_image: neither podman nor buildah is installed" >&2
  exit 1
fi
echo "build_image: built $tag ($variant)"
