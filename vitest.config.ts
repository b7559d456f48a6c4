import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The CLI tests spawn the built binary; on a 2-core machine they are slow only in wall time.
    testTimeout: 60_000,
  },
});
