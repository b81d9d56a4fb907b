import { beforeEach, describe, expect, it } from 'vitest';
import {
  clearAllDrafts, isExpired, loadDraft, loadSession, saveDraft, saveSession, sessionFromLogin, setReturnTo, takeReturnTo,
} from './session';

class MemoryStorage {
  private m = new Map<string, string>();
  get length() { return this.m.size; }
  key(i: number) { return [...this.m.keys()][i] ?? null; }
  getItem(k: string) { return this.m.get(k) ?? null; }
  setItem(k: string, v: string) { this.m.set(k, String(v)); }
  removeItem(k: string) { this.m.delete(k); }
  clear() { this.m.clear(); }
}

beforeEach(() => {
  (globalThis as { sessionStorage?: unknown }).sessionStorage = new MemoryStorage();
  (globalThis as { localStorage?: unknown }).localStorage = new MemoryStorage();
});

describe('session', () => {
  it('keeps the token and the lines of the login answer, with its expiry', () => {
    const s = sessionFromLogin({ accessToken: 't', tokenType: 'Bearer', expiresIn: 1800, customerId: 'CUST0001', lines: ['010-0000-0001'] }, 1_000);
    expect(s).toEqual({ token: 't', customerId: 'CUST0001', lines: ['010-0000-0001'], expiresAt: 1_801_000 });
    saveSession(s);
    expect(loadSession()).toEqual(s);
    expect(isExpired(s, 1_800_999)).toBe(false);
    expect(isExpired(s, 1_801_000)).toBe(true);
    saveSession(null);
    expect(loadSession()).toBeNull();
  });

  it('brings the same customer back to where they were, with their drafts', () => {
    saveDraft('change:010-0000-0007', { target: '5G-PREMIUM-001', key: 'k1' });
    setReturnTo({ path: '/lines/010-0000-0007/change', customerId: 'CUST0007' });
    expect(takeReturnTo('CUST0007')).toBe('/lines/010-0000-0007/change');
    expect(loadDraft('change:010-0000-0007')).toEqual({ target: '5G-PREMIUM-001', key: 'k1' });
    expect(takeReturnTo('CUST0007')).toBeNull();
  });

  it("never hands one customer's place or drafts to another", () => {
    saveDraft('change:010-0000-0007', { target: '5G-PREMIUM-001', key: 'k1' });
    setReturnTo({ path: '/lines/010-0000-0007/change', customerId: 'CUST0007' });
    expect(takeReturnTo('CUST0008')).toBeNull();
    expect(loadDraft('change:010-0000-0007')).toBeNull();
  });

  it('clears every draft on logout', () => {
    saveDraft('a', 1);
    saveDraft('b', 2);
    clearAllDrafts();
    expect(loadDraft('a')).toBeNull();
    expect(loadDraft('b')).toBeNull();
  });
});
