// Shared by the browser tests: one headless Debian chromium (playwright-core, no browser
// download), pages at phone and desktop widths, screenshots, and direct API calls
// through the same origin (nginx) to compare what the screens show with the APIs.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_URL = process.env.WEB_URL ?? 'http://127.0.0.1:18480';
export const SHOTS = process.env.WEB_SCREENSHOTS ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

mkdirSync(SHOTS, { recursive: true });

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
    ],
  });
}

/** A fresh context (its own sessionStorage) and page. */
export async function newPage(browser, { viewport = DESKTOP, lang = 'ko' } = {}) {
  const context = await browser.newContext({ viewport, locale: lang === 'ko' ? 'ko-KR' : 'en-US', timezoneId: 'Asia/Seoul' });
  await context.addInitScript((l) => {
    if (!localStorage.getItem('phonebill.lang')) localStorage.setItem('phonebill.lang', l);
  }, lang);
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.errors = errors;
  return page;
}

/** Full-page screenshots of the current screen at phone and desktop width. */
export async function shoot(page, name) {
  const before = page.viewportSize();
  for (const [label, size] of [['phone', PHONE], ['desktop', DESKTOP]]) {
    await page.setViewportSize(size);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await page.screenshot({ path: join(SHOTS, `${name}-${label}.png`), fullPage: true });
  }
  if (before) await page.setViewportSize(before);
}

export async function loginUi(page, customerId, password = `demo-${customerId}`) {
  await page.goto(`${WEB_URL}/login`);
  await page.fill('#customerId', customerId);
  await page.fill('#password', password);
  await page.click('[data-testid=login-submit]');
  await page.waitForURL(/\/lines\/010-/);
}

export async function api(path, { token, method = 'GET', body, headers = {} } = {}) {
  const res = await fetch(WEB_URL + path, {
    method,
    headers: {
      accept: 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, json, text };
}

export async function apiLogin(customerId, password = `demo-${customerId}`) {
  const r = await api('/api/v1/auth/login', { method: 'POST', body: { customerId, password } });
  if (r.status !== 200) throw new Error(`login ${customerId}: ${r.status} ${r.text}`);
  return r.json;
}

/** Polls `fn` until it returns a truthy value or the deadline passes (no fixed sleeps in tests). */
export async function eventually(fn, { timeoutMs = 20_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let pause = 50;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} not met after ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 500);
  }
}

export const line = (n) => `010-0000-${String(n).padStart(4, '0')}`;
export const cust = (n) => `CUST${String(n).padStart(4, '0')}`;
