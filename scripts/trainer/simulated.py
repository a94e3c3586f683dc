"""The default data set: simulated transactions, their features, and the split the handbook uses
(features warm up, a training period, a week's gap while labels arrive, then the held-out period)."""
import numpy as np

from . import features, simulator
from .dataset import Dataset, InputError, split_by_time

# The longest customer window is 30 days: before that the spending features are not yet comparable.
BURN_IN_DAYS = features.LONGEST_WINDOW_DAYS
# Labels arrive a week late, so a model put into service on day D has labels only up to D - 7.
GAP_DAYS = features.LABEL_DELAY_DAYS
TEST_SHARE = 0.25  # of the days after the burn-in
DAY_MS = simulator.SECONDS_PER_DAY * 1000


def _test_from(n_days):
    return n_days - max(1, round((n_days - BURN_IN_DAYS) * TEST_SHARE))


def layout(n_days):
    """(train_from, test_from) days; raises InputError when n_days leaves no training day."""
    test_from = _test_from(n_days)
    if test_from - GAP_DAYS <= BURN_IN_DAYS:
        shortest = next(d for d in range(n_days, 10 * (BURN_IN_DAYS + GAP_DAYS))
                        if _test_from(d) - GAP_DAYS > BURN_IN_DAYS)
        raise InputError('--days %d is too short: the first %d days warm up the features and %d more '
                         'separate training from the held-out days; use at least %d'
                         % (n_days, BURN_IN_DAYS, GAP_DAYS, shortest))
    return BURN_IN_DAYS, test_from


def load(seed, n_customers, n_terminals, n_days, log):
    train_from, test_from = layout(n_days)
    tx = simulator.simulate(seed, n_customers, n_terminals, n_days, log)
    log('building features for %d transactions' % len(tx.seconds))
    X = features.build(tx)
    summary = simulator.summary(tx)
    ds = Dataset(
        X=X.astype(np.float32), y=tx.fraud.copy(),
        event_ms=features.START_EPOCH_MS + tx.seconds * 1000,
        record_id=np.arange(len(tx.seconds), dtype=np.int64),
        features=list(features.FEATURES),
        data={
            'source': 'simulator',
            'description': 'Simulated card transactions after the transaction-data simulator of '
                           '"Reproducible Machine Learning for Credit Card Fraud Detection - Practical '
                           'Handbook" (Le Borgne, Bontempi et al., ULB): customers and terminals on a '
                           'grid, Poisson daily transactions at nearby terminals, and three fraud '
                           'scenarios.',
            'parameters': {'seed': seed, 'customers': n_customers, 'terminals': n_terminals,
                           'days': n_days, 'startDate': '2024-04-01', 'radius': simulator.RADIUS,
                           'fraudAmount': simulator.FRAUD_AMOUNT,
                           'terminalsCompromisedPerDay':
                               simulator.terminals_compromised_per_day(n_terminals),
                           'customersCompromisedPerDay':
                               simulator.customers_compromised_per_day(n_customers)},
            'counts': {'transactions': summary['transactions'], 'frauds': summary['frauds'],
                       'genuine': summary['transactions'] - summary['frauds'],
                       'compromisedTerminals': summary['compromisedTerminals'],
                       'compromisedCustomers': summary['compromisedCustomers'],
                       'customersWithTransactions': summary['customersWithTransactions']},
            'fraudRate': summary['fraudRate'],
            'scenarioCounts': summary['scenarioCounts'],
            'scenarios': {str(k): v for k, v in simulator.SCENARIOS.items()},
        })
    if not np.isfinite(ds.X).all():
        raise AssertionError('simulated features must be finite')  # a bug, not a user error
    start = features.START_EPOCH_MS
    split_by_time(ds, start + train_from * DAY_MS, start + (test_from - GAP_DAYS) * DAY_MS,
                  start + test_from * DAY_MS, start + n_days * DAY_MS,
                  {'burnInDays': BURN_IN_DAYS, 'gapDays': GAP_DAYS,
                   'trainDays': [train_from, test_from - GAP_DAYS], 'testDays': [test_from, n_days],
                   'note': 'days [0, %d) only warm up the windowed features; the %d days before the '
                           'held-out period are left out because their labels would not be known yet '
                           'when the model goes into service' % (train_from, GAP_DAYS)})
    return ds
