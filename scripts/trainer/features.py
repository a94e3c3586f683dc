"""The 10 features the model scores, computed from raw transactions.

These are the handbook's baseline features (chapter 3.4) cut down to ten: the amount, two calendar
flags, how the customer has been spending, and how risky the terminal has recently been. Every window
looks only backwards from the transaction, so the same values can be computed in the stream.
"""
import numpy as np

from .simulator import SECONDS_PER_DAY

# Simulated day 0 is this Monday (UTC); it sets the weekday flags and the replay's event times.
START_EPOCH_MS = 1711929600000  # 2024-04-01T00:00:00Z
START_WEEKDAY = 0               # Monday

# Fraud labels reach the bank about a week after the transaction (the handbook's "delay period"), so a
# terminal's risk can only count frauds that are at least this old.
LABEL_DELAY_DAYS = 7
LONGEST_WINDOW_DAYS = 30

FEATURES = [
    ('tx_amount', 'transaction amount'),
    ('tx_during_weekend', '1 if the transaction is on a Saturday or Sunday, else 0'),
    ('tx_during_night', '1 if the transaction is between 00:00 and 06:59, else 0'),
    ('customer_nb_tx_1d', "customer's number of transactions in the last day, this one included"),
    ('customer_avg_amount_1d', "customer's mean amount over the last day, this transaction included"),
    ('customer_avg_amount_7d', "customer's mean amount over the last 7 days, this transaction included"),
    ('customer_avg_amount_30d', "customer's mean amount over the last 30 days, this transaction included"),
    ('terminal_risk_1d', "share of the terminal's transactions that were frauds, over 1 day ending "
                         "%d days ago (labels arrive with that delay)" % LABEL_DELAY_DAYS),
    ('terminal_risk_7d', "share of the terminal's transactions that were frauds, over 7 days ending "
                         "%d days ago" % LABEL_DELAY_DAYS),
    ('terminal_risk_30d', "share of the terminal's transactions that were frauds, over 30 days ending "
                          "%d days ago" % LABEL_DELAY_DAYS),
]
NAMES = [name for name, _ in FEATURES]


def build(tx):
    """The n x 10 float64 feature matrix of simulated transactions (columns in NAMES order)."""
    seconds = tx.seconds
    day = seconds // SECONDS_PER_DAY
    time_of_day = seconds % SECONDS_PER_DAY
    weekend = ((day + START_WEEKDAY) % 7 >= 5).astype(np.float64)
    night = (time_of_day < 7 * 3600).astype(np.float64)

    customer = _Windows(tx.customer, seconds)
    count_1d, _ = customer.sums(1, 0, None)
    columns = [tx.amount, weekend, night, count_1d]
    # Sums in whole cents are exact, so a mean does not pick up rounding from a long prefix sum.
    cents = np.rint(tx.amount * 100).astype(np.int64)
    for days in (1, 7, 30):
        count, spent = customer.sums(days, 0, cents)
        columns.append(spent / count / 100)  # count >= 1: the window holds the transaction itself

    terminal = _Windows(tx.terminal, seconds)
    fraud = tx.fraud.astype(np.int64)
    for days in (1, 7, 30):
        count, frauds = terminal.sums(days, LABEL_DELAY_DAYS, fraud)
        # A terminal with no labelled transactions in the window is taken as safe, as in the handbook.
        columns.append(np.divide(frauds, count, out=np.zeros_like(frauds), where=count > 0))
    return np.column_stack(columns)


class _Windows:
    """Sums over each transaction's own past: same owner (customer or terminal), time in a window.

    Transactions are ordered by (owner, time) and keyed owner * span + time, so a window is a key
    range found by binary search and a sum is a difference of prefix sums: O(n log n), no loops.
    """

    def __init__(self, owner, seconds):
        self.order = np.lexsort((seconds, owner))
        span = int(seconds.max()) + (LONGEST_WINDOW_DAYS + LABEL_DELAY_DAYS) * SECONDS_PER_DAY + 1
        self.keys = owner[self.order].astype(np.int64) * span + seconds[self.order]
        self.position = np.empty(len(self.order), np.int64)
        self.position[self.order] = np.arange(len(self.order))

    def sums(self, days, delay_days, values):
        """Per transaction: (count, sum of integer values) over the owner's transactions with times in
        (t - delay - days, t - delay]; with no delay, up to and including the transaction itself
        (not later ones that share its second)."""
        keys = self.keys
        lower = np.searchsorted(keys, keys - (delay_days + days) * SECONDS_PER_DAY, 'right')
        if delay_days == 0:
            upper = np.arange(1, len(keys) + 1)
        else:
            upper = np.searchsorted(keys, keys - delay_days * SECONDS_PER_DAY, 'right')
        count = (upper - lower).astype(np.float64)
        total = None
        if values is not None:
            prefix = np.concatenate([[0], np.cumsum(values[self.order])])
            total = (prefix[upper] - prefix[lower]).astype(np.float64)
        return count[self.position], (None if total is None else total[self.position])
