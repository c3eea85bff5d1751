// Checks charts/ublk-csi with a real helm (HELM), validates every rendered object against the Kubernetes
// OpenAPI schemas (kubernetes-models, plus a strict unknown-field walk over its typings) and asserts what a
// ublk node needs. Run through tests/chart/run.sh, which provides HELM and MODELS_DIR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const chart = path.join(repo, 'charts/ublk-csi');
const toolDir = path.join(repo, 'tools/chart-test');
const modules = path.join(toolDir, 'node_modules');
const helm = process.env.HELM ?? path.join(toolDir, '.bin/helm/helm');
const YAML = createRequire(path.join(toolDir, 'package.json'))('yaml');

// ---- helm ----------------------------------------------------------------------------------------

function runHelm(args) {
  const r = spawnSync(helm, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return r;
}

/** Renders the chart with --set arguments; returns the parsed objects. */
function render(sets = [], namespace = 'ublk-system') {
  const args = ['template', 'rel', chart, '--namespace', namespace];
  for (const s of sets) args.push('--set', s);
  const r = runHelm(args);
  assert.equal(r.status, 0, `helm template ${sets.join(' ')} failed:\n${r.stderr}`);
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS()).filter((o) => o);
}

/** Renders with bad values; returns helm's stderr (the render must fail). */
function renderFails(sets) {
  const args = ['template', 'rel', chart];
  for (const s of sets) args.push('--set', s);
  const r = runHelm(args);
  assert.notEqual(r.status, 0, `helm template ${sets.join(' ')} should have failed`);
  return r.stderr;
}

// ---- schema validation ---------------------------------------------------------------------------

async function modelClass(apiVersion, kind) {
  const group = apiVersion.includes('/') ? apiVersion : `v1`;
  const file = path.join(modules, 'kubernetes-models', group === 'v1' ? 'v1' : group, `${kind}.js`);
  if (!existsSync(file)) return null;
  return (await import(file))[kind];
}

// Strict fields: kubernetes-models' validators accept unknown keys (the API server would drop or, with
// strict field validation, reject them), so walk each object against the interfaces in its typings.
const typeCache = new Map();
function typeOf(dtsFile) {
  if (typeCache.has(dtsFile)) return typeCache.get(dtsFile);
  const text = readFileSync(dtsFile, 'utf8');
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    const spec = m[2];
    let target;
    if (spec.startsWith('.')) target = path.resolve(path.dirname(dtsFile), spec.replace(/\.js$/, '.d.ts'));
    else if (spec.startsWith('@kubernetes-models/')) target = path.join(modules, `${spec}.d.ts`);
    if (target) imports.set(m[1], target);
  }
  const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
  let type = null;
  if (body) {
    type = new Map();
    for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.+)$/gm)) {
      const t = m[2].trim();
      const ref = /^(?:Array<)?(I\w+)>?;$/.exec(t);
      type.set(m[1], ref && imports.has(ref[1]) ? { file: imports.get(ref[1]), array: t.startsWith('Array<') } : null);
    }
  }
  typeCache.set(dtsFile, type);
  return type;
}

function unknownFields(value, dtsFile, at, out) {
  const type = typeOf(dtsFile);
  if (!type || value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [key, child] of Object.entries(value)) {
    if (!type.has(key)) { out.push(`${at}.${key}`); continue; }
    const ref = type.get(key);
    if (!ref) continue;
    if (ref.array && Array.isArray(child)) child.forEach((c, i) => unknownFields(c, ref.file, `${at}.${key}[${i}]`, out));
    else unknownFields(child, ref.file, `${at}.${key}`, out);
  }
  return out;
}

// Kinds defined by CRDs (not in kubernetes-models): checked by hand against their published schemas.
const crdKinds = {
  'snapshot.storage.k8s.io/v1/VolumeSnapshotClass': (o) => {
    assert.deepEqual(Object.keys(o).filter((k) => !['apiVersion', 'kind', 'metadata', 'driver', 'deletionPolicy', 'parameters'].includes(k)), []);
    assert.match(o.driver, /^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/);
    assert.ok(['Delete', 'Retain'].includes(o.deletionPolicy));
    for (const v of Object.values(o.parameters ?? {})) assert.equal(typeof v, 'string');
  },
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => {
    assert.ok(o.spec.selector?.matchLabels, 'ServiceMonitor needs spec.selector.matchLabels');
    assert.ok(o.spec.endpoints.length > 0);
    for (const e of o.spec.endpoints) {
      assert.deepEqual(Object.keys(e).filter((k) => !['port', 'path', 'interval', 'scheme'].includes(k)), []);
      assert.equal(typeof e.port, 'string');
    }
  },
};

