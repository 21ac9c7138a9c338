# Shared helpers for the vdfs-vm test scripts (sourced).
set -u

need_kvm() {
	[ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
}

work=$(mktemp -d "${TMPDIR:-/tmp}/vdfs-vm-test.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
# A private VM registry so parallel tests and real VMs do not interfere.
export VDFS_VM_RUN_DIR="$work/run"

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}
pass() {
	echo "ok: $*"
}

# run_vm OUTFILE ERRFILE ARGS...: runs vdfs-vm with a 60 s guard; sets rc.
run_vm() {
	out=$1
	err=$2
	shift 2
	timeout 60 "$VDFS_VM" "$@" >"$out" 2>"$err"
	rc=$?
}

# expect_rc WHAT WANT
expect_rc() {
	if [ "$rc" -eq "$2" ]; then pass "$1: exit $rc"; else fail "$1: exit $rc, want $2"; cat "$err"; fi
}

# expect_in FILE PATTERN WHAT
expect_in() {
	if grep -q -- "$2" "$1"; then pass "$3"; else fail "$3: no '$2' in $(basename "$1")"; sed 's/^/    /' "$1" | head -20; fi
}

finish() {
	if [ "$failures" -ne 0 ]; then
		echo "$failures check(s) failed"
		exit 1
	fi
	echo "all checks passed"
	exit 0
}
