/** xgb-stream's public API. */
export {
  Classifier, LegacyBinaryModelError, ModelLoadError, ModelVersionError, UnsupportedObjectiveError,
} from './classifier';
export type {
  ClassifierOptions,
  ExplainMethod,
  ExplainOptions,
  Explanation,
  FeatureContribution,
  ModelInfo,
} from './classifier';