async function validateAll(objects) {
  for (const o of objects) {
    const id = `${o.kind}/${o.metadata?.name}`;
    assert.ok(o.metadata?.name, `${o.kind} without a name`);
    const crd = crdKinds[`${o.apiVersion}/${o.kind}`];
    if (crd) { crd(o); continue; }
    const Model = await modelClass(o.apiVersion, o.kind);
    assert.ok(Model, `${id}: ${o.apiVersion} ${o.kind} is neither a Kubernetes kind nor a known CRD kind`);
    try { new Model(o).validate(); } catch (e) { assert.fail(`${id} is invalid: ${e.message}`); }
    const group = o.apiVersion.includes('/') ? o.apiVersion : 'v1';
    const typings = path.join(modules, 'kubernetes-models', group, `${o.kind}.d.ts`);
    assert.ok(typeOf(typings)?.has('metadata'), `${id}: cannot read the fields of ${o.kind} from its typings`);
    const extra = unknownFields(o, typings, id, []);
    assert.deepEqual(extra, [], `${id} has fields the API does not know`);
  }
}

// ---- helpers over rendered objects ---------------------------------------------------------------

const find = (objs, kind, pred = () => true) => objs.filter((o) => o.kind === kind && pred(o));
const one = (objs, kind, pred) => {
  const found = find(objs, kind, pred);
  assert.equal(found.length, 1, `expected one ${kind}, found ${found.length}`);
  return found[0];
};
const container = (pod, name) => {
  const c = [...pod.spec.containers, ...(pod.spec.initContainers ?? [])].find((x) => x.name === name);
  assert.ok(c, `container ${name} missing`);
  return c;
};
const arg = (c, flag) => (c.args ?? []).find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
const volume = (pod, name) => pod.spec.volumes.find((v) => v.name === name);
const mount = (c, name) => (c.volumeMounts ?? []).find((m) => m.name === name);
const nodeDs = (objs) => one(objs, 'DaemonSet').spec.template;
const controllerDep = (objs) => one(objs, 'Deployment', (d) => d.metadata.name.endsWith('-controller')).spec.template;

const allStores = [
  'storageClasses.s3.enabled=true', 'storageClasses.s3.bucket=volumes', 'storageClasses.s3.endpoint=http://minio.minio:9000',
  'storageClasses.s3.pathStyle=true', 'storageClasses.s3.secret.name=s3-credentials', 'storageClasses.s3.chunkSize=4Mi',
  'storageClasses.s3.qos.maxIops=400',
  'storageClasses.rpc.enabled=true', 'blockstoreServer.enabled=true', 'blockstoreServer.token.value=0123456789abcdef0123',
  'metrics.enabled=true', 'metrics.serviceMonitor.enabled=true', 'metrics.grafanaDashboard.enabled=true',
];
const scenarios = {
  defaults: [],
  'file class (explicit)': ['storageClasses.file.enabled=true', 'storageClasses.file.fsType=xfs', 'storageClasses.file.qos.maxIops=1000'],
  's3 class': ['storageClasses.s3.enabled=true', 'storageClasses.s3.bucket=volumes', 'storageClasses.s3.secret.name=s3',
    'storageClasses.s3.secret.create=true', 'storageClasses.s3.secret.accessKeyId=AKIA', 'storageClasses.s3.secret.secretAccessKey=shh'],
  'rpc class with external server': ['storageClasses.rpc.enabled=true', 'storageClasses.rpc.endpoint=tcp://storage.example:9400',
    'storageClasses.rpc.secret.name=rpc-token'],
  'rpc class with the chart server': ['storageClasses.rpc.enabled=true', 'blockstoreServer.enabled=true', 'blockstoreServer.token.value=0123456789abcdef0123'],
  'every store, metrics, ServiceMonitor': allStores,
  'network stores only': ['nodeLocal.enabled=false', 'storageClasses.file.enabled=false', 'storageClasses.s3.enabled=true', 'storageClasses.s3.bucket=volumes'],
  'custom kubelet dir and driver name': ['kubeletDir=/var/lib/k0s/kubelet', 'driverName=blk.example.com', 'node.loadModule=false'],
  'node-local resizer and expansion': ['nodeLocal.resizer.enabled=true', 'storageClasses.file.allowVolumeExpansion=true'],
};

