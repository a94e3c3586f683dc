"""Training the booster and saving it with the attributes the Node side reads."""
import hashlib
import os
import time

import numpy as np
import xgboost as xgb

OBJECTIVES = ('binary:logistic', 'binary:logitraw', 'binary:hinge')
PROGRESS_EVERY = 100
PROGRESS_SAMPLE = 50000


def train(ds, params, log):
    """Fits an XGBClassifier on the training rows. params: learning_rate, n_estimators, max_depth,
    objective, scale_pos_weight, nthread, seed."""
    model = xgb.XGBClassifier(
        learning_rate=params['learning_rate'], n_estimators=params['n_estimators'],
        max_depth=params['max_depth'], objective=params['objective'],
        scale_pos_weight=params['scale_pos_weight'],
        # hist with a fixed seed and thread count builds the same trees on every run.
        tree_method='hist', n_jobs=params['nthread'], random_state=params['seed'],
        eval_metric='logloss', callbacks=[_Progress(params['n_estimators'], log)])
    X, y = ds.X[ds.train], ds.y[ds.train]
    log('training %d trees on %d transactions (%d frauds)' % (params['n_estimators'], len(y), y.sum()))
    # The logloss shown is only progress, so an evenly spaced sample of the training rows is enough
    # (evaluating a million rows every round costs a third of the training time); the held-out rows
    # stay unseen until the end.
    every = max(1, len(y) // PROGRESS_SAMPLE)
    model.fit(X, y, eval_set=[(X[::every], y[::every])], verbose=False)
    booster = model.get_booster()
    booster.feature_names = ds.feature_names
    return booster


class _Progress(xgb.callback.TrainingCallback):
    def __init__(self, rounds, log):
        super().__init__()
        self.rounds, self.log, self.start = rounds, log, time.monotonic()

    def after_iteration(self, model, epoch, evals_log):
        done = epoch + 1
        if done % PROGRESS_EVERY == 0 or done == self.rounds:
            loss = evals_log['validation_0']['logloss'][-1]
            self.log('training: tree %d/%d, logloss %.5f on a sample of the training rows (%.1f s)'
                     % (done, self.rounds, loss, time.monotonic() - self.start))
        return False


def finish(booster, ds, threshold, version_prefix, seed):
    """Sets the attributes the Node side reads; returns the model version. The version hashes the
    trained booster, so it changes exactly when the data or the parameters do, and never by date."""
    # The sklearn wrapper leaves best_iteration and best_ntree_limit, meaningless without early
    # stopping; Node should find only the attributes below.
    for leftover in booster.attributes():
        booster.set_attr(**{leftover: None})
    digest = hashlib.sha256(bytes(booster.save_raw('ubj'))).hexdigest()[:12]
    version = '%s-s%d-%s' % (version_prefix, seed, digest)
    booster.set_attr(threshold=repr(float(threshold)), feature_names=','.join(ds.feature_names),
                     model_version=version, data_seed=str(seed), xgboost_version=xgb.__version__)
    return version


def save(booster, out):
    """The same booster in both formats the native addon loads (libxgboost 3.1 and later dropped the
    legacy binary format; scripts/convert_model.py turns old binary models into UBJSON)."""
    for name in ('model.ubj', 'model.json'):
        booster.save_model(os.path.join(out, name))


def dmatrix(X, names):
    return xgb.DMatrix(X, missing=np.nan, feature_names=names)


def predict(booster, X, names, **kwargs):
    return booster.predict(dmatrix(X, names), **kwargs)


def importance(booster, names):
    """Total gain per feature (0 for a feature no tree splits on)."""
    gain = booster.get_score(importance_type='total_gain')
    return {name: float(gain.get(name, 0.0)) for name in names}
