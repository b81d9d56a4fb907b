// The login session (sessionStorage: this tab only, gone when it closes), the
// language choice (localStorage), and drafts: what the customer typed on a screen,
// kept so that a login in between (expired token) loses nothing.
import type { Lang } from './format';
import type { LoginAnswer } from './api';

export interface Session {
  token: string;
  customerId: string;
  lines: string[];
  expiresAt: number;
}

const SESSION = 'phonebill.session';
const RETURN_TO = 'phonebill.returnTo';
const LANG = 'phonebill.lang';
const DRAFT = 'phonebill.draft:';

function store(kind: 'session' | 'local'): Storage | null {
  try {
    return kind === 'session' ? globalThis.sessionStorage : globalThis.localStorage;
  } catch {
    return null;
  }
}

export function sessionFromLogin(a: LoginAnswer, now: number = Date.now()): Session {
  return { token: a.accessToken, customerId: a.customerId, lines: a.lines ?? [], expiresAt: now + a.expiresIn * 1000 };
}

export function loadSession(): Session | null {
  const raw = store('session')?.getItem(SESSION);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Session;
    if (!s.token || !Array.isArray(s.lines)) return null;
    return s;
  } catch {
    return null;
  }
}

export function isExpired(s: Session, now: number = Date.now()): boolean {
  return s.expiresAt <= now;
}

export function saveSession(s: Session | null): void {
  const st = store('session');
  if (!st) return;
  if (s) st.setItem(SESSION, JSON.stringify(s));
  else st.removeItem(SESSION);
}

/** Where to go back to after the next login, and whose place it was. */
export interface ReturnTo {
  path: string;
  customerId: string | null;
}

export function setReturnTo(r: ReturnTo | null): void {
  const st = store('session');
  if (!st) return;
  if (r) st.setItem(RETURN_TO, JSON.stringify(r));
  else st.removeItem(RETURN_TO);
}

export function peekReturnTo(): ReturnTo | null {
  const raw = store('session')?.getItem(RETURN_TO);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as ReturnTo;
  } catch {
    return null;
  }
}

/** The place to resume for this customer (another customer starts afresh, and their drafts go). */
export function takeReturnTo(customerId: string): string | null {
  const r = peekReturnTo();
  setReturnTo(null);
  if (!r) return null;
  if (r.customerId !== customerId) {
    clearAllDrafts();
    return null;
  }
  return r.path;
}

export function clearAllDrafts(): void {
  const st = store('session');
  if (!st) return;
  const keys: string[] = [];
  for (let i = 0; i < st.length; i++) {
    const k = st.key(i);
    if (k && k.startsWith(DRAFT)) keys.push(k);
  }
  keys.forEach((k) => st.removeItem(k));
}

export function loadLang(): Lang {
  const v = store('local')?.getItem(LANG);
  return v === 'en' ? 'en' : 'ko';
}

export function saveLang(lang: Lang): void {
  store('local')?.setItem(LANG, lang);
}

export function saveDraft(key: string, value: unknown): void {
  store('session')?.setItem(DRAFT + key, JSON.stringify(value));
}

export function loadDraft<T>(key: string): T | null {
  const raw = store('session')?.getItem(DRAFT + key);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null;
  }
}

export function clearDraft(key: string): void {
  store('session')?.removeItem(DRAFT + key);
}
