"""The files the Node side reads without Python: test vectors, the replay set and the model card."""
import gzip
import json
import os

import numpy as np

from . import model

VECTOR_ROWS = 4000
FRAUD_SHARE_OF_VECTORS = 0.25  # frauds are rare; enough of them put scores across the whole range
MISSING_SHARE = 0.05           # rows given NaN features so parity tests cover missing values
MIN_MISSING_ROWS = 100
CONTRIBUTION_ROWS = 200


def write_test_vectors(out, ds, booster, version, threshold, seed):
    """Held-out rows, some with NaNs, and what Python's xgboost predicts for them, as little-endian
    float32 files plus index.json."""
    # Its own stream of random numbers, so that choosing vectors never shifts the simulated data.
    rng = np.random.default_rng([seed, 1])
    test = ds.test
    n = min(VECTOR_ROWS, len(test))
    frauds, genuine = test[ds.y[test] == 1], test[ds.y[test] == 0]
    n_fraud = min(len(frauds), int(n * FRAUD_SHARE_OF_VECTORS))
    rows = np.sort(np.concatenate([rng.choice(frauds, n_fraud, replace=False),
                                   rng.choice(genuine, n - n_fraud, replace=False)]))
    X = ds.X[rows].copy()
    n_missing = min(n, max(MIN_MISSING_ROWS, round(n * MISSING_SHARE)))
    missing_rows = rng.choice(n, n_missing, replace=False)
    for r in missing_rows[:-1]:
        X[r, rng.choice(X.shape[1], rng.integers(1, 4), replace=False)] = np.nan
    X[missing_rows[-1], :] = np.nan  # one row with nothing known at all

    names = ds.feature_names
    probabilities = model.predict(booster, X, names)
    head = X[:CONTRIBUTION_ROWS]
    exact = model.predict(booster, head, names, pred_contribs=True)
    approx = model.predict(booster, head, names, pred_contribs=True, approx_contribs=True)

    folder = os.path.join(out, 'test-vectors')
    os.makedirs(folder, exist_ok=True)
    files = {'features.f32': X, 'probabilities.f32': probabilities,
             'contributions-exact.f32': exact, 'contributions-approx.f32': approx}
    for name, values in files.items():
        np.ascontiguousarray(values, dtype='<f4').tofile(os.path.join(folder, name))
    index = {'rows': int(n), 'numFeatures': int(X.shape[1]), 'featureNames': names,
             'features': 'features.f32', 'probabilities': 'probabilities.f32',
             'missingRows': int(np.isnan(X).any(axis=1).sum()), 'threshold': float(threshold),
             'modelVersion': version,
             'contributions': {'rows': int(len(head)), 'file': 'contributions-exact.f32',
                               'approxFile': 'contributions-approx.f32'},
             'recordIDs': [record_name(i) for i in ds.record_id[rows]],
             'labels': ds.y[rows].astype(int).tolist()}
    _write_json(os.path.join(folder, 'index.json'), index)
    return {'dir': 'test-vectors', 'rows': index['rows'], 'missingRows': index['missingRows'],
            'frauds': int(ds.y[rows].sum()), 'contributionRows': len(head)}


def write_replay(out, ds, max_rows):
    """Held-out transactions in event-time order, gzipped NDJSON. Features are float32 values printed
    as doubles, so Math.fround in Node gives back the very bits the model sees."""
    rows = ds.test[:max_rows]
    values = ds.X[rows].astype(np.float64).tolist()
    lines = []
    for rid, ms, label, feats in zip(ds.record_id[rows].tolist(), ds.event_ms[rows].tolist(),
                                     ds.y[rows].tolist(), values):
        numbers = ','.join('null' if v != v else repr(v) for v in feats)
        lines.append('{"recordID":"%s","eventTimeMs":%d,"label":%d,"features":[%s]}\n'
                     % (record_name(rid), ms, label, numbers))
    path = os.path.join(out, 'replay.ndjson.gz')
    # mtime=0 and no file name in the header: the same data gives the same bytes.
    with open(path, 'wb') as raw, gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0) as gz:
        gz.write(''.join(lines).encode('ascii'))
    return {'file': 'replay.ndjson.gz', 'rows': int(len(rows)), 'heldOutRows': int(len(ds.test)),
            'complete': bool(len(rows) == len(ds.test)), 'frauds': int(ds.y[rows].sum()),
            'order': 'event time', 'fromMs': int(ds.event_ms[rows[0]]), 'toMs': int(ds.event_ms[rows[-1]])}


def record_name(i):
    return 'tx-%07d' % i


def write_card(out, card):
    _write_json(os.path.join(out, 'model-card.json'), card)


def _write_json(path, value):
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')
