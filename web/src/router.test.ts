import { describe, expect, it } from 'vitest';
import { parseRoute, paths } from './router';

describe('routes', () => {
  it('parses every screen and builds the same paths back', () => {
    const line = '010-0000-0001';
    expect(parseRoute('/')).toEqual({ name: 'home' });
    expect(parseRoute('/login')).toEqual({ name: 'login' });
    expect(parseRoute(paths.menu(line))).toEqual({ name: 'menu', line });
    expect(parseRoute(paths.bill(line, '2026-10'))).toEqual({ name: 'bill', line, month: '2026-10' });
    expect(parseRoute(paths.change(line))).toEqual({ name: 'change', line });
    expect(parseRoute('/lines/010-0000-0001/change/abc', '?position=4')).toEqual({ name: 'request', line, requestId: 'abc', position: 4 });
    expect(parseRoute('/lines/010-0000-0001/changes', '?page=3')).toEqual({ name: 'changes', line, page: 3 });
    expect(parseRoute('/lines/010-0000-0001/inquiries', '?page=x')).toEqual({ name: 'inquiries', line, page: 1 });
    expect(parseRoute('/api/v1/bills')).toEqual({ name: 'notFound' });
    expect(paths.request(line, 'abc', 4)).toBe('/lines/010-0000-0001/change/abc?position=4');
    expect(paths.changes(line, 1)).toBe('/lines/010-0000-0001/changes');
  });
});
