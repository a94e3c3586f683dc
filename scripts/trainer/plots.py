"""PNG plots of the held-out performance and of what the model relies on."""
import os

import matplotlib

matplotlib.use('Agg')  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

FILES = {'pr': 'plots/precision-recall.png', 'roc': 'plots/roc.png',
         'importance': 'plots/feature-importance.png'}


def write(out, y, score, metrics, importance, version):
    os.makedirs(os.path.join(out, 'plots'), exist_ok=True)

    precision, recall, _ = precision_recall_curve(y, score)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.step(recall, precision, where='post', label='AP = %.3f' % metrics['averagePrecision'])
    ax.axhline(metrics['baseRate'], color='grey', linestyle='--',
               label='base rate = %.4f' % metrics['baseRate'])
    ax.plot([metrics['recall']], [metrics['precision']], 'o', color='C3',
            label='threshold %g' % metrics['threshold'])
    _finish(fig, ax, 'Recall', 'Precision', 'Precision-recall, held out\n' + version,
            os.path.join(out, FILES['pr']))

    fpr, tpr, _ = roc_curve(y, score)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(fpr, tpr, label='AUC = %.3f' % metrics['rocAuc'])
    ax.plot([0, 1], [0, 1], color='grey', linestyle='--', label='chance')
    _finish(fig, ax, 'False positive rate', 'True positive rate', 'ROC, held out\n' + version,
            os.path.join(out, FILES['roc']))

    ranked = sorted(importance.items(), key=lambda kv: kv[1])
    total = sum(v for _, v in ranked) or 1.0
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.barh([k for k, _ in ranked], [v / total for _, v in ranked])
    ax.set_xlabel('Share of total gain')
    ax.set_title('Feature importance\n' + version)
    fig.tight_layout()
    fig.savefig(os.path.join(out, FILES['importance']))
    plt.close(fig)
    return dict(FILES)


def _finish(fig, ax, xlabel, ylabel, title, path):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc='lower right' if 'ROC' in title else 'lower left')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
