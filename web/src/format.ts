// Formatting of what the APIs return, for Korean and English readers. Pure functions
// (unit tested in format.test.ts).

export type Lang = 'ko' | 'en';

const LINE_RE = /^010-\d{4}-\d{4}$/;
const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** Korean won, integers, thousands separators: `12,345원` / `₩12,345`. */
export function won(amount: number, lang: Lang): string {
  if (!Number.isFinite(amount)) return '–';
  const n = Math.round(amount);
  const digits = groupThousands(Math.abs(n));
  const sign = n < 0 ? '-' : '';
  return lang === 'ko' ? `${sign}${digits}원` : `${sign}₩${digits}`;
}

/** A discount: shown as a reduction. */
export function wonDiscount(amount: number, lang: Lang): string {
  return won(-Math.abs(amount), lang);
}

/** `1234567` -> `1,234,567` (no Intl: the same in every browser and in Node). */
export function groupThousands(n: number): string {
  const s = String(Math.trunc(Math.abs(n)));
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (i > 0 && (s.length - i) % 3 === 0) out += ',';
    out += s[i];
  }
  return (n < 0 ? '-' : '') + out;
}

export function isMonth(value: string): boolean {
  return MONTH_RE.test(value);
}

/** `2026-03` -> `2026년 3월` / `March 2026`. Anything else is returned unchanged. */
export function month(value: string, lang: Lang): string {
  const m = MONTH_RE.exec(value);
  if (!m) return value;
  const year = m[1];
  const mon = Number(m[2]);
  return lang === 'ko' ? `${year}년 ${mon}월` : `${EN_MONTHS[mon - 1]} ${year}`;
}

const EN_MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

export function isLineNumber(value: string): boolean {
  return LINE_RE.test(value);
}

/**
 * A line number as typed (`01012345678`, `010 1234 5678`, `010-1234-5678`) in the API's
 * form `010-1234-5678`, or null when it is not a Korean mobile number of that form.
 */
export function normalizeLineNumber(value: string): string | null {
  const digits = value.replace(/[\s-]/g, '');
  if (!/^010\d{8}$/.test(digits)) return null;
  return `${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`;
}

/** `010-1234-5678` with the middle digits hidden, for places that need less: `010-****-5678`. */
export function maskLineNumber(value: string): string {
  return isLineNumber(value) ? `${value.slice(0, 4)}****${value.slice(8)}` : value;
}

/** Data volume: MB below 1 GB, otherwise GB with one decimal. */
export function dataMb(mb: number, lang: Lang): string {
  if (mb >= 1024) {
    const gb = Math.round((mb / 1024) * 10) / 10;
    return `${gb.toFixed(1)} GB`;
  }
  return lang === 'ko' ? `${groupThousands(mb)} MB` : `${groupThousands(mb)} MB`;
}

export function minutes(n: number, lang: Lang): string {
  return lang === 'ko' ? `${groupThousands(n)}분` : `${groupThousands(n)} min`;
}

export function count(n: number, lang: Lang): string {
  return lang === 'ko' ? `${groupThousands(n)}건` : `${groupThousands(n)}`;
}

const KST_OFFSET_MS = 9 * 3600 * 1000;

function kstParts(iso: string): { y: string; mo: string; d: string; h: string; mi: string } | null {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return null;
  const k = new Date(t + KST_OFFSET_MS);
  const p = (n: number) => String(n).padStart(2, '0');
  return {
    y: String(k.getUTCFullYear()),
    mo: p(k.getUTCMonth() + 1),
    d: p(k.getUTCDate()),
    h: p(k.getUTCHours()),
    mi: p(k.getUTCMinutes()),
  };
}

/** An instant in Korean time (the customers' and the operator's), e.g. `2026-11-25 21:50 KST`. */
export function dateTimeKst(iso: string): string {
  const p = kstParts(iso);
  return p ? `${p.y}-${p.mo}-${p.d} ${p.h}:${p.mi} KST` : iso;
}

/** A calendar date (`YYYY-MM-DD`) as written in each language. */
export function date(value: string, lang: Lang): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return value;
  return lang === 'ko'
    ? `${m[1]}년 ${Number(m[2])}월 ${Number(m[3])}일`
    : `${EN_MONTHS[Number(m[2]) - 1].slice(0, 3)} ${Number(m[3])}, ${m[1]}`;
}

/** Minutes (rounded up) until an instant, at least 1. */
export function minutesUntil(iso: string, now: number = Date.now()): number {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 0;
  return Math.max(1, Math.ceil((t - now) / 60000));
}
