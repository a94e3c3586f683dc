#!/usr/bin/env python3
"""Trains the version matrix's model with whatever xgboost this Python has, and writes what the tests
compare: the same small fraud-shaped model (binary:logistic, 10 features, 200 trees, 5 % missing
values) saved as JSON and UBJSON (and as legacy binary by releases that still write it), the rows it
is checked on, and this xgboost's own probabilities for them.

  python train_matrix_model.py --out DIR [--other-objectives]

DIR gets model.json, model.ubj, [model.bin], rows.f32 and probabilities.f32 (little-endian float32,
rows x 10 and rows), and info.json. --other-objectives adds objectives/<name>.json: models of the
same data trained with objectives that do not give a probability (multi:softmax, reg:squarederror,
binary:logitraw, rank:pairwise), which the Classifier must refuse.
"""
import argparse
import json
import os
import sys

import numpy as np
import xgboost as xgb

FEATURES = 10
TRAIN_ROWS = 4000
CHECK_ROWS = 1000
MISSING = 0.05
SEED = 20261127


def data(rng, rows):
    """Rows with a nonlinear fraud-like label, and 5 % of the values missing (NaN)."""
    X = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    X[:, 0] = np.exp(X[:, 0] * 1.2 + 3).astype(np.float32)  # an amount-like, skewed feature
    logit = 0.004 * X[:, 0] - 2.5 + 1.4 * X[:, 1] * (X[:, 2] > 0) + 0.8 * X[:, 3] ** 2 - 0.6 * X[:, 4]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    X[rng.random(X.shape) < MISSING] = np.nan
    return X, y


def legacy_binary_supported():
    major, minor = (int(p) for p in xgb.__version__.split('.')[:2])
    return (major, minor) < (3, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--other-objectives', action='store_true')
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(SEED)
    X, y = data(rng, TRAIN_ROWS)
    X_check, _ = data(rng, CHECK_ROWS)
    params = {'objective': 'binary:logistic', 'max_depth': 4, 'eta': 0.1, 'tree_method': 'hist',
              'seed': SEED, 'nthread': 1, 'base_score': 0.15}
    train = xgb.DMatrix(X, label=y, missing=np.nan)
    booster = xgb.train(params, train, num_boost_round=200)
    files = ['model.json', 'model.ubj']
    for name in files:
        booster.save_model(os.path.join(args.out, name))
    if legacy_binary_supported():
        # 2.1 and 3.0 write the legacy format only for the extension "deprecated"; 1.7 for any other.
        legacy = os.path.join(args.out, 'model.deprecated')
        booster.save_model(legacy)
        os.replace(legacy, os.path.join(args.out, 'model.bin'))
        files.append('model.bin')
    probabilities = booster.predict(xgb.DMatrix(X_check, missing=np.nan)).astype('<f4')
    X_check.astype('<f4').tofile(os.path.join(args.out, 'rows.f32'))
    probabilities.tofile(os.path.join(args.out, 'probabilities.f32'))

    objectives = {}
    if args.other_objectives:
        os.makedirs(os.path.join(args.out, 'objectives'), exist_ok=True)
        others = {
            'multi:softmax': ({'num_class': 3}, (y + (X[:, 5] > 1)).clip(0, 2)),
            'reg:squarederror': ({}, np.nan_to_num(X[:, 6]) + y),
            'binary:logitraw': ({}, y),
            'rank:pairwise': ({}, y),
        }
        for objective, (extra, label) in others.items():
            dtrain = xgb.DMatrix(X, label=np.nan_to_num(label), missing=np.nan)
            if objective.startswith('rank:'):
                dtrain.set_group([TRAIN_ROWS // 40] * 40)
            other = xgb.train({'objective': objective, 'max_depth': 3, 'seed': SEED, 'nthread': 1, **extra},
                              dtrain, num_boost_round=20)
            name = objective.replace(':', '-') + '.json'
            other.save_model(os.path.join(args.out, 'objectives', name))
            objectives[objective] = 'objectives/' + name

    info = {'xgboostVersion': xgb.__version__, 'features': FEATURES, 'rows': CHECK_ROWS, 'trees': 200,
            'files': files, 'objectives': objectives}
    with open(os.path.join(args.out, 'info.json'), 'w') as f:
        json.dump(info, f, indent=2)
    print('xgboost %s: wrote %s (%s)' % (xgb.__version__, args.out, ', '.join(files)), file=sys.stderr)


if __name__ == '__main__':
    main()
