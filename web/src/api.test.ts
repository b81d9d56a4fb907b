import { describe, expect, it } from 'vitest';
import { Api, ApiProblem, fallbackCode, followRequest, problemMessage, q, type ChangeRequest } from './api';
import { problemMessages, texts } from './i18n';

type Call = { url: string; init: RequestInit };

function fakeFetch(responses: Array<() => Response | Promise<Response>>) {
  const calls: Call[] = [];
  const fetch = async (url: string, init: RequestInit = {}) => {
    calls.push({ url, init });
    const next = responses.shift();
    if (!next) throw new Error('no more responses');
    return next();
  };
  return { fetch, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => () =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const problem = (status: number, code: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) => () =>
  new Response(JSON.stringify({ type: 'x', title: 't', status, code, detail: `detail of ${code}`, ...extra }), {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
  });

describe('Api', () => {
  it('sends the bearer token on every call and none on login', async () => {
    const f = fakeFetch([
      json(200, { accessToken: 'tok', tokenType: 'Bearer', expiresIn: 1800, customerId: 'CUST0001', lines: ['010-0000-0001'] }),
      json(200, { customerId: 'CUST0001', lineNumber: '010-0000-0001', months: [], currentMonth: '2026-11' }),
    ]);
    let token: string | null = null;
    const api = new Api({ fetch: f.fetch, token: () => token });
    const a = await api.login('CUST0001', 'pw');
    expect((f.calls[0].init.headers as Record<string, string>).authorization).toBeUndefined();
    expect(f.calls[0].url).toBe('/api/v1/auth/login');
    expect(JSON.parse(String(f.calls[0].init.body))).toEqual({ customerId: 'CUST0001', password: 'pw' });
    token = a.accessToken;
    await api.billMenu('010-0000-0001');
    expect(f.calls[1].url).toBe('/api/v1/bills/menu?lineNumber=010-0000-0001');
    expect((f.calls[1].init.headers as Record<string, string>).authorization).toBe('Bearer tok');
  });

  it('builds the paths of the ingress rules', async () => {
    const ok = json(200, {});
    const f = fakeFetch([ok, ok, ok, ok, ok, ok, ok, ok]);
    const api = new Api({ fetch: f.fetch, token: () => 't' });
    await api.bill('010-0000-0001', '2026-10');
    await api.bill('010-0000-0001', undefined);
    await api.billHistory('010-0000-0001', 1, 10);
    await api.available('010-0000-0001');
    await api.lineChanges('010-0000-0001', 0, 10);
    await api.changeRequest('abc', 7);
    await api.validate({ lineNumber: 'l', currentProductCode: 'a', targetProductCode: 'b' });
    await api.requestChange({ lineNumber: 'l', currentProductCode: 'a', targetProductCode: 'b' }, 'key-1');
    expect(f.calls.map((c) => `${c.init.method} ${c.url}`)).toEqual([
      'GET /api/v1/bills?lineNumber=010-0000-0001&month=2026-10',
      'GET /api/v1/bills?lineNumber=010-0000-0001',
      'GET /api/v1/bills/history?lineNumber=010-0000-0001&page=1&size=10',
      'GET /api/v1/products/available?lineNumber=010-0000-0001',
      'GET /api/v1/lines/010-0000-0001/product-changes?page=0&size=10',
      'GET /api/v1/product-changes/abc?minPosition=7',
      'POST /api/v1/product-changes/validation',
      'POST /api/v1/product-changes',
    ]);
    expect((f.calls[7].init.headers as Record<string, string>)['Idempotency-Key']).toBe('key-1');
  });

  it('turns a problem document into ApiProblem with its code and extras', async () => {
    const f = fakeFetch([
      problem(423, 'ACCOUNT_LOCKED', { lockedUntil: '2026-11-25T13:20:00Z' }),
      problem(422, 'PRECHECK_FAILED', { requestId: 'r1', failedChecks: [{ check: 'LINE_ACTIVE', message: 'suspended' }] }),
      problem(429, 'RATE_LIMITED', {}, { 'retry-after': '17' }),
    ]);
    const api = new Api({ fetch: f.fetch, token: () => null });
    const e1 = await api.login('CUST0001', 'x').catch((e) => e);
    expect(e1).toBeInstanceOf(ApiProblem);
    expect(e1.status).toBe(423);
    expect(e1.code).toBe('ACCOUNT_LOCKED');
    expect(e1.extra.lockedUntil).toBe('2026-11-25T13:20:00Z');
    const e2 = await api.requestChange({ lineNumber: 'l', currentProductCode: 'a', targetProductCode: 'b' }, 'k').catch((e) => e);
    expect(e2.code).toBe('PRECHECK_FAILED');
    expect(e2.extra.failedChecks).toEqual([{ check: 'LINE_ACTIVE', message: 'suspended' }]);
    expect(e2.extra.requestId).toBe('r1');
    const e3 = await api.billMenu('010-0000-0001').catch((e) => e);
    expect(e3.extra.retryAfter).toBe(17);
    expect(problemMessage(e3, 'en')).toBe('Too many requests. Try again in 17 s.');
  });

  it('maps what is not a problem document (proxy errors, network down)', async () => {
    const f = fakeFetch([
      () => new Response('<html>502 Bad Gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } }),
      () => Promise.reject(new TypeError('Failed to fetch')),
    ]);
    const api = new Api({ fetch: f.fetch, token: () => 't' });
    const e1 = await api.billMenu('010-0000-0001').catch((e) => e);
    expect(e1.code).toBe('SERVICE_UNAVAILABLE');
    expect(problemMessage(e1, 'ko')).toContain('HTTP 502');
    const e2 = await api.billMenu('010-0000-0001').catch((e) => e);
    expect(e2.code).toBe('NETWORK');
    expect(e2.status).toBe(0);
    expect(fallbackCode(404)).toBe('UNKNOWN');
    expect(fallbackCode(401)).toBe('UNAUTHENTICATED');
  });

  it('reports a refused token once, only when a token was sent', async () => {
    const seen: string[] = [];
    let token: string | null = 'expired';
    const f = fakeFetch([problem(401, 'UNAUTHENTICATED'), problem(401, 'INVALID_CREDENTIALS')]);
    const api = new Api({ fetch: f.fetch, token: () => token, onUnauthenticated: (p) => seen.push(p.code) });
    await api.billMenu('010-0000-0001').catch(() => undefined);
    token = null;
    await api.login('CUST0001', 'bad').catch(() => undefined);
    expect(seen).toEqual(['UNAUTHENTICATED']);
  });

  it('treats 204 as no body', async () => {
    const f = fakeFetch([() => new Response(null, { status: 204 })]);
    const api = new Api({ fetch: f.fetch, token: () => 't' });
    await expect(api.logout()).resolves.toBeUndefined();
  });

  it('logs out everywhere with the account-wide route', async () => {
    const f = fakeFetch([() => new Response(null, { status: 204 })]);
    const api = new Api({ fetch: f.fetch, token: () => 't' });
    await expect(api.logoutEverywhere()).resolves.toBeUndefined();
    expect(f.calls[0].url).toBe('/api/v1/auth/logout-all');
    expect(f.calls[0].init.method).toBe('POST');
  });
});

describe('problem codes', () => {
  const codes = [
    // command-service (service_kit::problem)
    'MALFORMED_JSON', 'INVALID_FIELDS', 'INVALID_LINE_NUMBER', 'INVALID_PRODUCT_CODE', 'INVALID_IDEMPOTENCY_KEY',
    'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'LINE_NOT_FOUND', 'PRECHECK_FAILED', 'CHANGE_IN_FLIGHT',
    'IDEMPOTENCY_KEY_REUSED', 'UNKNOWN_REQUEST', 'CONCURRENT_UPDATE', 'TIMEOUT', 'INVALID_CREDENTIALS',
    'ACCOUNT_LOCKED', 'INTERNAL', 'INVALID_PASSWORD', 'INVALID_CUSTOMER_ID', 'UNAUTHENTICATED', 'AUTH_UNAVAILABLE',
    'FORBIDDEN_LINE', 'FORBIDDEN', 'RATE_LIMITED',
    // query-service
    'BILL_NOT_FOUND', 'INVALID_MONTH', 'INVALID_PARAMETER', 'INVALID_REQUEST_ID', 'INVALID_STATUS',
    'REQUEST_NOT_FOUND', 'PROJECTION_BEHIND', 'READ_MODEL_UNAVAILABLE', 'ROUTE_NOT_FOUND',
    // the reverse proxy (an /api/ path no service owns); the client itself
    'NOT_FOUND', 'NETWORK', 'SERVICE_UNAVAILABLE',
  ];
  it.each(codes)('%s has a Korean and an English message', (code) => {
    const m = problemMessages[code];
    expect(m).toBeDefined();
    expect(m.ko).toMatch(/[가-힣]/);
    expect(m.en).toMatch(/[A-Za-z]/);
    expect(m.ko).not.toBe(m.en);
  });
  it('an unknown code falls back to a message with the HTTP status', () => {
    expect(problemMessage(new ApiProblem(418, 'TEAPOT'), 'en')).toBe('Something unexpected happened (HTTP 418).');
  });
  it('every text exists in both languages', () => {
    expect(Object.keys(texts.ko).sort()).toEqual(Object.keys(texts.en).sort());
    for (const v of Object.values(texts.ko)) expect(v.length).toBeGreaterThan(0);
  });
});

describe('followRequest', () => {
  const req = (status: string): ChangeRequest => ({
    requestId: 'r', lineNumber: 'l', status, currentProductCode: 'a', targetProductCode: 'b', requestedAt: '', updatedAt: '',
  });
  it('reads with minPosition and polls until a final status, waiting out a projection behind', async () => {
    const answers: Array<ChangeRequest | ApiProblem> = [new ApiProblem(503, 'PROJECTION_BEHIND'), req('PROCESSING'), req('PROCESSING'), req('COMPLETED')];
    const seen: string[] = [];
    const positions: Array<number | undefined> = [];
    const sleeps: number[] = [];
    const api = {
      changeRequest: async (_id: string, min?: number) => {
        positions.push(min);
        const a = answers.shift()!;
        if (a instanceof ApiProblem) throw a;
        return a;
      },
    };
    const r = await followRequest(api, 'r', 5, (x) => seen.push(x.status), { sleep: async (ms) => void sleeps.push(ms) });
    expect(r.status).toBe('COMPLETED');
    expect(seen).toEqual(['PROCESSING', 'PROCESSING', 'COMPLETED']);
    expect(positions).toEqual([5, 5, 5, 5]);
    expect(sleeps).toEqual([250, 375, 563]);
  });
  it('stops on a problem that is not transient', async () => {
    const api = { changeRequest: async () => { throw new ApiProblem(403, 'FORBIDDEN_LINE'); } };
    await expect(followRequest(api, 'r', 1, () => undefined, { sleep: async () => undefined })).rejects.toMatchObject({ code: 'FORBIDDEN_LINE' });
  });
  it('gives up after its deadline', async () => {
    let now = 0;
    const api = { changeRequest: async () => req('PROCESSING') };
    await expect(
      followRequest(api, 'r', 1, () => undefined, { sleep: async (ms) => void (now += ms), now: () => now, deadlineMs: 1000 }),
    ).rejects.toMatchObject({ code: 'TIMEOUT' });
  });
});

describe('query strings', () => {
  it('leaves out what is not set', () => {
    expect(q({ a: 1, b: undefined, c: null, d: '', e: 'x y' })).toBe('a=1&e=x+y');
  });
});
