/**
 * A model as the processor serves it: the classifier with the threshold and version that go with it.
 * A reload swaps one ServingModel for another between batches; the batches that started on the old one
 * finish on it, and it is closed only after the last of them.
 */
import type { Classifier } from '../../classifier';
import type { Scorer } from '../score/score';

/** What a served model needs of its classifier: the scorer's methods, and close() when it is ours to close. */
export type ServedClassifier = Scorer & Partial<Pick<Classifier, 'close' | 'featureNames'>>;

/** The decision threshold: an explicit setting wins; a model attribute must be a number in [0, 1]. */
export function resolveThreshold(configured: number | undefined, attribute: string | undefined): number {
  if (configured !== undefined) return configured;
  if (attribute === undefined) return 0.5;
  const t = Number(attribute);
  if (attribute.trim() === '' || !Number.isFinite(t) || t < 0 || t > 1) {
    throw new Error(`the model's threshold attribute '${attribute}' is not a number from 0 to 1; pass --threshold`);
  }
  return t;
}

export class ServingModel {
  /** The model's `model_version` attribute, written into every output it scores. */
  readonly version: string;
  /** Score at or above which a record is suspicious. */
  readonly threshold: number;
  /** Batches being scored with this model. */
  private users = 0;
  private retired = false;

  /**
   * `owned`: this model was loaded by the processor (a reload) and is closed once retired and idle;
   * the model given at start belongs to its caller, which closes it.
   */
  constructor(readonly classifier: ServedClassifier, configuredThreshold: number | undefined, private readonly owned: boolean) {
    this.threshold = resolveThreshold(configuredThreshold, classifier.attribute('threshold'));
    this.version = classifier.attribute('model_version') ?? 'unversioned';
  }

  /** The labels of `xgb_stream_model_info` for this model. */
  get infoLabels(): Record<string, string> {
    const { libxgboost, savedByXgboost } = this.classifier.modelInfo;
    return { libxgboost, saved_by_xgboost: savedByXgboost, version: this.version };
  }

  /** A batch starts on this model. */
  acquire(): void {
    this.users++;
  }

  /** A batch finished on this model. */
  release(): void {
    this.users--;
    this.closeIfDone();
  }

  /** Another model serves now: close this one once its last batch is done. */
  retire(): void {
    this.retired = true;
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (this.retired && this.users === 0 && this.owned) this.classifier.close?.();
  }
}
