// The local trace viewer (infra/local/trace-viewer) in a browser, served by a real Jaeger
// of this test's own (infra/local/jaeger.sh, built once by the stack script) holding a
// trace sent to it over OTLP/HTTP: found by its correlation id, opened, drawn as a tree.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { eventually, launch, newPage, shoot } from './helpers.mjs';

const JAEGER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'infra', 'local', 'jaeger.sh');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const hex = (bytes) => randomBytes(bytes).toString('hex');

/** One OTLP/JSON resource's spans: `spans` as [name, id, parent id, kind, start µs after
 * `origin` (ns since the epoch), length µs]. */
function resourceSpans(service, spans, traceId, correlationId, origin) {
  const kinds = { server: 2, producer: 4, consumer: 5 };
  return {
    resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
    scopeSpans: [{
      scope: { name: 'phonebill' },
      spans: spans.map(([name, id, parent, kind, start, length]) => ({
        traceId, spanId: id, parentSpanId: parent ?? '', name, kind: kinds[kind],
        startTimeUnixNano: String(origin + BigInt(start) * 1000n),
        endTimeUnixNano: String(origin + BigInt(start + length) * 1000n),
        attributes: parent ? [] : [{ key: 'correlation_id', value: { stringValue: correlationId } }],
      })),
    }],
  };
}

let dir, ports, browser;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'phonebill-viewer-'));
  ports = { otlp: await freePort(), grpc: await freePort(), ui: await freePort() };
  execFileSync('bash', [JAEGER, 'start', dir, String(ports.otlp), String(ports.grpc), String(ports.ui)],
    { stdio: 'inherit' });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  if (dir) {
    execFileSync('bash', [JAEGER, 'stop', dir], { stdio: 'inherit' });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a change\'s trace is found by its correlation id and drawn as a tree of its services\' spans', async () => {
  // Given a trace across two services in Jaeger
  const traceId = hex(16);
  const correlationId = randomUUID();
  const [http, publish, consume] = [hex(8), hex(8), hex(8)];
  // One time origin for both services' spans: the lengths asserted below depend on it.
  const origin = BigInt(Date.now()) * 1_000_000n;
  const sent = await fetch(`http://127.0.0.1:${ports.otlp}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      resourceSpans: [
        resourceSpans('command-service', [
          ['POST /api/v1/product-changes', http, null, 'server', 0, 4000],
          ['phonebill.product-change publish', publish, http, 'producer', 3000, 200],
        ], traceId, correlationId, origin),
        resourceSpans('kos-mock', [
          ['phonebill.product-change process', consume, publish, 'consumer', 9000, 1500],
        ], traceId, correlationId, origin),
      ],
    }),
  });
  assert.equal(sent.status, 200, await sent.text());
  const base = `http://127.0.0.1:${ports.ui}`;
  await eventually(async () => (await fetch(`${base}/api/traces/${traceId}`)).status === 200);

  // When someone searches the viewer for the correlation id
  const page = await newPage(browser, { lang: 'en' });
  await page.goto(`${base}/`);
  await page.fill('input[name=correlation]', correlationId);
  await page.click('button');
  const link = page.locator('table.results a');
  await link.waitFor();

  // Then the one trace is listed with both services, and opens as a tree
  assert.equal(await link.count(), 1);
  assert.equal(await link.textContent(), 'command-service: POST /api/v1/product-changes');
  assert.match(await page.locator('table.results').textContent(), /command-service, kos-mock/);
  await link.click();
  await page.waitForURL(new RegExp(`#/trace/${traceId}$`));
  const rows = page.locator('.span .name');
  await rows.first().waitFor();
  assert.deepEqual(await rows.allTextContents(), [
    'command-service POST /api/v1/product-changes server',
    'command-service phonebill.product-change publish producer',
    'kos-mock phonebill.product-change process consumer',
  ]);
  const indents = await rows.evaluateAll((els) => els.map((e) => parseFloat(e.style.paddingLeft)));
  assert.ok(indents[0] < indents[1] && indents[1] < indents[2], `each under the one before: ${indents}`);
  assert.match(await page.locator('h2').textContent(), /3 spans, 10\.5 ms/);
  await shoot(page, 'trace-viewer');
  assert.deepEqual(page.errors, []);
});
