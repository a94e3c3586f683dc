"""A deterministic simulator of card transactions and their frauds.

Modelled on the transaction-data simulator of "Reproducible Machine Learning for Credit Card Fraud
Detection - Practical Handbook" (Le Borgne, Bontempi et al., ULB), chapter 3.2: customers and terminals
on a 100 x 100 grid, each customer paying at terminals within a radius, a Poisson number of transactions
a day around midday, and the handbook's three fraud scenarios. Our own numpy code: every draw comes from
one seeded Generator, so a seed gives the same transactions on every machine.
"""
from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86400

# The handbook's parameters.
GRID = 100.0                      # customers and terminals live on a GRID x GRID square
RADIUS = 5.0                      # a customer pays at the terminals within this distance
MEAN_AMOUNT_RANGE = (5.0, 100.0)  # a customer's mean amount; the standard deviation is half of it
TX_PER_DAY_RANGE = (0.0, 4.0)     # a customer's mean number of transactions a day
TIME_OF_DAY_MEAN, TIME_OF_DAY_STD = SECONDS_PER_DAY / 2, 20000.0
FRAUD_AMOUNT = 220.0              # scenario 1: any amount above this is a fraud
TERMINAL_COMPROMISE_DAYS = 28     # scenario 2: a compromised terminal's transactions, for 28 days
CUSTOMER_COMPROMISE_DAYS = 14     # scenario 3: a third of a compromised customer's transactions...
CUSTOMER_FRAUD_SHARE = 1 / 3
CUSTOMER_FRAUD_AMOUNT_FACTOR = 5  # ...with amounts multiplied by five, for 14 days

SCENARIOS = {1: 'amount above %g' % FRAUD_AMOUNT,
             2: 'compromised terminal (all its transactions for %d days)' % TERMINAL_COMPROMISE_DAYS,
             3: 'compromised customer credentials (a third of the transactions for %d days, amounts x%d)'
                % (CUSTOMER_COMPROMISE_DAYS, CUSTOMER_FRAUD_AMOUNT_FACTOR)}


# The handbook compromises 2 of its 10,000 terminals and 3 of its 5,000 customers a day. We keep those
# rates per head rather than per day, so that a smaller population keeps the handbook's fraud rate
# (about 0.8 %) instead of drowning in fraud.
def terminals_compromised_per_day(n_terminals):
    return 2 * n_terminals / 10000


def customers_compromised_per_day(n_customers):
    return 3 * n_customers / 5000


@dataclass
class Transactions:
    """Simulated transactions in event-time order; the index is the transaction id."""
    seconds: np.ndarray    # int64, seconds since the start of day 0
    customer: np.ndarray   # int64
    terminal: np.ndarray   # int64
    amount: np.ndarray     # float64, rounded to cents
    fraud: np.ndarray      # int8, 0 or 1
    scenario: np.ndarray   # int8, 0 for genuine, else the fraud scenario (1, 2, 3)
    compromised_terminals: int
    compromised_customers: int

    @property
    def day(self) -> np.ndarray:
        return self.seconds // SECONDS_PER_DAY


