#!/usr/bin/env bash
# Stages the root file system of the deltaserve image (see Containerfile) into OUT/rootfs:
#   /usr/local/bin/deltaserve        the server binary
#   /usr/local/lib/libdeltaserve_sentencepiece.so  the SentencePiece plugin the binary dlopens
#                                    (from ../lib; only when the build made it)
#   /lib/x86_64-linux-gnu/...,       the system libraries the binary loads, at the same paths
#   /usr/lib/x86_64-linux-gnu/...    (glibc, libstdc++, gRPC, protobuf, Abseil, OpenBLAS, ...)
#   /usr/local/lib/deltaserve/       every other library it loads (CUDA runtime libraries for the
#                                    cuda variant, libraries of the build tree), found through
#   /etc/ld.so.conf, /etc/ld.so.cache  the loader cache built here with ldconfig -r
#   /lib64/ld-linux-x86-64.so.2      the dynamic loader
#   /models/default                  the embedded model
#   /etc/passwd, /etc/group          user and group deltaserve (10001), the image's USER
#   /etc/nsswitch.conf, /etc/hosts   name resolution from files, then DNS
#   /tmp                             writable scratch (mode 1777)
# The NVIDIA driver libraries (libcuda.so*, libnvidia-*.so*) are never copied: the NVIDIA
# container runtime injects the host's at start. A library ldd cannot find is an error, except
# libcuda.so.1 on a machine without a driver.
#
# With --link, the libraries and the model are hard-linked rather than copied where the file
# system allows (the staged tree then costs almost no disk; a check that only inspects it needs
# nothing more). build_image.sh stages without it, so an image never depends on it.
#
# Usage: stage_rootfs.sh --variant cpu|cuda --binary FILE --model DIR --out DIR [--link]
set -euo pipefail

variant="" binary="" model="" out="" link=0
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) variant=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --link) link=1; shift ;;
    *) echo "stage_rootfs: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$variant" in cpu|cuda) ;; *) echo "stage_rootfs: --variant must be cpu or cuda" >&2; exit 2 ;; esac
[ -x "$binary" ] || { echo "stage_rootfs: --binary $binary is not an executable" >&2; exit 2; }
[ -f "$model/config.json" ] || { echo "stage_rootfs: --model $model has no config.json" >&2; exit 2; }
[ -n "$out" ] || { echo "stage_rootfs: --out is required" >&2; exit 2; }

root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/models"
chmod 1777 "$root/tmp"
install -m 0755 "$binary" "$root/usr/local/bin/deltaserve"

# stage_file SRC DEST: DEST gets SRC's content (symlinks followed); a hard link under --link
# when SRC and DEST share a file system, a copy otherwise.
stage_file() {
  if [ $link -eq 1 ] && cp -L --link "$1" "$2" 2>/dev/null; then return 0; fi
  cp -L "$1" "$2"
}

is_driver_lib() {
  case "$(basename "$1")" in libcuda.so*|libnvidia-*.so*|libnvcuvid.so*) return 0 ;; *) return 1 ;; esac
}

cuda_libs=0
missing=0
# copy_deps FILE: copies every library FILE loads (per ldd) into the image.
copy_deps() {
  # ldd lines: "libfoo.so.1 => /path/libfoo.so.1 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
  # "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy) or "libfoo.so.1 => not found".
  while read -r line; do
    case "$line" in
      *"=> not found"*)
        name=${line%% *}
        if is_driver_lib "$name"; then continue; fi
        echo "stage_rootfs: ldd cannot find $name" >&2; missing=1; continue ;;
      *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
      /*) path=${line%% (*} ;;
      *) continue ;;
    esac
    if is_driver_lib "$path"; then continue; fi
    case "$(basename "$path")" in libcudart*|libcublas*|libcufft*|libcurand*|libcusparse*|libnvrtc*|libnvJitLink*) cuda_libs=1 ;; esac
    case "$path" in
      /lib/x86_64-linux-gnu/*|/usr/lib/x86_64-linux-gnu/*|/lib64/*) dest=$path ;;
      *) dest=/usr/local/lib/deltaserve/$(basename "$path") ;;
    esac
    mkdir -p "$root$(dirname "$dest")"
    stage_file "$path" "$root$dest"
  done < <(ldd "$1")
}
copy_deps "$binary"
# The SentencePiece plugin is opened with dlopen, so ldd of the binary does not list it.
plugin="$(dirname "$binary")/libdeltaserve_sentencepiece.so"
if [ -f "$plugin" ]; then
  install -D -m 0755 "$plugin" "$root/usr/local/lib/libdeltaserve_sentencepiece.so"
  copy_deps "$plugin"
fi
[ $missing -eq 0 ] || exit 1
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || { echo "stage_rootfs: no dynamic loader in ldd output" >&2; exit 1; }

if [ "$variant" = cuda ] && [ $cuda_libs -eq 0 ]; then
  echo "stage_rootfs: note: $binary links no shared CUDA runtime library (static cudart, or built without CUDA)" >&2
fi
if [ "$variant" = cpu ] && [ $cuda_libs -eq 1 ]; then
  echo "stage_rootfs: note: $binary links CUDA libraries; the cpu image carries them (build with -DDELTASERVE_CUDA=OFF for a smaller one)" >&2
fi

# The loader cache: RUNPATHs of the build tree do not exist in the image.
printf '/usr/local/lib/deltaserve\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' > "$root/etc/ld.so.conf"
mkdir -p "$root/usr/local/lib/deltaserve"
ldconfig -r "$root"

# Linked files share their mode with the source, so only copies get the image's modes.
if [ $link -eq 1 ] && cp -rL --link "$model" "$root/models/default" 2>/dev/null; then
  :
else
  rm -rf "$root/models/default"
  cp -rL "$model" "$root/models/default"
  chmod -R a+rX,go-w "$root/models"
fi

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
deltaserve:x:10001:10001:deltaserve:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
deltaserve:x:10001:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"

linked=""
[ $link -eq 1 ] && linked=", libraries and model hard-linked where possible"
echo "stage_rootfs: $variant root file system in $root ($(du -sh "$root" | cut -f1)$linked)"
