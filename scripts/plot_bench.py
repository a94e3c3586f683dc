"""Draws the benchmark's latency plot: percentile curves of both modes, and p50/p99 per second of the
latency run, from the JSON that scripts/bench.ts writes. Usage: plot_bench.py RESULTS.json OUT.png"""
import json
import sys

import matplotlib

matplotlib.use('Agg')  # no display on the benchmark machine
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    with open(src) as f:
        report = json.load(f)
    modes = report['modes']
    fig, (curve_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in modes.items():
        lat = result['latency']
        tput = result['throughput']['recordsPerSecond']
        label = '%s (%.0f rec/s max)' % (name, tput)
        # Percentiles on a "nines" axis: 1/(1-p) spreads the tail, where the modes differ.
        points = [(p, ms) for p, ms in lat['curve'] if p < 100]
        curve_ax.plot([1 / (1 - p / 100) for p, _ in points], [ms for _, ms in points], marker='o', label=label)
        seconds = [row[0] for row in lat['timeline']]
        time_ax.plot(seconds, [row[1] for row in lat['timeline']], label='%s p50' % name)
        time_ax.plot(seconds, [row[2] for row in lat['timeline']], linestyle='--', label='%s p99' % name)
    ticks = [50, 90, 99, 99.9, 99.99]
    curve_ax.set_xscale('log')
    curve_ax.set_xticks([1 / (1 - p / 100) for p in ticks])
    curve_ax.set_xticklabels(['p%g' % p for p in ticks])
    curve_ax.set_yscale('log')
    curve_ax.set_ylabel('end-to-end latency (ms)')
    curve_ax.set_title('latency percentiles at %s records/s offered' % report['options']['rates'][0])
    curve_ax.grid(True, which='both', alpha=0.3)
    curve_ax.legend()
    time_ax.set_yscale('log')
    time_ax.set_xlabel('second of the latency run (by send time)')
    time_ax.set_ylabel('latency (ms)')
    time_ax.set_title('latency over the run')
    time_ax.grid(True, which='both', alpha=0.3)
    time_ax.legend(fontsize='small')
    m = report['machine']
    fig.suptitle('xgb-stream end to end: %d cores, %s, node %s, librdkafka %s'
                 % (m['cores'], m['cpuModel'], m['node'], m['librdkafka']), fontsize='small')
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: plot_bench.py RESULTS.json OUT.png')
    main(sys.argv[1], sys.argv[2])
