"""Held-out metrics at the routing threshold."""
from sklearn.metrics import average_precision_score, roc_auc_score


def metrics(y, score, threshold):
    """The card's metrics. A score >= threshold counts as flagged, as the stream routes it."""
    flagged = score >= threshold
    fraud = y == 1
    tp, fp = int((flagged & fraud).sum()), int((flagged & ~fraud).sum())
    fn, tn = int((~flagged & fraud).sum()), int((~flagged & ~fraud).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        'heldOutRows': int(len(y)),
        'rocAuc': float(roc_auc_score(y, score)),
        'averagePrecision': float(average_precision_score(y, score)),
        'baseRate': float(fraud.mean()),
        'threshold': float(threshold),
        'precision': precision,
        'recall': recall,
        'f1': 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        'confusionMatrix': {'tp': tp, 'fp': fp, 'tn': tn, 'fn': fn},
    }
