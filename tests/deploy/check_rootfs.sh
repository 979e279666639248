#!/usr/bin/env bash
# Stages the image root file system of both variants (deploy/container/stage_rootfs.sh) and
# checks, with the staged dynamic loader run inside a chroot of it, that every library the binary
# needs resolves inside the image; only the NVIDIA driver (libcuda, libnvidia-*), which the NVIDIA
# container runtime injects, may be missing. For the cuda variant, each CUDA runtime library the
# binary links must be in the image and no driver library may be.
# The variants are staged one at a time with hard links (--link), each removed once checked, so
# the check needs little free disk (a copied cuda tree is over 1 GB).
# Usage: check_rootfs.sh SOURCE_DIR BINARY WORK_DIR
set -euo pipefail
src=$1 binary=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
fail=0
for variant in cpu cuda; do
  "$src/deploy/container/stage_rootfs.sh" --variant "$variant" --binary "$binary" \
    --model "$src/models/default" --out "$work/$variant" --link
  root="$work/$variant/rootfs"
  listing=$(chroot "$root" /lib64/ld-linux-x86-64.so.2 --list /usr/local/bin/deltaserve)
  while read -r line; do
    case "$line" in
      *"not found"*)
        case "$line" in
          libcuda.so*|libnvidia-*) echo "$variant: $line (driver, injected at run time)" ;;
          *) echo "FAIL $variant: inside the image: $line"; fail=1 ;;
        esac ;;
    esac
  done <<< "$listing"
  if find "$root" -name 'libcuda.so*' -o -name 'libnvidia-*' | grep -q .; then
    echo "FAIL $variant: the image contains an NVIDIA driver library"; fail=1
  fi
  for lib in $(ldd "$binary" | awk '/=> \// {print $1}' | grep -E '^lib(cudart|cublas|cublasLt)\.so' || true); do
    if [ -e "$root/usr/local/lib/deltaserve/$lib" ]; then
      echo "$variant: CUDA runtime library $lib is in the image"
    else
      echo "FAIL $variant: $lib (linked by the binary) is not in the image"; fail=1
    fi
  done
  echo "$variant: $(echo "$listing" | grep -c '=>') libraries resolve inside the image"
  rm -rf "${work:?}/$variant"
done
[ $fail -eq 0 ] && echo "rootfs check passed"
exit $fail
