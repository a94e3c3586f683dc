/**
 * Reloading the model in place: SIGHUP, POST /-/reload and --watch-model all land here. The file at
 * --model is loaded as a candidate, passes the gate (model-gate.ts) or is refused, and a passing one
 * is swapped in between batches. A refused or failed reload leaves the serving model as it was.
 */
import { watch, type FSWatcher } from 'node:fs';
import * as path from 'node:path';
import type { ProcessorConfig } from '../../config';
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import { GateRejection, admitCandidate, type CanaryReport, type Gate } from './gate';
import type { BatchScorer } from '../score/score';

/** What a reload did, as the log, the metrics and POST /-/reload report it. */
export type ReloadOutcome =
  | { result: 'success'; modelVersion: string; previousVersion: string; testVectors: number; canary?: CanaryReport }
  | { result: 'rejected'; gate: Gate; reason: string; modelVersion: string };

/** How long --watch-model waits after a rename before it reloads: lets a burst of renames settle. */
const WATCH_SETTLE_MS = 200;

export class ModelReloader {
  /** The reload under way; another request waits for it and then runs once for all who asked. */
  private running: Promise<ReloadOutcome> | undefined;
  private queued: Promise<ReloadOutcome> | undefined;
  private watcher: FSWatcher | undefined;
  private watchTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: ProcessorConfig,
    private readonly scorer: BatchScorer,
    private readonly log: Logger,
    private readonly metrics: ProcessorMetrics,
  ) {}

  /**
   * Reloads --model. Reloads never overlap: a request during one runs after it, and requests that
   * arrive meanwhile share that run (the file is read once, at its start).
   */
  reload(trigger: string): Promise<ReloadOutcome> {
    if (!this.running) {
      this.running = this.run(trigger).finally(() => { this.running = undefined; });
      return this.running;
    }
    this.queued ??= this.running.catch(() => undefined).then(() => {
      this.queued = undefined;
      return this.reload(trigger);
    });
    return this.queued;
  }

  private async run(trigger: string): Promise<ReloadOutcome> {
    const serving = this.scorer.model;
    const modelPath = path.resolve(this.config.modelPath);
    this.log.info('reloading the model', { trigger, model: modelPath, servingVersion: serving.version });
    try {
      const passed = await admitCandidate(serving, {
        modelPath, nthread: this.config.nthread, configuredThreshold: this.config.threshold,
        maxAlertRateRatio: this.config.maxAlertRateRatio,
        canaryRows: this.scorer.recentRows?.snapshot() ?? new Float32Array(0),
      });
      if (passed.canary) this.reportCanary(passed.canary);
      this.scorer.swap(passed.model);
      this.metrics.modelReloads.inc({ result: 'success' });
      this.log.info('model reloaded: the new version serves from the next batch', {
        trigger, modelVersion: passed.model.version, previousVersion: serving.version,
        threshold: passed.model.threshold, testVectors: passed.testVectors,
        canary: passed.canary ?? 'no live rows yet',
      });
      return {
        result: 'success', modelVersion: passed.model.version, previousVersion: serving.version,
        testVectors: passed.testVectors, ...(passed.canary ? { canary: passed.canary } : {}),
      };
    } catch (err) {
      const rejection = err instanceof GateRejection ? err : new GateRejection('load', (err as Error).message);
      if (rejection.canary) this.reportCanary(rejection.canary);
      this.metrics.modelReloads.inc({ result: 'rejected' });
      this.metrics.modelReloadRejections.inc({ gate: rejection.gate });
      this.log.warn('model reload rejected: the serving model stays', {
        trigger, model: modelPath, gate: rejection.gate, reason: rejection.message, servingVersion: serving.version,
        ...(rejection.canary ? { canary: rejection.canary } : {}),
      });
      return { result: 'rejected', gate: rejection.gate, reason: rejection.message, modelVersion: serving.version };
    }
  }

  private reportCanary(canary: CanaryReport): void {
    this.metrics.canaryRows.set({}, canary.rows);
    this.metrics.canaryAlertRate.set({ model: 'serving' }, canary.servingAlertRate);
    this.metrics.canaryAlertRate.set({ model: 'candidate' }, canary.candidateAlertRate);
    this.metrics.canaryMaxScoreChange.set({}, canary.maxScoreChange);
  }

  /**
   * --watch-model: reloads when a file is renamed onto --model (how a deploy replaces a file
   * atomically: write beside it, then rename). The directory is watched, as the file's own inode
   * changes with each rename.
   */
  watch(): void {
    const modelPath = path.resolve(this.config.modelPath);
    const name = path.basename(modelPath);
    this.watcher = watch(path.dirname(modelPath), (event, file) => {
      if (event !== 'rename' || file !== name) return;
      clearTimeout(this.watchTimer);
      this.watchTimer = setTimeout(() => { void this.reload('watch'); }, WATCH_SETTLE_MS);
    });
    this.watcher.on('error', (err) => this.log.warn('watching the model file failed', { model: modelPath, error: err }));
    this.log.info('watching the model file', { model: modelPath });
  }

  /** Stops watching. */
  close(): void {
    clearTimeout(this.watchTimer);
    this.watcher?.close();
  }
}
