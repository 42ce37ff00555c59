// `npm test`: unit tests and the fast integration tests (real processes, files and locks, each
// case a few jobs at most). The heavy cases (races held for seconds, tens of thousands of files,
// wall-clock jumps, hung servers, archive bombs) are `*.system.test.ts`, run by
// `npm run test:system` (jest.system.config.js), which CI runs too.
/** @type {import('jest').Config} */
export default {
  preset: 'ts-jest/presets/default-esm',
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['\\.system\\.test\\.ts$'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  // A bound, not a speed: every test waits for events, and a loaded CI machine is slow.
  testTimeout: 180_000,
  maxWorkers: 2,
};
