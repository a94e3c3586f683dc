"""What the trainer learns from, whatever the source: features, labels, event times, record ids, and
the split by time that keeps the future out of training."""
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np


class InputError(Exception):
    """A problem with the user's input (a path, a column, a size), reported as a usage error."""


@dataclass
class Dataset:
    X: np.ndarray           # float32, rows x 10, event-time order
    y: np.ndarray           # int8 labels, 1 = fraud
    event_ms: np.ndarray    # int64 event times, ms since the Unix epoch, non-decreasing
    record_id: np.ndarray   # int64, unique; the replay names it tx-0001234
    features: list         # [(name, description)] x 10, in column order
    data: dict              # the model card's "data" section
    train: np.ndarray = field(default=None)  # row indices
    test: np.ndarray = field(default=None)
    split: dict = field(default=None)        # the model card's "split" section

    @property
    def feature_names(self):
        return [name for name, _ in self.features]


def split_by_time(ds, train_from_ms, train_to_ms, test_from_ms, test_to_ms, notes):
    """Trains on [train_from, train_to), holds out [test_from, test_to): every held-out transaction comes
    after every training one, as it would for a model put into service."""
    t = ds.event_ms
    ds.train = np.flatnonzero((t >= train_from_ms) & (t < train_to_ms))
    ds.test = np.flatnonzero((t >= test_from_ms) & (t < test_to_ms))
    for name, rows in (('training', ds.train), ('held-out', ds.test)):
        if len(rows) == 0 or ds.y[rows].min() == ds.y[rows].max():
            raise InputError('the %s set needs both frauds and genuine transactions (it has %d rows, '
                             '%d frauds): use more data' % (name, len(rows), int(ds.y[rows].sum())))
    ds.split = {'method': 'by event time', **notes,
                'train': _part(ds, ds.train, train_from_ms, train_to_ms),
                'test': _part(ds, ds.test, test_from_ms, test_to_ms)}


def _part(ds, rows, from_ms, to_ms):
    return {'rows': int(len(rows)), 'frauds': int(ds.y[rows].sum()),
            'fromMs': int(from_ms), 'toMs': int(to_ms), 'from': iso(from_ms), 'to': iso(to_ms),
            'firstEventTimeMs': int(ds.event_ms[rows[0]]), 'lastEventTimeMs': int(ds.event_ms[rows[-1]])}


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace('+00:00', 'Z')
