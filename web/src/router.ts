// A small History API router: the paths below are the app's; nginx serves index.html
// for any of them (try_files), so a reload or a pasted address opens the same screen.
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { name: 'login' }
  | { name: 'home' }
  | { name: 'menu'; line: string }
  | { name: 'bill'; line: string; month: string }
  | { name: 'change'; line: string }
  | { name: 'request'; line: string; requestId: string; position?: number }
  | { name: 'changes'; line: string; page: number }
  | { name: 'inquiries'; line: string; page: number }
  | { name: 'notFound' };

const seg = '([^/]+)';

export function parseRoute(pathname: string, search: string = ''): Route {
  const params = new URLSearchParams(search);
  const page = Math.max(1, Number(params.get('page')) || 1);
  const p = pathname.replace(/\/+$/, '') || '/';
  let m: RegExpExecArray | null;
  if (p === '/') return { name: 'home' };
  if (p === '/login') return { name: 'login' };
  if ((m = new RegExp(`^/lines/${seg}$`).exec(p))) return { name: 'menu', line: dec(m[1]) };
  if ((m = new RegExp(`^/lines/${seg}/bills/${seg}$`).exec(p))) return { name: 'bill', line: dec(m[1]), month: dec(m[2]) };
  if ((m = new RegExp(`^/lines/${seg}/change$`).exec(p))) return { name: 'change', line: dec(m[1]) };
  if ((m = new RegExp(`^/lines/${seg}/change/${seg}$`).exec(p))) {
    const pos = params.get('position');
    return { name: 'request', line: dec(m[1]), requestId: dec(m[2]), position: pos && /^\d+$/.test(pos) ? Number(pos) : undefined };
  }
  if ((m = new RegExp(`^/lines/${seg}/changes$`).exec(p))) return { name: 'changes', line: dec(m[1]), page };
  if ((m = new RegExp(`^/lines/${seg}/inquiries$`).exec(p))) return { name: 'inquiries', line: dec(m[1]), page };
  return { name: 'notFound' };
}

function dec(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const enc = encodeURIComponent;

export const paths = {
  login: () => '/login',
  menu: (line: string) => `/lines/${enc(line)}`,
  bill: (line: string, month: string) => `/lines/${enc(line)}/bills/${enc(month)}`,
  change: (line: string) => `/lines/${enc(line)}/change`,
  request: (line: string, id: string, position?: number) =>
    `/lines/${enc(line)}/change/${enc(id)}${position !== undefined ? `?position=${position}` : ''}`,
  changes: (line: string, page = 1) => `/lines/${enc(line)}/changes${page > 1 ? `?page=${page}` : ''}`,
  inquiries: (line: string, page = 1) => `/lines/${enc(line)}/inquiries${page > 1 ? `?page=${page}` : ''}`,
};

const listeners = new Set<() => void>();

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (opts.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  listeners.forEach((l) => l());
}

export function currentPath(): string {
  return location.pathname + location.search;
}

export function useLocation(): { pathname: string; search: string } {
  const [loc, setLoc] = useState({ pathname: location.pathname, search: location.search });
  useEffect(() => {
    const update = () => setLoc({ pathname: location.pathname, search: location.search });
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return loc;
}