def simulate(seed, n_customers, n_terminals, n_days, log=lambda message: None):
    """Simulates n_days of transactions; log receives progress lines."""
    rng = np.random.default_rng(seed)
    customer_xy = rng.uniform(0, GRID, (n_customers, 2))
    mean_amount = rng.uniform(*MEAN_AMOUNT_RANGE, n_customers)
    tx_per_day = rng.uniform(*TX_PER_DAY_RANGE, n_customers)
    terminal_xy = rng.uniform(0, GRID, (n_terminals, 2))
    offsets, nearby = _terminals_within_radius(customer_xy, terminal_xy)
    n_nearby = np.diff(offsets)

    days = []
    report_every = max(1, n_days // 10)
    for day in range(n_days):
        days.append(_one_day(rng, day, tx_per_day, mean_amount, offsets, nearby, n_nearby))
        if (day + 1) % report_every == 0 or day + 1 == n_days:
            log('simulating day %d/%d (%d transactions so far)'
                % (day + 1, n_days, sum(len(d[0]) for d in days)))
    seconds, customer, terminal, amount = (np.concatenate(column) for column in zip(*days))
    # A stable sort keeps same-second transactions in generation order, so ids are reproducible.
    order = np.argsort(seconds, kind='stable')
    tx = Transactions(seconds[order], customer[order], terminal[order], amount[order],
                      np.zeros(len(order), np.int8), np.zeros(len(order), np.int8), 0, 0)
    _add_frauds(rng, tx, n_customers, n_terminals, n_days)
    return tx


def _terminals_within_radius(customer_xy, terminal_xy, chunk=256):
    """For each customer, the terminals within RADIUS, as CSR offsets and indices."""
    counts, indices = [], []
    for start in range(0, len(customer_xy), chunk):
        block = customer_xy[start:start + chunk]
        d2 = ((block[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < RADIUS * RADIUS)
        counts.append(np.bincount(rows, minlength=len(block)))
        indices.append(cols)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return offsets, np.concatenate(indices).astype(np.int64)


def _one_day(rng, day, tx_per_day, mean_amount, offsets, nearby, n_nearby):
    counts = rng.poisson(tx_per_day)
    counts[n_nearby == 0] = 0  # as in the handbook, a customer with no terminal nearby does not pay
    customer = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    time_of_day = rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, len(customer))
    # The handbook drops, rather than redraws, times that fall outside the day.
    inside = (time_of_day > 0) & (time_of_day < SECONDS_PER_DAY)
    customer, time_of_day = customer[inside], time_of_day[inside]
    mean = mean_amount[customer]
    amount = rng.normal(mean, mean / 2)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    pick = (rng.random(len(customer)) * n_nearby[customer]).astype(np.int64)
    terminal = nearby[offsets[customer] + pick]
    seconds = day * SECONDS_PER_DAY + time_of_day.astype(np.int64)
    return seconds, customer, terminal, np.round(amount, 2)


def _compromised_today(day, rate):
    """How many to compromise on this day: the running total follows rate * days exactly."""
    return int(np.floor((day + 1) * rate) - np.floor(day * rate))


def _add_frauds(rng, tx, n_customers, n_terminals, n_days):
    """The handbook's scenarios, applied in its order: a later scenario relabels an earlier one's."""
    day = tx.day
    above = tx.amount > FRAUD_AMOUNT
    tx.fraud[above], tx.scenario[above] = 1, 1

    by_terminal = np.lexsort((tx.seconds, tx.terminal))
    by_customer = np.lexsort((tx.seconds, tx.customer))
    terminal_rate = terminals_compromised_per_day(n_terminals)
    customer_rate = customers_compromised_per_day(n_customers)
    for d in range(n_days):
        for t in rng.choice(n_terminals, _compromised_today(d, terminal_rate), replace=False):
            hit = _during(by_terminal, tx.terminal, day, t, d, TERMINAL_COMPROMISE_DAYS)
            tx.fraud[hit], tx.scenario[hit] = 1, 2
            tx.compromised_terminals += 1
        for c in rng.choice(n_customers, _compromised_today(d, customer_rate), replace=False):
            during = _during(by_customer, tx.customer, day, c, d, CUSTOMER_COMPROMISE_DAYS)
            hit = rng.choice(during, int(len(during) * CUSTOMER_FRAUD_SHARE), replace=False)
            tx.amount[hit] = np.round(tx.amount[hit] * CUSTOMER_FRAUD_AMOUNT_FACTOR, 2)
            tx.fraud[hit], tx.scenario[hit] = 1, 3
            tx.compromised_customers += 1


def _during(order, owner, day, who, first_day, n_days):
    """Ids of who's transactions on days [first_day, first_day + n_days), via an (owner, time) order."""
    sorted_owner = owner[order]
    lo, hi = np.searchsorted(sorted_owner, who, 'left'), np.searchsorted(sorted_owner, who, 'right')
    mine = order[lo:hi]
    return mine[(day[mine] >= first_day) & (day[mine] < first_day + n_days)]


def summary(tx):
    """Counts for the model card and the tests."""
    n = len(tx.seconds)
    frauds = int(tx.fraud.sum())
    return {
        'transactions': n,
        'frauds': frauds,
        'fraudRate': frauds / n if n else 0.0,
        'scenarioCounts': {str(s): int((tx.scenario == s).sum()) for s in SCENARIOS},
        'compromisedTerminals': tx.compromised_terminals,
        'compromisedCustomers': tx.compromised_customers,
        'customersWithTransactions': int(len(np.unique(tx.customer))),
    }