// ---- tests ---------------------------------------------------------------------------------------

test('helm lint --strict passes with the defaults and with every store on', () => {
  for (const sets of [[], allStores]) {
    const args = ['lint', '--strict', chart];
    for (const s of sets) args.push('--set', s);
    const r = runHelm(args);
    assert.equal(r.status, 0, `helm lint --strict ${sets.join(' ')}:\n${r.stdout}${r.stderr}`);
  }
});

for (const [name, sets] of Object.entries(scenarios)) {
  test(`every object rendered is valid Kubernetes: ${name}`, async () => {
    const objs = render(sets);
    assert.ok(objs.length > 0);
    await validateAll(objs);
  });
}

// The options the binaries declare (src/NodePlugin/NodeOptions.cs, src/Controller/ControllerOptions.cs,
// GrpcHostOptions, LogOptions): an unknown one makes the process exit 2.
const hostOptions = ['--endpoint', '--max-message-bytes', '--metrics-address', '--log-level', '--log-format', '--driver-name'];
const nodeOptions = [...hostOptions, '--node-id', '--state-dir', '--kubelet-dir', '--max-volumes-per-node', '--device-queues',
  '--zero-copy', '--controller-endpoint', '--controller-driver-name'];
const controllerOptions = [...hostOptions, '--known-nodes'];

test('the plugins are given only options they declare', () => {
  for (const sets of Object.values(scenarios)) {
    const objs = render(sets);
    const node = container(nodeDs(objs), 'ublk-csi-node');
    for (const a of node.args) assert.ok(nodeOptions.includes(a.split('=')[0]), `node plugin does not know ${a} (${sets.join(' ')})`);
    const deployment = objs.find((o) => o.kind === 'Deployment' && o.spec.template.spec.containers.some((c) => c.name === 'ublk-csi-controller'));
    if (!deployment) continue;
    const controller = container(deployment.spec.template, 'ublk-csi-controller');
    for (const a of controller.args) assert.ok(controllerOptions.includes(a.split('=')[0]), `controller does not know ${a} (${sets.join(' ')})`);
  }
});

test('the image build restores every project under src/', () => {
  // The Dockerfile copies the project files one by one (restore is cached apart from the sources):
  // a project added without its COPY line fails only at image build time, so catch it here.
  const dockerfile = readFileSync(path.join(repo, 'deploy/Dockerfile'), 'utf8');
  const projects = readdirSync(path.join(repo, 'src'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(repo, 'src', d.name, `${d.name}.csproj`)))
    .map((d) => d.name);
  assert.ok(projects.length >= 10, `found only ${projects.length} projects under src/`);
  for (const p of projects) {
    assert.ok(dockerfile.includes(`COPY src/${p}/${p}.csproj src/${p}/`), `deploy/Dockerfile does not copy src/${p}/${p}.csproj before restore`);
  }
});

