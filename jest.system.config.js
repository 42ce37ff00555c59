// `npm run test:system`: the heavy cases, `*.system.test.ts` (see jest.config.js).
import base from './jest.config.js';

/** @type {import('jest').Config} */
export default {
  ...base,
  testMatch: ['**/*.system.test.ts'],
  testPathIgnorePatterns: [],
  testTimeout: 300_000,
};
