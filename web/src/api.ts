// The API client: one origin (the reverse proxy routes /api/v1/* to command-service or
// query-service by path), a bearer token on every call, problems turned into ApiProblem.
import { problemMessages } from './i18n';
import type { Lang } from './format';

export interface LoginAnswer {
  accessToken: string;
  tokenType: string;
  expiresIn: number;
  customerId: string;
  role?: string;
  lines: string[];
}

export interface BillMenu {
  customerId: string;
  /** The caller's lines (a customer's own). */
  lines?: string[];
  lineNumber: string;
  months: string[];
  currentMonth: string;
}

export interface Bill {
  lineNumber: string;
  customerId: string;
  month: string;
  productCode: string;
  productName: string;
  contract: { commitmentMonths: number; startedOn: string; endsOn: string };
  monthlyFee: number;
  usageCharges: number;
  discounts: { name: string; amount: number }[];
  totalAmount: number;
  usage: { voiceMinutes: number; smsCount: number; dataMb: number };
  earlyTerminationFee: number;
  deviceInstallmentBalance: number;
  billing: {
    billingDate: string;
    dueDate: string;
    paymentStatus: string;
    paymentMethod: string;
    paidAt?: string;
    paidAmount?: number;
  };
  issuedAt: string;
}

export interface Product {
  productCode: string;
  name?: string;
  productName?: string;
  operator?: string;
  monthlyFee?: number;
  dataMb?: number | null;
  voiceMinutes?: number | null;
  smsCount?: number | null;
  onSale?: boolean;
}

export interface PendingChange {
  requestId: string;
  targetProductCode: string;
  status: string;
  requestedAt: string;
}

export interface Available {
  lineNumber: string;
  customerId: string;
  operator: string;
  status: string;
  currentProduct: Product;
  pendingChange?: PendingChange | null;
  availableProducts: Product[];
}

export interface ChangeRequest {
  requestId: string;
  lineNumber: string;
  status: string;
  currentProductCode: string;
  targetProductCode: string;
  newProductCode?: string;
  message?: string;
  failureReason?: string;
  kosReasonCode?: string;
  failedChecks?: string[];
  requestedAt: string;
  completedAt?: string;
  failedAt?: string;
  updatedAt: string;
}

export interface Inquiry {
  inquiryId: string;
  lineNumber: string;
  month: string;
  result: string;
  inquiredAt: string;
}

export interface Page<T> {
  lineNumber: string;
  items: T[];
  page: number;
  size: number;
  totalElements: number;
  totalPages: number;
}

export interface ChangeBody {
  lineNumber: string;
  currentProductCode: string;
  targetProductCode: string;
}

export interface Validation {
  lineNumber: string;
  valid: boolean;
  checks: { check: string; passed: boolean; message: string }[];
}

export interface Accepted {
  requestId: string;
  lineNumber: string;
  status: string;
  position: number;
}

/** A refused call: the problem document's `code`, or a client-side code. */
export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string = '',
    readonly extra: {
      lockedUntil?: string;
      failedChecks?: { check: string; message: string }[];
      requestId?: string;
      retryAfter?: number;
    } = {},
  ) {
    super(`${status} ${code}${detail ? `: ${detail}` : ''}`);
  }
}

/** The customer-facing message for a problem, in the chosen language. */
export function problemMessage(p: ApiProblem, lang: Lang): string {
  const entry = problemMessages[p.code] ?? problemMessages.UNKNOWN;
  return entry[lang]
    .split('{status}').join(String(p.status))
    .split('{seconds}').join(String(p.extra.retryAfter ?? 60));
}