test('the node plugin has what a ublk node needs', () => {
  for (const sets of [[], scenarios['custom kubelet dir and driver name']]) {
    const objs = render(sets);
    const kubeletDir = sets.find((s) => s.startsWith('kubeletDir='))?.split('=')[1] ?? '/var/lib/kubelet';
    const driver = sets.find((s) => s.startsWith('driverName='))?.split('=')[1] ?? 'ublk.csi.storage';
    const pod = nodeDs(objs);
    const plugin = container(pod, 'ublk-csi-node');

    assert.equal(plugin.securityContext.privileged, true, 'plugin must be privileged');
    assert.equal(plugin.securityContext.seccompProfile?.type, 'Unconfined', 'io_uring needs no seccomp filter');
    const kubelet = mount(plugin, 'kubelet-dir');
    assert.equal(kubelet.mountPath, kubeletDir);
    assert.equal(kubelet.mountPropagation, 'Bidirectional', 'mounts must propagate to the host');
    assert.equal(volume(pod, 'kubelet-dir').hostPath.path, kubeletDir);
    for (const [vol, at] of [['dev-dir', '/dev'], ['sys-dir', '/sys']]) {
      assert.equal(volume(pod, vol).hostPath.path, at);
      assert.equal(mount(plugin, vol).mountPath, at);
    }
    // State and s3 cache outlive the pod: hostPaths mounted at the same path the plugin and the class use.
    const stateDir = arg(plugin, '--state-dir');
    assert.equal(stateDir, '/var/lib/ublk-csi');
    assert.deepEqual(volume(pod, 'state-dir').hostPath, { path: stateDir, type: 'DirectoryOrCreate' });
    assert.equal(mount(plugin, 'state-dir').mountPath, stateDir);
    assert.deepEqual(volume(pod, 's3-cache-dir').hostPath, { path: '/var/cache/ublk-csi/s3', type: 'DirectoryOrCreate' });
    assert.equal(mount(plugin, 's3-cache-dir').mountPath, '/var/cache/ublk-csi/s3');
    for (const v of ['state-dir', 's3-cache-dir']) assert.ok(!pod.spec.volumes.find((x) => x.name === v).emptyDir);

    assert.equal(arg(plugin, '--driver-name'), driver);
    assert.equal(arg(plugin, '--endpoint'), 'unix:///csi/csi.sock');
    assert.equal(arg(plugin, '--node-id'), '$(NODE_ID)');
    assert.equal(arg(plugin, '--kubelet-dir'), kubeletDir, 'staging paths must lie inside the directory the plugin checks');
    assert.equal(plugin.env.find((e) => e.name === 'NODE_ID').valueFrom.fieldRef.fieldPath, 'spec.nodeName');

    // Registration: the registrar tells kubelet where the plugin socket is on the host.
    const socketDir = `${kubeletDir}/plugins/${driver}`;
    assert.deepEqual(volume(pod, 'socket-dir').hostPath, { path: socketDir, type: 'DirectoryOrCreate' });
    assert.equal(volume(pod, 'registration-dir').hostPath.path, `${kubeletDir}/plugins_registry`);
    const registrar = container(pod, 'node-driver-registrar');
    assert.equal(arg(registrar, '--csi-address'), '/csi/csi.sock');
    assert.equal(arg(registrar, '--kubelet-registration-path'), `${socketDir}/csi.sock`);
    assert.equal(mount(registrar, 'registration-dir').mountPath, '/registration');
    assert.equal(arg(container(pod, 'liveness-probe'), '--csi-address'), '/csi/csi.sock');
    assert.equal(mount(plugin, 'socket-dir').mountPath, '/csi');

    // Node-local provisioning beside the plugin, on its second socket.
    const controllerSock = arg(plugin, '--controller-endpoint');
    assert.equal(controllerSock, 'unix:///csi/controller.sock');
    assert.equal(arg(plugin, '--controller-driver-name'), `local.${driver}`);
    const localRegistrar = container(pod, 'node-driver-registrar-local');
    assert.equal(arg(localRegistrar, '--csi-address'), '/csi/controller.sock');
    assert.equal(arg(localRegistrar, '--kubelet-registration-path'), `${socketDir}/controller.sock`);
    for (const name of ['csi-provisioner', 'csi-snapshotter']) {
      const c = container(pod, name);
      assert.equal(arg(c, '--csi-address'), '/csi/controller.sock');
      assert.ok(c.args.includes('--node-deployment=true'), `${name} must run in --node-deployment mode`);
      assert.equal(c.env.find((e) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName');
    }
    assert.ok(container(pod, 'csi-provisioner').args.includes('--enable-capacity'));

    // Rolling update hands devices over: one node at a time, no surge, time to quiesce.
    const ds = one(objs, 'DaemonSet');
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    assert.ok(pod.spec.terminationGracePeriodSeconds >= 30);
    assert.ok(pod.spec.tolerations.some((t) => t.operator === 'Exists'));

    const loads = !sets.includes('node.loadModule=false');
    assert.equal(!!pod.spec.initContainers?.find((c) => c.name === 'load-ublk-module'), loads);
    if (loads) {
      const init = container(pod, 'load-ublk-module');
      assert.match(init.command.join(' '), /modprobe ublk_drv/);
      assert.deepEqual(mount(init, 'lib-modules'), { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true });
      assert.equal(volume(pod, 'lib-modules').hostPath.path, '/lib/modules');
    }
  }
});

test('the controller runs every sidecar with leader election on its socket', () => {
  const objs = render();
  const pod = controllerDep(objs);
  const plugin = container(pod, 'ublk-csi-controller');
  assert.equal(arg(plugin, '--endpoint'), 'unix:///csi/csi.sock');
  assert.equal(arg(plugin, '--driver-name'), 'ublk.csi.storage');
  for (const name of ['csi-provisioner', 'csi-attacher', 'csi-snapshotter', 'csi-resizer']) {
    const c = container(pod, name);
    assert.equal(arg(c, '--csi-address'), '/csi/csi.sock');
    assert.ok(c.args.includes('--leader-election'), `${name} needs --leader-election`);
    assert.equal(arg(c, '--leader-election-namespace'), 'ublk-system');
  }
  assert.equal(arg(container(pod, 'liveness-probe'), '--csi-address'), '/csi/csi.sock');
  assert.equal(one(objs, 'Deployment').spec.replicas, 2);
  const images = Object.fromEntries(pod.spec.containers.map((c) => [c.name, c.image]));
  assert.match(images['csi-provisioner'], /csi-provisioner:v5\./);
  assert.match(images['csi-attacher'], /csi-attacher:v4\./);
  assert.match(images['csi-snapshotter'], /csi-snapshotter:v8\./);
  assert.match(images['csi-resizer'], /csi-resizer:v1\./);
});

test('RBAC covers every service account and binds only rendered roles', () => {
  const objs = render(allStores);
  const accounts = new Set(find(objs, 'ServiceAccount').map((a) => a.metadata.name));
  for (const w of [...find(objs, 'DaemonSet'), ...find(objs, 'Deployment')]) {
    assert.ok(accounts.has(w.spec.template.spec.serviceAccountName), `${w.metadata.name} uses a missing service account`);
  }
  const roles = new Set([...find(objs, 'ClusterRole'), ...find(objs, 'Role')].map((r) => `${r.kind}/${r.metadata.name}`));
  const bound = new Map();
  for (const b of [...find(objs, 'ClusterRoleBinding'), ...find(objs, 'RoleBinding')]) {
    assert.ok(roles.has(`${b.roleRef.kind}/${b.roleRef.name}`), `${b.metadata.name} binds missing ${b.roleRef.name}`);
    for (const s of b.subjects) {
      assert.ok(accounts.has(s.name));
      bound.set(s.name, [...(bound.get(s.name) ?? []), b.roleRef.name]);
    }
  }
  const ctrl = bound.get('rel-ublk-csi-controller').join(' ');
  for (const r of ['provisioner', 'attacher', 'snapshotter', 'resizer', 'leader-election']) assert.match(ctrl, new RegExp(`-${r}\\b`));
  const node = bound.get('rel-ublk-csi-node').join(' ');
  for (const r of ['provisioner', 'snapshotter', 'node-capacity']) assert.match(node, new RegExp(`-${r}\\b`));
  const attacher = one(objs, 'ClusterRole', (r) => r.metadata.name.endsWith('-attacher'));
  assert.ok(attacher.rules.some((r) => r.resources.includes('volumeattachments/status') && r.verbs.includes('patch')));
});

test('CSIDrivers, StorageClasses and snapshot classes agree on driver names and paths', () => {
  const objs = render(allStores);
  const drivers = Object.fromEntries(find(objs, 'CSIDriver').map((d) => [d.metadata.name, d.spec]));
  assert.deepEqual(Object.keys(drivers).sort(), ['local.ublk.csi.storage', 'ublk.csi.storage']);
  assert.equal(drivers['ublk.csi.storage'].attachRequired, true, 'network volumes are fenced through ControllerPublish');
  assert.equal(drivers['local.ublk.csi.storage'].storageCapacity, true);
  for (const d of Object.values(drivers)) {
    assert.equal(d.podInfoOnMount, true);
    assert.equal(d.fsGroupPolicy, 'File');
    assert.deepEqual(d.volumeLifecycleModes, ['Persistent']);
  }
  const classes = Object.fromEntries(find(objs, 'StorageClass').map((c) => [c.parameters.store, c]));
  assert.deepEqual(Object.keys(classes).sort(), ['file', 'rpc', 's3']);
  for (const c of Object.values(classes)) assert.ok(drivers[c.provisioner], `${c.metadata.name}: no CSIDriver ${c.provisioner}`);
  assert.equal(classes.file.provisioner, 'local.ublk.csi.storage');
  assert.equal(classes.file.volumeBindingMode, 'WaitForFirstConsumer');
  const pod = nodeDs(objs);
  const plugin = container(pod, 'ublk-csi-node');
  assert.equal(mount(plugin, 'file-root').mountPath, classes.file.parameters.root);
  assert.equal(volume(pod, 'file-root').hostPath.path, classes.file.parameters.root);
  assert.equal(classes.s3.parameters.cacheDir, mount(plugin, 's3-cache-dir').mountPath);
  assert.equal(classes.s3.parameters.bucket, 'volumes');
  assert.equal(classes.s3.parameters.maxIops, '400');
  for (const kind of ['provisioner', 'node-stage', 'controller-publish', 'controller-expand']) {
    assert.equal(classes.s3.parameters[`csi.storage.k8s.io/${kind}-secret-name`], 's3-credentials');
    assert.equal(classes.s3.parameters[`csi.storage.k8s.io/${kind}-secret-namespace`], 'ublk-system');
  }
  const server = one(objs, 'Service', (s) => s.metadata.name.endsWith('-blockstore'));
  assert.equal(classes.rpc.parameters.endpoint, `tcp://${server.metadata.name}.ublk-system.svc:9400`);
  const tokenSecret = classes.rpc.parameters['csi.storage.k8s.io/node-stage-secret-name'];
  assert.ok(one(objs, 'Secret', (s) => s.metadata.name === tokenSecret).stringData.token);
  const statefulSet = one(objs, 'StatefulSet');
  assert.equal(statefulSet.spec.template.spec.volumes.find((v) => v.name === 'token').secret.secretName, tokenSecret);
  // The data path (NBD): served on its own port, which the Service exposes as the same number, since
  // OpenVolume names the bound port and clients dial it on the Service's address.
  const serverContainer = container(statefulSet.spec.template, 'ublk-blockstore-server');
  assert.equal(arg(serverContainer, '--nbd-listen'), 'tcp://0.0.0.0:9401');
  assert.equal(server.spec.ports.find((p) => p.name === 'nbd').port, 9401);
  assert.equal(serverContainer.ports.find((p) => p.name === 'nbd').containerPort, 9401);
  const snapshotClasses = Object.fromEntries(find(objs, 'VolumeSnapshotClass').map((c) => [c.metadata.name, c]));
  assert.equal(snapshotClasses['ublk-snapshots-file'].driver, 'local.ublk.csi.storage');
  assert.equal(snapshotClasses['ublk-snapshots-s3'].parameters['csi.storage.k8s.io/snapshotter-secret-name'], 's3-credentials');
  assert.equal(snapshotClasses['ublk-snapshots-rpc'].driver, 'ublk.csi.storage');
  // Metrics on, with the flag each host reads.
  assert.equal(arg(plugin, '--metrics-address'), '0.0.0.0:9810');
  assert.equal(arg(container(controllerDep(objs), 'ublk-csi-controller'), '--metrics-address'), '0.0.0.0:9811');
  assert.equal(find(objs, 'ServiceMonitor').length, 2);
  // The Grafana dashboard: for the sidecar (label), valid JSON, volume and store metrics in its queries.
  const dashboard = find(objs, 'ConfigMap').find((c) => c.metadata.name.endsWith('-dashboard'));
  assert.equal(dashboard.metadata.labels.grafana_dashboard, '1');
  const queries = JSON.parse(dashboard.data['ublk-csi.json']).panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
  for (const metric of ['ublk_csi_volume_operations_total', 'ublk_csi_volume_bytes_total', 'ublk_csi_volume_operation_duration_seconds_bucket',
    'ublk_csi_volume_qos_throttled_seconds_total', 'ublk_csi_device_recoveries_total', 'ublk_csi_store_s3_cache_hits_total',
    'ublk_csi_store_s3_dirty_bytes', 'ublk_csi_store_s3_upload_duration_seconds_bucket', 'ublk_csi_store_rpc_retries_total',
    'ublk_csi_store_nbd_reissued_requests_total']) {
    assert.ok(queries.includes(metric), `the dashboard does not show ${metric}`);
  }
});

test('store classes appear only when switched on; metrics are off by default', () => {
  const objs = render();
  assert.deepEqual(find(objs, 'StorageClass').map((c) => c.parameters.store), ['file']);
  assert.equal(find(objs, 'StatefulSet').length, 0);
  assert.equal(find(objs, 'ServiceMonitor').length, 0);
  assert.equal(arg(container(nodeDs(objs), 'ublk-csi-node'), '--metrics-address'), undefined);
  const network = render(scenarios['network stores only']);
  assert.deepEqual(find(network, 'CSIDriver').map((d) => d.metadata.name), ['ublk.csi.storage']);
  const pod = nodeDs(network);
  assert.deepEqual(pod.spec.containers.map((c) => c.name).sort(), ['liveness-probe', 'node-driver-registrar', 'ublk-csi-node']);
  assert.equal(arg(container(pod, 'ublk-csi-node'), '--controller-endpoint'), undefined);
});

test('the validation itself catches bad types and misspelt fields', async () => {
  const objs = render();
  const ds = structuredClone(one(objs, 'DaemonSet'));
  ds.spec.template.spec.containers[0].volumeMounts[1].mountPropogation = 'Bidirectional';
  await assert.rejects(validateAll([ds]), /volumeMounts\[1\]\.mountPropogation/);
  const bad = structuredClone(one(objs, 'DaemonSet'));
  bad.spec.template.spec.containers[0].securityContext.privileged = 'yes';
  await assert.rejects(validateAll([bad]), /privileged must be boolean/);
  await assert.rejects(validateAll([{ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }]), /neither a Kubernetes kind/);
});

test('bad values are rejected with a message naming the value', () => {
  const cases = [
    [['storageClasses.s3.enabled=true'], /\/storageClasses\/s3\/bucket/],
    [['storageClasses.rpc.enabled=true'], /\/storageClasses\/rpc\/endpoint/],
    [['storageClasses.rpc.enabled=true', 'storageClasses.rpc.endpoint=http://x:1'], /\/storageClasses\/rpc\/endpoint.*does not match/],
    [['node.stateDir=var/lib/ublk'], /\/node\/stateDir/],
    [['node.s3CacheDir=/var/../tmp'], /\/node\/s3CacheDir/],
    [['kubeletDir=relative'], /\/kubeletDir/],
    [['driverName=-bad-'], /\/driverName/],
    [['logging.level=verbose'], /\/logging\/level'?: value must be one of/],
    [['storageClasses.file.fsType=btrfs'], /\/storageClasses\/file\/fsType'?: value must be one of 'ext4', 'xfs'/],
    [['storageClasses.s3.qos.maxIOPS=5'], /invalid propertyName 'maxIOPS'[\s\S]*maxIops/],
    [['storageClases.s3.enabled=true'], /additional properties 'storageClases' not allowed/],
    [['node.terminationGracePeriodSeconds=5'], /\/node\/terminationGracePeriodSeconds'?: minimum/],
    [['storageClasses.file.allowVolumeExpansion=true'], /\/nodeLocal\/resizer\/enabled/],
    [['blockstoreServer.enabled=true'], /\/blockstoreServer\/token\/value/],
    [['metrics.serviceMonitor.enabled=true'], /\/metrics\/enabled/],
    [['metrics.grafanaDashboard.enabled=true'], /\/metrics\/enabled/],
    [['sidecars.provisioner.image=csi-provisioner'], /\/sidecars\/provisioner\/image/],
    [['csiDriver.volumeLifecycleModes={Ephemeral}'], /\/csiDriver\/volumeLifecycleModes/],
  ];
  for (const [sets, expected] of cases) {
    const stderr = renderFails(sets);
    assert.match(stderr, /values don't meet the specifications of the schema/, `${sets}: not a schema error:\n${stderr}`);
    assert.match(stderr, expected, `${sets}: unclear message:\n${stderr}`);
  }
});
