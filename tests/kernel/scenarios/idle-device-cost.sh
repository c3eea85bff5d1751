#!/usr/bin/env bash
# Memory cost of idle devices (budget 256 KiB each): runs the published idle-device-cost tool, whose
# path is $IDLE_DEVICE_COST (publish tests/kernel/scenarios/idle-device-cost ReadyToRun on the host).
set -euo pipefail
tool=${IDLE_DEVICE_COST:?set IDLE_DEVICE_COST to the published idle-device-cost binary}
"$tool" "${IDLE_DEVICES:-50}"
echo "PASS idle-device-cost"
