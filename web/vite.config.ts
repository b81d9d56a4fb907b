import { defineConfig } from 'vitest/config';

// Preact through the JSX runtime alone (no plugin needed): tsconfig's
// jsxImportSource is "preact". Everything is bundled into dist/: no CDN, nothing
// fetched at run time.
export default defineConfig({
  build: {
    target: 'es2020',
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    reportCompressedSize: true,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