/** What a response that is not a problem document means (a proxy's 502, a network error). */
export function fallbackCode(status: number): string {
  if (status === 0) return 'NETWORK';
  if (status === 401) return 'UNAUTHENTICATED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 429) return 'RATE_LIMITED';
  if (status === 502 || status === 503 || status === 504) return 'SERVICE_UNAVAILABLE';
  if (status >= 500) return 'INTERNAL';
  return 'UNKNOWN';
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ApiOptions {
  base?: string;
  fetch?: FetchLike;
  token: () => string | null;
  /** Called once for any 401 on a call that carried a token (expired, revoked, forged). */
  onUnauthenticated?: (p: ApiProblem) => void;
}

export class Api {
  private readonly base: string;
  private readonly fetchImpl: FetchLike;

  constructor(private readonly opts: ApiOptions) {
    this.base = opts.base ?? '';
    this.fetchImpl = opts.fetch ?? ((i, init) => fetch(i, init));
  }

  async call<T>(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string>; auth?: boolean; signal?: AbortSignal } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    const auth = options.auth !== false;
    const token = auth ? this.opts.token() : null;
    if (token) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal,
        cache: 'no-store',
      });
    } catch (e) {
      if ((e as Error)?.name === 'AbortError') throw e;
      throw new ApiProblem(0, 'NETWORK', String(e));
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) return json as T;
    const doc = (json && typeof json === 'object' ? json : {}) as Record<string, unknown>;
    const code = typeof doc.code === 'string' ? doc.code : fallbackCode(res.status);
    const retry = Number(res.headers.get('retry-after'));
    const problem = new ApiProblem(res.status, code, typeof doc.detail === 'string' ? doc.detail : '', {
      lockedUntil: typeof doc.lockedUntil === 'string' ? doc.lockedUntil : undefined,
      failedChecks: Array.isArray(doc.failedChecks) ? (doc.failedChecks as { check: string; message: string }[]) : undefined,
      requestId: typeof doc.requestId === 'string' ? doc.requestId : undefined,
      retryAfter: Number.isFinite(retry) && retry > 0 ? retry : undefined,
    });
    if (res.status === 401 && token && this.opts.onUnauthenticated) this.opts.onUnauthenticated(problem);
    throw problem;
  }

  login(customerId: string, password: string): Promise<LoginAnswer> {
    return this.call('POST', '/api/v1/auth/login', { body: { customerId, password }, auth: false });
  }

  logout(): Promise<void> {
    return this.call('POST', '/api/v1/auth/logout');
  }

  /** Ends every session of the account (every device), this one included. */
  logoutEverywhere(): Promise<void> {
    return this.call('POST', '/api/v1/auth/logout-all');
  }

  billMenu(line: string, signal?: AbortSignal): Promise<BillMenu> {
    return this.call('GET', `/api/v1/bills/menu?${q({ lineNumber: line })}`, { signal });
  }

  bill(line: string, month: string | undefined, signal?: AbortSignal): Promise<Bill> {
    return this.call('GET', `/api/v1/bills?${q({ lineNumber: line, month })}`, { signal });
  }

  billHistory(line: string, page: number, size: number, signal?: AbortSignal): Promise<Page<Inquiry>> {
    return this.call('GET', `/api/v1/bills/history?${q({ lineNumber: line, page, size })}`, { signal });
  }

  available(line: string, signal?: AbortSignal): Promise<Available> {
    return this.call('GET', `/api/v1/products/available?${q({ lineNumber: line })}`, { signal });
  }

  lineChanges(line: string, page: number, size: number, signal?: AbortSignal): Promise<Page<ChangeRequest>> {
    return this.call('GET', `/api/v1/lines/${encodeURIComponent(line)}/product-changes?${q({ page, size })}`, { signal });
  }

  changeRequest(id: string, minPosition?: number, signal?: AbortSignal): Promise<ChangeRequest> {
    return this.call('GET', `/api/v1/product-changes/${encodeURIComponent(id)}?${q({ minPosition })}`, { signal });
  }

  validate(body: ChangeBody): Promise<Validation> {
    return this.call('POST', '/api/v1/product-changes/validation', { body });
  }

  requestChange(body: ChangeBody, idempotencyKey: string): Promise<Accepted> {
    return this.call('POST', '/api/v1/product-changes', { body, headers: { 'Idempotency-Key': idempotencyKey } });
  }
}

/** A query string from the defined values. */
export function q(params: Record<string, string | number | undefined | null>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, String(v));
  return s.toString();
}

export const FINAL_STATUSES = ['COMPLETED', 'FAILED'];

/**
 * Follows a change request until it is COMPLETED or FAILED: reads it with the command's
 * `position` as `minPosition` (read your own write), then polls with a growing pause.
 * PROJECTION_BEHIND and REQUEST_NOT_FOUND (not projected yet) are waited out; any other
 * problem ends the polling with that problem.
 */
export async function followRequest(
  api: Pick<Api, 'changeRequest'>,
  requestId: string,
  position: number | undefined,
  onUpdate: (r: ChangeRequest) => void,
  opts: { signal?: AbortSignal; sleep?: (ms: number) => Promise<void>; deadlineMs?: number; now?: () => number } = {},
): Promise<ChangeRequest> {
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = opts.now ?? Date.now;
  const deadline = now() + (opts.deadlineMs ?? 10 * 60_000);
  let pause = 250;
  for (;;) {
    if (opts.signal?.aborted) throw new DOMException('aborted', 'AbortError');
    try {
      const r = await api.changeRequest(requestId, position, opts.signal);
      onUpdate(r);
      if (FINAL_STATUSES.includes(r.status)) return r;
    } catch (e) {
      if (!(e instanceof ApiProblem)) throw e;
      const transient = ['PROJECTION_BEHIND', 'REQUEST_NOT_FOUND', 'SERVICE_UNAVAILABLE', 'NETWORK', 'TIMEOUT', 'READ_MODEL_UNAVAILABLE'];
      if (!transient.includes(e.code)) throw e;
    }
    if (now() > deadline) throw new ApiProblem(0, 'TIMEOUT', 'the request did not finish in time');
    await sleep(pause);
    pause = Math.min(Math.round(pause * 1.5), 2000);
  }
}

/** A fresh Idempotency-Key for one submission (kept while that submission is retried). */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `k-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}
