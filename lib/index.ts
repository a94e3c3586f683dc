/** xgb-stream's public API. */
export { Classifier } from './classifier';
export type {
  ClassifierOptions,
  ExplainMethod,
  ExplainOptions,
  Explanation,
  FeatureContribution,
} from './classifier';
