#!/usr/bin/env bash
# Rebuild the minikernel image.
#
#   targets/minikernel/build.sh [OUTPUT]     (default: minikernel.elf beside this script)
#
# Needs gcc and GNU ld for x86-64 (CC and LD may name others).  The build is
# reproducible: the same sources built by the same gcc and binutils give a
# byte-identical ELF, wherever the checkout and the output are.  To that end
# it compiles from this directory with relative names, maps this directory
# to /minikernel in the debug info, sorts its inputs, has no build-id and no
# timestamps, and builds in a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
out=${1:-$here/minikernel.elf}
case $out in
/*) ;;
*) out=$PWD/$out ;;
esac

CC=${CC:-gcc}
LD=${LD:-ld}
export LC_ALL=C

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Linux's compile.h puts the toolchain in the banner; so do we.  The first
# word of `gcc --version` is however gcc was invoked; name it gcc.
cc_version=$("$CC" --version)
cc_version=${cc_version%%$'\n'*}
ld_version=$("$LD" --version)
ld_version=${ld_version%%$'\n'*}
compiler="gcc ${cc_version#* }, $ld_version"
compiler=${compiler//[\"\\]/}

common=(
	-std=gnu11 -O1 -g -gdwarf-5
	-ffreestanding -nostdinc -fno-common -fno-strict-aliasing
	-fno-pic -fno-pie -fno-stack-protector -fcf-protection=none
	-mgeneral-regs-only -mno-red-zone
	# Frames a debugger can walk: frame pointers, no tail calls, and CFI.
	# With -g, -fno-asynchronous-unwind-tables does not drop the CFI: gcc
	# writes it to .debug_frame (not loaded; gdb reads it as it reads
	# .eh_frame) instead of a loaded .eh_frame, whose 32-bit pc-relative
	# addresses could not reach both halves of the image from one section.
	-fno-omit-frame-pointer -fno-optimize-sibling-calls
	-fno-asynchronous-unwind-tables
	-ffile-prefix-map="$here"=/minikernel
	-Wall -Wextra -Wno-unused-parameter
	-I include -I arch/x86/include
)
kernel_flags=(-mcmodel=kernel -mpreferred-stack-boundary=3)
user_flags=(-mcmodel=small)

cd "$here"
mapfile -t kernel_sources < <(find kernel arch -type f \( -name '*.c' -o -name '*.S' \) | sort)
mapfile -t user_sources < <(find user -type f -name '*.c' | sort)

objects=()
compile() { # compile SOURCE FLAGS...
	local src=$1 obj=${1%.*}.o
	shift
	mkdir -p "$tmp/$(dirname "$obj")"
	"$CC" "${common[@]}" "$@" -c "$src" -o "$tmp/$obj"
	objects+=("$obj")
}
for src in "${kernel_sources[@]}"; do
	compile "$src" "${kernel_flags[@]}" -DLINUX_COMPILER="\"$compiler\""
done
for src in "${user_sources[@]}"; do
	compile "$src" "${user_flags[@]}"
done

# The linker script tells kernel from user objects by their relative names.
cd "$tmp"
"$LD" -m elf_x86_64 -static -nostdlib --build-id=none \
	-z noexecstack -z max-page-size=4096 -z common-page-size=4096 \
	--orphan-handling=error -T "$here/minikernel.lds" \
	-o minikernel.elf "${objects[@]}"

mkdir -p "$(dirname "$out")"
cp minikernel.elf "$out.tmp$$"
chmod 0644 "$out.tmp$$"
mv -f "$out.tmp$$" "$out"
echo "built $out"
