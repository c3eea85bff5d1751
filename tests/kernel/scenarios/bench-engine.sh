#!/usr/bin/env bash
# extras: the engine's early benchmark (done); the suite runs it when named or with BENCH_EXTRAS=1
# Benchmark (prints figures, asserts nothing about speed): `ublk-csi-bench bench-engine` runs fio 4 KiB
# random reads and writes at queue depth 32 on a loop device over tmpfs (the kernel-only baseline,
# same boot), then on null- and memory-backed ublk devices, and measures the resident memory of one
# process serving 32 idle devices. Under TCG only the ratios mean anything.
source "$(dirname "$0")/_lib.sh"
"$UBLK_CSI_BENCH" bench-engine --seconds "${BENCH_RUNTIME:-3}" --idle-devices 32 | tee "$SCENARIO_DIR/bench.txt"
sed -n 's/^  \(rand[a-z]* *ublk [a-z]*\)/figure: \1/p; s/^  \(metering overhead.*\)/figure: \1/p; s/^  \([0-9]* idle devices.*\)/figure: \1/p' "$SCENARIO_DIR/bench.txt"
no_devices_left() { ! compgen -G '/dev/ublk[bc]*' > /dev/null; }
no_devices_left || fail "bench-engine left devices behind: $(echo /dev/ublk[bc]*)"
log "PASS bench-engine"
