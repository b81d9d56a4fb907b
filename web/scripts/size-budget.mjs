// Reports the gzipped size of the JavaScript the first screen loads (the entry script
// and every module it preloads, as index.html names them) and fails above the budget.
//   node scripts/size-budget.mjs [--budget-kb 150]
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const i = process.argv.indexOf('--budget-kb');
const budgetKb = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.WEB_JS_BUDGET_KB ?? 150);

const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = new Set();
for (const m of html.matchAll(/<script[^>]*\bsrc="([^"]+\.js)"/g)) refs.add(m[1]);
for (const m of html.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+\.js)"/g)) refs.add(m[1]);
if (refs.size === 0) {
  console.error('size-budget: no script found in dist/index.html');
  process.exit(1);
}
let raw = 0;
let gz = 0;
const files = [];
for (const ref of refs) {
  const bytes = readFileSync(join(dist, ref.replace(/^\//, '')));
  const g = gzipSync(bytes, { level: 9 }).length;
  raw += bytes.length;
  gz += g;
  files.push({ file: ref, bytes: bytes.length, gzip: g });
}
const kb = (n) => (n / 1024).toFixed(1);
for (const f of files) console.log(`size-budget: ${f.file} ${kb(f.bytes)} KB, gzip ${kb(f.gzip)} KB`);
console.log(`size-budget: first-load JavaScript ${kb(raw)} KB, gzip ${kb(gz)} KB (budget ${budgetKb} KB gzip)`);
writeFileSync(join(dist, 'size-report.json'), JSON.stringify({ files, bytes: raw, gzipBytes: gz, budgetKb }, null, 2) + '\n');
if (gz > budgetKb * 1024) {
  console.error(`size-budget: over budget by ${kb(gz - budgetKb * 1024)} KB`);
  process.exit(1);
}
