/**
 * The files under deploy/: the Prometheus alerting rules (promtool's own rule tests), the Grafana
 * dashboard (every query parsed as PromQL, every metric one the processor exports), the systemd unit
 * (systemd-analyze verify) and the Kubernetes manifests (the API schema, offline), each also held to
 * what the README's "Running in production" promises of it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { OPTIONS, parseConfig } from '../lib/config';
import { ProcessorMetrics } from '../lib/metrics';

const ROOT = path.join(__dirname, '..');
const DEPLOY = path.join(ROOT, 'deploy');
const RULES = path.join(DEPLOY, 'prometheus', 'xgb-stream.rules.yml');
const RULE_TESTS = path.join(DEPLOY, 'prometheus', 'xgb-stream.rules.test.yml');

/** Metric names a query reads: the identifiers of its vector selectors. */
function metricNames(expr: string): string[] {
  const tree = parser.parse(expr);
  const names: string[] = [];
  const errors: number[] = [];
  tree.iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'VectorSelector') {
        const id = node.node.getChild('Identifier');
        if (id) names.push(expr.slice(id.from, id.to));
      }
    },
  });
  if (errors.length > 0) throw new Error(`not PromQL at offset ${errors[0]}: ${expr}`);
  return names;
}

/** Every series name the processor's registry exports: histograms with their _bucket, _sum and _count. */
async function exportedSeries(): Promise<Set<string>> {
  const metrics = await new ProcessorMetrics().registry.getMetricsAsJSON();
  return new Set(metrics.flatMap((m) => (String(m.type) === 'histogram'
    ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name])));
}

interface AlertRule { alert: string; expr: string; for?: string; labels: Record<string, string> }

