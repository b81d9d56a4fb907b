import { createContext, type ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Api, ApiProblem, problemMessage } from './api';
import type { Lang } from './format';
import { dateTimeKst, minutesUntil } from './format';
import { checkMessages, label, t as translate, type Key } from './i18n';
import { currentPath, navigate, paths } from './router';
import * as store from './session';

export interface AppCtx {
  lang: Lang;
  setLang: (l: Lang) => void;
  t: (key: Key, vars?: Record<string, string | number>) => string;
  session: store.Session | null;
  setSession: (s: store.Session | null) => void;
  api: Api;
  logout: (everywhere?: boolean) => Promise<void>;
}

export const Ctx = createContext<AppCtx>(null as unknown as AppCtx);
export const useApp = () => useContext(Ctx);

export function useAppState(): AppCtx {
  const [lang, setLangState] = useState<Lang>(store.loadLang());
  const [session, setSessionState] = useState<store.Session | null>(store.loadSession());
  const sessionRef = useRef(session);
  sessionRef.current = session;

  const setSession = useCallback((s: store.Session | null) => {
    store.saveSession(s);
    sessionRef.current = s;
    setSessionState(s);
  }, []);

  const setLang = useCallback((l: Lang) => {
    store.saveLang(l);
    setLangState(l);
  }, []);

  // In the same commit as the text it describes (a plain effect runs after paint, so a
  // screen reader, or a test, could meet English text under lang="ko").
  useLayoutEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);

  const api = useMemo(
    () =>
      new Api({
        token: () => sessionRef.current?.token ?? null,
        // Expired, revoked or forged token: back to login, keeping where the customer
        // was (and the drafts each screen saved) for after the next login.
        onUnauthenticated: () => expire(),
      }),
    [],
  );

  const expire = useCallback(() => {
    const s = sessionRef.current;
    if (!s) return;
    store.setReturnTo({ path: currentPath(), customerId: s.customerId });
    store.saveDraft('login', { customerId: s.customerId });
    setSession(null);
    navigate(`${paths.login()}?reason=expired`, { replace: true });
  }, [setSession]);

  const logout = useCallback(async (everywhere = false) => {
    try {
      await (everywhere ? api.logoutEverywhere() : api.logout());
    } catch {
      // The token is dropped here whatever the server said.
    }
    store.setReturnTo(null);
    store.clearAllDrafts();
    setSession(null);
    navigate(`${paths.login()}?reason=logout`);
  }, [api, setSession]);

  const t = useCallback((key: Key, vars?: Record<string, string | number>) => translate(lang, key, vars), [lang]);

  return { lang, setLang, t, session, setSession, api, logout };
}

/** Loads data for a screen; aborts on unmount or when `deps` change. */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [round, setRound] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setState({ loading: true });
    fn(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, loading: false }),
      (error) => !ctl.signal.aborted && setState({ error, loading: false }),
    );
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, round]);
  return { ...state, reload: () => setRound((r) => r + 1) };
}

export function Link(props: { href: string; children: ComponentChildren; class?: string; current?: boolean; 'data-testid'?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      data-testid={props['data-testid']}
      aria-current={props.current ? 'page' : undefined}
      onClick={(e) => {
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

/** The message for any failure: a problem's code in words, the lock time for ACCOUNT_LOCKED. */
export function ProblemBox(props: { error: unknown; onRetry?: () => void }) {
  const { lang, t, session } = useApp();
  const e = props.error;
  if (e === undefined || e === null) return null;
  const p = e instanceof ApiProblem ? e : new ApiProblem(0, 'UNKNOWN', String(e));
  const transient = p.status === 0 || p.status >= 500 || p.code === 'RATE_LIMITED';
  return (
    <div class="problem" role="alert" data-testid="problem" data-code={p.code}>
      {p.code === 'FORBIDDEN_LINE' && <strong class="problem-title">{t('forbiddenLineTitle')}</strong>}
      <p>{problemMessage(p, lang)}</p>
      {p.code === 'ACCOUNT_LOCKED' && p.extra.lockedUntil && (
        <p data-testid="locked-until">
          {t('lockedUntil', { time: dateTimeKst(p.extra.lockedUntil), minutes: minutesUntil(p.extra.lockedUntil) })}
        </p>
      )}
      {p.extra.failedChecks && p.extra.failedChecks.length > 0 && (
        <ul>
          {p.extra.failedChecks.map((c) => (
            <li key={c.check}>
              {label(checkMessages, c.check, lang)}
              {c.message && <small> — {c.message}</small>}
            </li>
          ))}
        </ul>
      )}
      <p class="problem-code">
        <small>
          {p.code}
          {p.status ? ` · HTTP ${p.status}` : ''}
        </small>
      </p>
      {p.code === 'FORBIDDEN_LINE' && session && session.lines.length > 0 && (
        <p>
          <Link href={paths.menu(session.lines[0])} data-testid="go-home">
            {t('home')}
          </Link>
        </p>
      )}
      {transient && props.onRetry && (
        <button type="button" onClick={props.onRetry}>
          {t('retry')}
        </button>
      )}
    </div>
  );
}

export function Loading() {
  const { t } = useApp();
  return (
    <p class="loading" role="status" aria-live="polite">
      {t('loading')}
    </p>
  );
}

/** The screen's heading; it takes the focus when the screen opens (keyboard and screen readers). */
export function Title(props: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return (
    <h1 tabIndex={-1} ref={ref} id="screen-title">
      {props.children}
    </h1>
  );
}

export function Pager(props: { page: number; pages: number; href: (page: number) => string }) {
  const { t } = useApp();
  if (props.pages <= 1) return null;
  return (
    <nav class="pager" aria-label={t('pagination')}>
      {props.page > 1 ? (
        <Link href={props.href(props.page - 1)} data-testid="pager-prev">
          ← {t('previous')}
        </Link>
      ) : (
        <span aria-hidden="true" class="disabled">← {t('previous')}</span>
      )}
      <span data-testid="pager-status">{t('page', { page: props.page, pages: props.pages })}</span>
      {props.page < props.pages ? (
        <Link href={props.href(props.page + 1)} data-testid="pager-next">
          {t('next')} →
        </Link>
      ) : (
        <span aria-hidden="true" class="disabled">{t('next')} →</span>
      )}
    </nav>
  );
}
