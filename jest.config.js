/** Jest runs the TypeScript tests directly through ts-jest. The global setup trains the default model
 * when it is missing (the fixtures of the classifier and processor tests) and starts the local Kafka
 * broker unless KAFKA_BROKERS names an existing cluster. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 120000,
  maxWorkers: 1,
  // Every test file in a fresh worker process (a limit this low recycles the worker after each file):
  // librdkafka clients and their threads, and the native addons' state, never outlive their file, and
  // a native crash names the file it happened in instead of ending the whole run.
  workerIdleMemoryLimit: '1MB',
  verbose: true,
};