describe('Prometheus alerting rules', () => {
  const rules = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: AlertRule[] }> })
    .groups.flatMap((g) => g.rules);
  const tests = (parseYaml(readFileSync(RULE_TESTS, 'utf8')) as {
    tests: Array<{ name: string; alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  }).tests;

  it('alert on what an operator must know', () => {
    expect(rules.map((r) => r.alert)).toEqual([
      'XgbStreamDown', 'XgbStreamNotReady', 'XgbStreamBrokersUnreachable', 'XgbStreamConsumerLagGrowing',
      'XgbStreamDeadLetterRate', 'XgbStreamDeliveryFailures', 'XgbStreamShadowDeliveryFailures',
      'XgbStreamCommitFailures', 'XgbStreamModelReloadRejected', 'XgbStreamShadowDisagreement', 'XgbStreamEventLoopLag',
    ]);
    for (const r of rules) expect(['critical', 'warning', 'info']).toContain(r.labels.severity);
  });

  it("read only metrics the processor exports (and Prometheus's own up)", async () => {
    const exported = await exportedSeries();
    exported.add('up');
    const used = new Set(rules.flatMap((r) => metricNames(r.expr)));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    expect(used).toEqual(new Set([
      'up', 'xgb_stream_ready', 'xgb_stream_brokers_up', 'xgb_stream_consumer_lag', 'xgb_stream_dead_letters_total',
      'xgb_stream_records_in_total', 'xgb_stream_delivery_failures_total', 'xgb_stream_shadow_delivery_failures_total',
      'xgb_stream_commit_failures_total', 'xgb_stream_model_reloads_total', 'xgb_stream_shadow_agreements_total',
      'xgb_stream_shadow_records_total', 'xgb_stream_shadow_active', 'nodejs_eventloop_lag_p99_seconds',
    ]));
  });

  it('each have a test where they fire and one where a healthy processor keeps them silent', () => {
    const healthy = tests.find((t) => t.name === 'a healthy processor fires nothing')!;
    for (const { alert } of rules) {
      expect(healthy.alert_rule_test.filter((c) => c.alertname === alert && c.exp_alerts.length === 0).length)
        .toBeGreaterThan(0);
      expect(tests.filter((t) => t !== healthy).flatMap((t) => t.alert_rule_test)
        .filter((c) => c.alertname === alert && c.exp_alerts.length > 0).length).toBeGreaterThan(0);
    }
  });

  // The first run builds promtool from the prometheus Go module (about 7 minutes on 2 cores); later
  // runs find it in ~/.cache/xgb-stream/promtool.
  it('pass promtool check rules and promtool test rules', () => {
    const promtool = execFileSync('bash', [path.join(ROOT, 'scripts', 'promtool.sh')], { encoding: 'utf8' }).trim();
    const check = spawnSync(promtool, ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(check.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(check.status).toBe(0);
    const test = spawnSync(promtool, ['test', 'rules', RULE_TESTS], { encoding: 'utf8', cwd: path.dirname(RULE_TESTS) });
    expect(test.stdout + test.stderr).toBe(`Processing test file: ${RULE_TESTS}\n  SUCCESS\n\n`);
    expect(test.status).toBe(0);
  }, 20 * 60_000);
});

interface Panel {
  type: string;
  title: string;
  id: number;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr: string; refId: string }>;
}

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(path.join(DEPLOY, 'grafana', 'xgb-stream.json'), 'utf8')) as {
    panels: Panel[]; templating: { list: Array<{ name: string }> };
  };
  const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
  // Grafana's variables, as it substitutes them before sending the query.
  const substitute = (expr: string): string => expr.replace(/\$__rate_interval/g, '2m')
    .replace(/\$instance/g, '.+').replace(/\$job/g, 'xgb-stream').replace(/\$suspicious_topic/g, 'suspicious-events');

  it('defines the variables its queries use, and no other', () => {
    const used = new Set(queries.flatMap((q) => [...q.expr.matchAll(/\$(?!__)(\w+)/g)].map((m) => m[1])));
    expect(dashboard.templating.list.map((v) => v.name).sort()).toEqual(['datasource', ...used].sort());
  });

  it("has queries that all parse as PromQL and read only metrics in the processor's registry", async () => {
    const exported = await exportedSeries();
    expect(queries.length).toBeGreaterThanOrEqual(30);
    for (const q of queries) {
      const names = metricNames(substitute(q.expr));
      expect({ panel: q.panel, names: names.length > 0 }).toEqual({ panel: q.panel, names: true });
      expect({ panel: q.panel, unknown: names.filter((n) => !exported.has(n)) }).toEqual({ panel: q.panel, unknown: [] });
    }
  });

  it('shows throughput, lag, latency, batches, inference, dead letters, alerts, the model, the shadow and the process', () => {
    const used = (title: string): string[] => dashboard.panels.filter((p) => p.title === title)
      .flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(substitute(t.expr))));
    expect(used('Records in (input topic) and out, per topic')).toEqual(['xgb_stream_records_in_total', 'xgb_stream_records_out_total']);
    expect(used('Consumer lag per partition')).toEqual(['xgb_stream_consumer_lag']);
    expect(used('End-to-end latency')).toEqual(Array(3).fill('xgb_stream_end_to_end_latency_seconds_bucket'));
    expect(used('Batch size')).toEqual(['xgb_stream_batch_size_sum', 'xgb_stream_batch_size_count', 'xgb_stream_batch_size_bucket']);
    expect(used('Inference time per batch')).toEqual(Array(2).fill('xgb_stream_inference_seconds_bucket'));
    expect(used('Dead letters by reason')).toEqual(['xgb_stream_dead_letters_total', 'xgb_stream_records_skipped_total']);
    expect(used('Alerts rate')).toEqual(['xgb_stream_records_out_total', 'xgb_stream_records_out_total', 'xgb_stream_records_in_total']);
    expect(used('Model version')).toEqual(['xgb_stream_model_info']);
    expect(used('Model reloads')).toEqual(['xgb_stream_model_reloads_total', 'xgb_stream_model_reload_rejections_total']);
    expect(used('Shadow agreement')).toEqual(['xgb_stream_shadow_agreements_total', 'xgb_stream_shadow_records_total',
      'xgb_stream_shadow_agreement_ratio']);
    expect(used('CPU')).toEqual(['process_cpu_seconds_total']);
    expect(used('Resident memory')).toEqual(['process_resident_memory_bytes']);
    expect(used('Event-loop lag')).toEqual(['nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_p50_seconds']);
  });

  it('lays its panels out on the 24-column grid without overlaps, with unique ids', () => {
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`)).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  });
});

describe('systemd unit', () => {
  const unit = readFileSync(path.join(DEPLOY, 'systemd', 'xgb-stream@.service'), 'utf8');
  /** The values of a key, in order (repeatable keys such as EnvironmentFile). */
  const values = (key: string): string[] => unit.split('\n').filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));

  it('restarts on failure but not on a bad setting, and gives the drain time to finish', () => {
    expect(values('Restart')).toEqual(['on-failure']);
    expect(values('RestartPreventExitStatus')).toEqual(['2']);
    expect(values('KillSignal')).toEqual(['SIGTERM']);
    // --shutdown-timeout-ms defaults to 30 s.
    expect(OPTIONS.find((o) => o.flag === '--shutdown-timeout-ms')!.def).toBe('30000');
    expect(values('TimeoutStopSec')).toEqual(['45s']);
  });

  it('takes --instance-id from the unit instance and the Kafka properties from a root-only file', () => {
    expect(values('ExecStart')).toEqual(
      ['/usr/bin/node /opt/xgb-stream/dist/cli.js --instance-id %i --kafka-config %d/kafka.properties']);
    expect(values('LoadCredential')).toEqual(['kafka.properties:/etc/xgb-stream/kafka.properties']);
    expect(values('EnvironmentFile')).toEqual(['/etc/xgb-stream/xgb-stream.env', '-/etc/xgb-stream/%i.env']);
    expect(values('DynamicUser')).toEqual(['yes']);
  });

  it('names only settings the processor reads in its example environment file', () => {
    const env = Object.fromEntries(readFileSync(path.join(DEPLOY, 'systemd', 'xgb-stream.env'), 'utf8').split('\n')
      .filter((l) => l && !l.startsWith('#')).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    const known = new Set(OPTIONS.map((o) => o.env));
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    const r = parseConfig([], env);
    expect(r.kind).toBe('run');
  });

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  (analyze.status === 0 ? it : it.skip)('passes systemd-analyze verify with nothing to say', () => {
    // verify wants an instance name: a symlink to the template, as systemctl enable makes.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-unit-'));
    const template = path.join(dir, 'xgb-stream@.service');
    symlinkSync(path.join(DEPLOY, 'systemd', 'xgb-stream@.service'), template);
    symlinkSync(template, path.join(dir, 'xgb-stream@scorer-a.service'));
    const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'xgb-stream@scorer-a.service')], { encoding: 'utf8' });
    expect({ status: r.status, output: r.stdout + r.stderr }).toEqual({ status: 0, output: '' });
  });
});

describe('the example Kafka properties file', () => {
  it('is one librdkafka takes, with its password kept as a secret', () => {
    const file = path.join(DEPLOY, 'kafka.properties.example');
    const r = parseConfig(['--kafka-config', file], {});
    if (r.kind !== 'run') throw new Error('expected a run configuration');
    expect(r.config.kafkaProperties).toMatchObject({
      'security.protocol': 'SASL_SSL', 'sasl.mechanisms': 'SCRAM-SHA-512', 'sasl.password': 'change-me',
      'session.timeout.ms': '120000',
    });
    expect(r.config.secrets).toEqual(['change-me']);
  });
});

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec: any;
  data?: Record<string, string>;
}

describe('Kubernetes manifests', () => {
  const file = path.join(DEPLOY, 'kubernetes', 'xgb-stream.yaml');
  const objects = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as K8sObject);
  const get = (kind: string): K8sObject => objects.find((o) => o.kind === kind)!;

  it('validate against the Kubernetes API schema (and the ServiceMonitor CRD), offline', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'check-manifests.mjs'), file], { encoding: 'utf8' });
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual(
      ['ConfigMap', 'Service', 'StatefulSet', 'PodDisruptionBudget', 'ServiceMonitor'].map((kind) => ({
        file, kind, name: 'xgb-stream', errors: [],
      })));
    expect(r.status).toBe(0);
  });

  it('fail validation when a field is wrong: the check is real', () => {
    const bad = path.join(mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-k8s-')), 'bad.yaml');
    writeFileSync(bad, readFileSync(file, 'utf8')
      .replace('podManagementPolicy: Parallel', 'podManagementPolicy: Paralel')
      .replace('containerPort: 9464', 'containerPort: "9464"'));
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'check-manifests.mjs'), bad], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    const statefulSet = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((o) => o.kind === 'StatefulSet');
    expect(statefulSet.errors).toEqual([
      'data/spec/podManagementPolicy must be equal to one of the allowed values',
      'data/spec/template/spec/containers/0/ports/0/containerPort must be integer',
    ]);
  });

  it('run a StatefulSet with static membership: --instance-id from the pod name, pods managed in parallel', () => {
    const sts = get('StatefulSet');
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    const container = sts.spec.template.spec.containers[0];
    expect(container.args).toContain('--instance-id=$(POD_NAME)');
    expect(container.env).toContainEqual({ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
  });

  it('keep the session timeout longer than a pod restart, graceful stop included', () => {
    const sts = get('StatefulSet');
    const env = get('ConfigMap').data!;
    const r = parseConfig([], env);
    if (r.kind !== 'run') throw new Error('expected a run configuration');
    const sessionMs = Number(r.config.kafkaProperties['session.timeout.ms']);
    const graceMs = sts.spec.template.spec.terminationGracePeriodSeconds * 1000;
    expect(graceMs).toBeGreaterThan(r.config.shutdownTimeoutMs);
    // The graceful stop, then a minute to reschedule, pull and start.
    expect(sessionMs).toBeGreaterThanOrEqual(graceMs + 60_000);
    expect(Object.keys(env).filter((k) => !OPTIONS.some((o) => o.env === k) && k !== 'KAFKA_PROPERTIES')).toEqual([]);
  });

  it('read the Kafka properties from the Secret, through an owner-only copy', () => {
    const pod = get('StatefulSet').spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: 'kafka-secret', secret: { secretName: 'xgb-stream-kafka', defaultMode: 0o400 } });
    const init = pod.initContainers[0];
    expect(init.command).toEqual(['sh', '-c',
      'umask 077 && cp /etc/xgb-stream-secret/kafka.properties /run/xgb-stream/kafka.properties']);
    expect(init.volumeMounts).toContainEqual({ name: 'kafka-secret', mountPath: '/etc/xgb-stream-secret', readOnly: true });
    expect(init.volumeMounts).toContainEqual({ name: 'kafka-config', mountPath: '/run/xgb-stream' });
    const container = pod.containers[0];
    expect(container.args).toContain('--kafka-config=/run/xgb-stream/kafka.properties');
    expect(container.volumeMounts).toEqual([{ name: 'kafka-config', mountPath: '/run/xgb-stream', readOnly: true }]);
    expect(pod.volumes).toContainEqual({ name: 'kafka-config', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
  });

  it('probe liveness on /healthz and readiness on /readyz, on the metrics port', () => {
    const container = get('StatefulSet').spec.template.spec.containers[0];
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(container.ports).toEqual([{ name: 'metrics', containerPort: Number(get('ConfigMap').data!.METRICS_PORT) }]);
  });

  it('select the same pods from the Service, the PodDisruptionBudget and the ServiceMonitor', () => {
    const podLabels = get('StatefulSet').spec.template.metadata.labels;
    expect(get('StatefulSet').spec.selector.matchLabels).toEqual(podLabels);
    expect(get('Service').spec.selector).toEqual(podLabels);
    expect(get('PodDisruptionBudget').spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: podLabels } });
    expect(get('ServiceMonitor').spec.selector.matchLabels).toEqual(get('Service').metadata.labels);
    expect(get('ServiceMonitor').spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s' }]);
    expect(get('Service').spec.ports).toEqual([{ name: 'metrics', port: 9464, targetPort: 'metrics' }]);
    // The alerting rules' job label is the Service's name.
    expect(readFileSync(RULES, 'utf8')).toContain(`up{job="${get('Service').metadata.name}"}`);
  });
});
