#!/bin/sh
# Bad configurations fail before the VM starts with a message naming the
# problem; a good config file (relative paths, overrides) boots.
# Usage: config_errors.sh VDFS_VM MKPVH
VDFS_VM=$1
MKPVH=$2
. "$(dirname "$0")/lib.sh"

mkdir -p "$work/vm"
"$MKPVH" "$work/vm/kernel.elf" exit:9 || exit 1

# expect_error WHAT PATTERN ARGS...: exit 1, PATTERN on stderr, no guest output.
expect_error() {
	what=$1
	pattern=$2
	shift 2
	run_vm "$work/out" "$work/err" "$@"
	expect_rc "$what" 1
	expect_in "$work/err" "$pattern" "$what: message"
	[ -s "$work/out" ] && fail "$what: the guest ran" || true
}

cfg() { printf '%s\n' "$@" >"$work/vm/test.vmx"; }

expect_error "missing config file" "nosuch.vmx: No such file or directory" run "$work/nosuch.vmx"
cfg "kernel = kernel.elf" "colour = blue"
expect_error "unknown key" "test.vmx:2: unknown key 'colour'" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "this line has no equals sign"
expect_error "malformed line" "test.vmx:2: expected 'key = value'" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "memory = 0"
expect_error "memory 0" "memory: 0 bytes is too small" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "memory = 64P"
expect_error "memory not a size" "memory: '64P' is not a size" run "$work/vm/test.vmx"
host_mib=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
cfg "kernel = kernel.elf" "memory = $((host_mib * 5))M"
expect_error "memory beyond 4x host RAM" "more than 4x this host" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "cpus = 0"
expect_error "zero cpus" "cpus: '0' is not a count" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "cpus = 65"
expect_error "too many cpus" "cpus: '65' is not a count" run "$work/vm/test.vmx"
cfg "kernel = missing.elf"
expect_error "missing kernel" "kernel $work/vm/missing.elf: No such file" run "$work/vm/test.vmx"
cfg "memory = 64M"
expect_error "no kernel" "no kernel given" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "disk = disk.img"
expect_error "missing disk" "disk $work/vm/disk.img: No such file" run "$work/vm/test.vmx"
: >"$work/vm/empty.img"
cfg "kernel = kernel.elf" "initrd = empty.img"
expect_error "empty initrd" "initrd $work/vm/empty.img is empty" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "disk = vdfs:nosuch.img:/x"
expect_error "datastore image relative to the config" "cannot join datastore $work/vm/nosuch.img" run "$work/vm/test.vmx"
# A leading comma is no path ("ro" in the working directory would be one).
: >"$work/vm/ro"
cfg "kernel = kernel.elf" "disk = ,ro"
expect_error "disk without a path" "disk: missing path in ',ro'" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "nic = ,mac=02:00:00:00:00:01" "switch = /run/sw.sock"
expect_error "nic without a port group" "nic: missing port group in ',mac=" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "disk = /dev/null,fast"
expect_error "unknown disk option" "disk: unknown option 'fast'" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "disk = /dev/null,cache=bogus"
expect_error "unknown cache mode" "disk: unknown option 'cache=bogus'" run "$work/vm/test.vmx"
expect_error "cache= on a datastore disk" "cache= applies to plain files" \
	run --kernel "$work/vm/kernel.elf" --memory 16M --disk "vdfs:$work/vm/kernel.elf:/x,cache=none"
cfg "kernel = kernel.elf" "disk = /dev/null,serial=123456789012345678901"
expect_error "serial too long" "longer than 20 bytes" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "nic = vm-network,mac=01:00:00:00:00:01" "switch = /run/sw.sock"
expect_error "multicast MAC" "not a unicast MAC" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "nic = vm-network" "switch = sw 0"
expect_error "bad switch name" "switch: 'sw 0' is neither a switch name" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf" "serial = printer"
expect_error "bad serial" "serial: 'printer' is neither" run "$work/vm/test.vmx"
cfg "kernel = kernel.elf"
expect_error "bad --memory flag" "--memory: memory: '12Q' is not a size" run "$work/vm/test.vmx" --memory 12Q
expect_error "unknown flag" "unrecognized option" run "$work/vm/test.vmx" --turbo
expect_error "unknown command" "unknown command 'start'" start "$work/vm/test.vmx"
printf 'not a kernel at all, just text......................................\n' >"$work/vm/text.bin"
cfg "kernel = text.bin"
expect_error "kernel of unknown format" "neither an ELF (PVH) nor a bzImage" run "$work/vm/test.vmx"

# A good file: comments, quotes, a relative kernel path; flags override it.
printf '%s\n' "# a VM folder on the datastore" "name = \"good vm\"" "cpus = 2" "memory = 32M" \
	"kernel = kernel.elf" "cmdline = \"console=ttyS0 quiet\"" "serial = stdout" \
	"cpu_overcommit_ratio = 8" >"$work/vm/good.vmx"
run_vm "$work/out" "$work/err" run "$work/vm/good.vmx"
expect_rc "good config boots the guest" 9
run_vm "$work/out" "$work/err" run "$work/vm/good.vmx" --cpus 3 --memory 48M --serial "file:$work/c.log"
expect_rc "flags override the file" 9
expect_in "$work/c.log" "MKPVH HELLO" "--serial overrides serial = stdout"

run_vm "$work/out" "$work/err" --help
expect_rc "--help" 0
expect_in "$work/out" "vdfs-vm run" "--help shows usage"
expect_in "$work/out" "cache=none" "--help names the disk options"
finish
