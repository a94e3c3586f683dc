#!/usr/bin/env node
// Validates Kubernetes manifests offline against the API schemas that kubernetes-models (the
// Kubernetes API, generated from its OpenAPI spec) and @kubernetes-models/prometheus-operator (the
// ServiceMonitor CRD) compile, at the versions package-lock.json pins. No cluster is needed.
// Prints one JSON line per object: {file, kind, name, errors}; exits 1 when any has errors.
// Usage: node scripts/check-manifests.mjs FILE.yaml...
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const KINDS = {
  'v1/ConfigMap': ['kubernetes-models/v1', 'ConfigMap'],
  'v1/Secret': ['kubernetes-models/v1', 'Secret'],
  'v1/Service': ['kubernetes-models/v1', 'Service'],
  'apps/v1/StatefulSet': ['kubernetes-models/apps/v1', 'StatefulSet'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1', 'Deployment'],
  'policy/v1/PodDisruptionBudget': ['kubernetes-models/policy/v1', 'PodDisruptionBudget'],
  'monitoring.coreos.com/v1/ServiceMonitor': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'ServiceMonitor'],
  'monitoring.coreos.com/v1/PrometheusRule': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'PrometheusRule'],
};

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) {
      failed = true;
      console.log(JSON.stringify({ file, kind: null, name: null, errors: doc.errors.map((e) => e.message) }));
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = obj.metadata?.name ?? null;
    const known = KINDS[key];
    let errors = [];
    if (!known) {
      errors = [`no schema for ${key}`];
    } else {
      const Model = (await import(known[0]))[known[1]];
      try {
        new Model(obj).validate();
      } catch (err) {
        errors = String(err.message).split(', ').map((e) => e.trim());
      }
    }
    if (errors.length > 0) failed = true;
    console.log(JSON.stringify({ file, kind: obj.kind, name, errors }));
  }
}
process.exit(failed ? 1 : 0);
