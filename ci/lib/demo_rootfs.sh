#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds a minimal root filesystem for the demo app from this machine's files: the executable, its shared
# library closure (as ldd resolves it), the dynamic loader, os-release, and the dpkg database entries of the
# packages that own those files - so map generation sees a real Debian-family image, not the host.
# Usage: demo_rootfs.sh EXECUTABLE ROOTFS_DIR
set -euo pipefail
exe=$1 root=$2
rm -rf "$root"
mkdir -p "$root/var/lib/dpkg/info" "$root/etc" "$root/tmp"

copy() { # copy a host path to the same path in the root, keeping symlinks (usrmerge: /lib -> usr/lib)
  local src=$1 real
  real=$(readlink -f "$src")
  mkdir -p "$root$(dirname "$real")"
  cp -p "$real" "$root$real"
  # A link only where the path differs inside the root too (through /lib -> usr/lib it may be the same file).
  if [ "$(readlink -m "$root$src")" != "$root$real" ]; then
    mkdir -p "$(readlink -m "$root$(dirname "$src")")"
    ln -sf "$real" "$root$src" 2>/dev/null || true
  fi
}

for d in lib lib64 bin sbin; do
  [ -L "/$d" ] && ln -sfn "$(readlink "/$d")" "$root/$d"
done
mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root/usr/bin" "$root/usr/sbin"

files=("$exe")
while read -r lib; do files+=("$lib"); done < <(ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
for f in "${files[@]}"; do copy "$f"; done
cp /etc/os-release "$root/etc/os-release" 2>/dev/null || cp /usr/lib/os-release "$root/etc/os-release"

# dpkg: the status file whole (it is the package list), and the .list files of the owning packages only.
cp /var/lib/dpkg/status "$root/var/lib/dpkg/status"
for f in "${files[@]}"; do
  dpkg -S "$(readlink -f "$f")" 2>/dev/null || dpkg -S "$f" 2>/dev/null || true
done | cut -d: -f1-2 | sed 's/: .*//' | tr ',' '\n' | sed 's/^ *//' | sort -u | while read -r pkg; do
  for list in "/var/lib/dpkg/info/$pkg.list" "/var/lib/dpkg/info/$pkg:amd64.list"; do
    if [ -f "$list" ]; then cp "$list" "$root/var/lib/dpkg/info/"; fi
  done
done
echo "$root"
