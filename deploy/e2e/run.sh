#!/usr/bin/env bash
# End to end on kind: builds the images, creates a kind cluster (deploy/kind/cluster.yaml), installs the
# chart with the file, s3 (an in-cluster s3rver) and rpc (the chart's block-store server) classes, and for
# each store runs a pod that writes files with checksums while the node plugin DaemonSet is restarted
# (kubectl rollout restart): the pod must see no I/O error and every checksum must verify. Then runs the
# C# suite (tests/E2E) when it exists, collects logs into deploy/e2e/logs and deletes the cluster.
#
# Exit codes: 0 passed, 1 failed, 77 SKIPPED (no docker, no kind or no ublk_drv on this host).
# Environment: KEEP_CLUSTER=1 keeps the cluster, E2E_CLUSTER names it, WRITE_SECONDS (default 60).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${E2E_CLUSTER:-ublk-e2e}
ns=ublk-system
app_ns=ublk-e2e
tag=e2e
write_seconds=${WRITE_SECONDS:-60}
logs=$repo/deploy/e2e/logs
SKIP=77

skip() { echo "SKIPPED: $*"; exit $SKIP; }
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

command -v docker > /dev/null || skip "docker is not installed (the e2e suite needs a container engine)"
docker info > /dev/null 2>&1 || skip "docker is installed but its daemon is not reachable"
command -v kind > /dev/null || skip "kind is not installed (https://kind.sigs.k8s.io)"
command -v kubectl > /dev/null || skip "kubectl is not installed"
helm=$(command -v helm || true)
if [[ -z $helm ]]; then
  "$repo/tests/chart/run.sh" > /dev/null 2>&1 || true   # installs the pinned helm of tools/chart-test
  helm=$repo/tools/chart-test/.bin/helm/helm
  [[ -x $helm ]] || skip "helm is not installed"
fi
if [[ ! -e /dev/ublk-control ]]; then
  { [[ $(id -u) -eq 0 ]] && modprobe ublk_drv 2> /dev/null; } || sudo -n modprobe ublk_drv 2> /dev/null || true
  [[ -e /dev/ublk-control ]] || skip "this host's kernel has no ublk driver (/dev/ublk-control missing; modprobe ublk_drv failed); kind nodes share the host kernel"
fi

collect_logs() {
  mkdir -p "$logs"
  kubectl get all,pvc,pv,volumeattachments,csinodes,csistoragecapacities -A -o wide > "$logs/objects.txt" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp > "$logs/events.txt" 2>&1 || true
  for pod in $(kubectl -n $ns get pods -o name 2> /dev/null); do
    kubectl -n $ns logs "$pod" --all-containers --prefix --timestamps > "$logs/${pod#pod/}.log" 2>&1 || true
    kubectl -n $ns logs "$pod" --all-containers --prefix --timestamps --previous > "$logs/${pod#pod/}.previous.log" 2>&1 || true
  done
  kind export logs "$logs/kind" --name "$cluster" > /dev/null 2>&1 || true
  echo "logs: $logs"
}
cleanup() {
  local rc=$?
  collect_logs
  [[ ${KEEP_CLUSTER:-0} == 1 ]] || kind delete cluster --name "$cluster" > /dev/null 2>&1 || true
  exit $rc
}

step "build images"
for target in node controller blockstore-server; do
  image=ublk-$([[ $target == node || $target == controller ]] && echo "csi-$target" || echo "$target")
  docker build -q -f "$repo/deploy/Dockerfile" --target "$target" -t "ublk-csi.local/$image:$tag" "$repo"
done
docker build -q -f "$repo/deploy/s3rver.Dockerfile" -t ublk-csi.local/s3rver:$tag "$repo"

step "create kind cluster $cluster"
kind create cluster --name "$cluster" --config "$repo/deploy/kind/cluster.yaml" --wait 180s
trap cleanup EXIT
for image in ublk-csi-node ublk-csi-controller ublk-blockstore-server s3rver; do
  kind load docker-image --name "$cluster" "ublk-csi.local/$image:$tag"
done

step "s3rver (bucket volumes)"
kubectl create namespace $ns
kubectl -n $ns apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: s3rver}
spec:
  selector: {matchLabels: {app: s3rver}}
  template:
    metadata: {labels: {app: s3rver}}
    spec:
      containers:
        - name: s3rver
          image: ublk-csi.local/s3rver:$tag
          imagePullPolicy: Never
          args: [--configure-bucket, volumes]
          ports: [{containerPort: 5000}]
          readinessProbe: {tcpSocket: {port: 5000}}
---
apiVersion: v1
kind: Service
metadata: {name: s3rver}
spec:
  selector: {app: s3rver}
  ports: [{port: 5000, targetPort: 5000}]
YAML
kubectl -n $ns rollout status deploy/s3rver --timeout=120s

step "helm install"
"$helm" install ublk-csi "$repo/charts/ublk-csi" --namespace $ns --wait --timeout 5m \
  --set image.registry=ublk-csi.local,image.tag=$tag,image.pullPolicy=Never \
  --set volumeSnapshotClass.enabled=false \
  --set storageClasses.s3.enabled=true,storageClasses.s3.bucket=volumes \
  --set storageClasses.s3.endpoint=http://s3rver.$ns.svc:5000,storageClasses.s3.pathStyle=true \
  --set storageClasses.s3.secret.name=s3-credentials,storageClasses.s3.secret.create=true \
  --set storageClasses.s3.secret.accessKeyId=S3RVER,storageClasses.s3.secret.secretAccessKey=S3RVER \
  --set storageClasses.rpc.enabled=true,blockstoreServer.enabled=true \
  --set blockstoreServer.token.value="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
kubectl get csidrivers,storageclasses
kubectl get csinodes -o custom-columns=NODE:.metadata.name,DRIVERS:.spec.drivers[*].name

step "a writer pod per store"
kubectl create namespace $app_ns
for store in file s3 rpc; do
  kubectl -n $app_ns apply -f - <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data-$store}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ublk-$store
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer-$store, labels: {app: writer}}
spec:
  restartPolicy: Never
  containers:
    - name: writer
      image: busybox:1.36
      # Writes 256 KiB files with fsync until /data/stop exists, recording each checksum; any failed
      # write or sync ends the pod with an error. Then every checksum is verified.
      command:
        - sh
        - -c
        - |
          set -u; i=0
          while [ ! -e /data/stop ]; do
            dd if=/dev/urandom of=/data/f.\$i bs=64k count=4 conv=fsync 2> /tmp/dd.err || { echo "IO-ERROR write \$i: \$(cat /tmp/dd.err)"; exit 1; }
            sha256sum /data/f.\$i >> /data/SUMS || { echo "IO-ERROR sums \$i"; exit 1; }
            sync /data/SUMS || { echo "IO-ERROR sync \$i"; exit 1; }
            i=\$((i + 1)); sleep 0.05
          done
          echo "WROTE \$i files"
          sha256sum -c -s /data/SUMS && echo VERIFIED || { echo "IO-ERROR verify"; exit 1; }
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data-$store}
YAML
done
kubectl -n $app_ns wait pod -l app=writer --for=condition=Ready --timeout=300s

step "restart the node plugin while the pods write"
sleep $((write_seconds / 3))
kubectl -n $ns rollout restart daemonset/ublk-csi-node
kubectl -n $ns rollout status daemonset/ublk-csi-node --timeout=10m
sleep $((write_seconds / 3))
for store in file s3 rpc; do
  phase=$(kubectl -n $app_ns get pod writer-$store -o jsonpath='{.status.phase}')
  [[ $phase == Running ]] || { kubectl -n $app_ns logs writer-$store || true; fail "writer-$store is $phase after the plugin restart"; }
  kubectl -n $app_ns exec writer-$store -- touch /data/stop
done

step "verify"
failed=0
for store in file s3 rpc; do
  kubectl -n $app_ns wait pod writer-$store --for=jsonpath='{.status.phase}'=Succeeded --timeout=300s || true
  out=$(kubectl -n $app_ns logs writer-$store)
  phase=$(kubectl -n $app_ns get pod writer-$store -o jsonpath='{.status.phase}')
  echo "$store: $phase: $(echo "$out" | tr '\n' ' ')"
  if [[ $phase != Succeeded ]] || grep -q IO-ERROR <<< "$out" || ! grep -q VERIFIED <<< "$out"; then failed=1; fi
done
[[ $failed == 0 ]] || fail "a writer saw an I/O error or a checksum mismatch across the node plugin restart"

if [[ -f $repo/tests/E2E/E2E.csproj ]]; then
  step "C# e2e suite (tests/E2E)"
  # The suite reads the same names (its defaults are these) and the kind context kind wrote into
  # ~/.kube/config; detailed verbosity prints each skipped test's reason (e.g. snapshots: no class).
  KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config} UBLK_E2E_NAMESPACE=$ns UBLK_E2E_RELEASE=ublk-csi \
    UBLK_E2E_APP_NAMESPACE=$app_ns UBLK_E2E_IMAGE=busybox:1.36 \
    dotnet test "$repo/tests/E2E/E2E.csproj" -c Release -nologo --logger "console;verbosity=detailed"
fi

step "clean up volumes"
kubectl delete namespace $app_ns --wait --timeout=5m
echo "PASSED: file, s3 and rpc volumes written and verified across a node plugin rolling restart"
