import { describe, expect, it } from 'vitest';
import {
  dataMb, date, dateTimeKst, groupThousands, isLineNumber, isMonth, maskLineNumber, minutesUntil, month,
  normalizeLineNumber, won, wonDiscount,
} from './format';

describe('won amounts', () => {
  it('groups thousands and names the currency in each language', () => {
    expect(won(0, 'ko')).toBe('0원');
    expect(won(999, 'ko')).toBe('999원');
    expect(won(1000, 'ko')).toBe('1,000원');
    expect(won(61_850, 'ko')).toBe('61,850원');
    expect(won(1_234_567, 'ko')).toBe('1,234,567원');
    expect(won(1_234_567, 'en')).toBe('₩1,234,567');
    expect(won(100_000_000, 'en')).toBe('₩100,000,000');
  });
  it('keeps the sign and never shows fractions', () => {
    expect(won(-5_000, 'ko')).toBe('-5,000원');
    expect(won(-5_000, 'en')).toBe('-₩5,000');
    expect(won(1234.6, 'ko')).toBe('1,235원');
    expect(wonDiscount(16_500, 'ko')).toBe('-16,500원');
    expect(wonDiscount(-16_500, 'en')).toBe('-₩16,500');
  });
  it('shows a dash for what is not a number', () => {
    expect(won(Number.NaN, 'ko')).toBe('–');
  });
  it('groupThousands', () => {
    expect(groupThousands(12)).toBe('12');
    expect(groupThousands(123456)).toBe('123,456');
    expect(groupThousands(-1234567)).toBe('-1,234,567');
  });
});

describe('months', () => {
  it('accepts YYYY-MM only', () => {
    expect(isMonth('2026-03')).toBe(true);
    expect(isMonth('2026-12')).toBe(true);
    expect(isMonth('2026-13')).toBe(false);
    expect(isMonth('2026-00')).toBe(false);
    expect(isMonth('2026-3')).toBe(false);
    expect(isMonth('202603')).toBe(false);
  });
  it('writes a month in Korean and English', () => {
    expect(month('2026-03', 'ko')).toBe('2026년 3월');
    expect(month('2026-11', 'ko')).toBe('2026년 11월');
    expect(month('2026-03', 'en')).toBe('March 2026');
    expect(month('2025-12', 'en')).toBe('December 2025');
    expect(month('junk', 'ko')).toBe('junk');
  });
  it('writes dates and Korean times', () => {
    expect(date('2026-10-25', 'ko')).toBe('2026년 10월 25일');
    expect(date('2026-10-05', 'en')).toBe('Oct 5, 2026');
    // 15:20 UTC is 00:20 the next day in Korea.
    expect(dateTimeKst('2026-11-25T15:20:00Z')).toBe('2026-11-26 00:20 KST');
    expect(dateTimeKst('2026-11-25T13:20:05.123+09:00')).toBe('2026-11-25 13:20 KST');
    expect(dateTimeKst('not a time')).toBe('not a time');
  });
  it('counts minutes until an unlock time', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(minutesUntil('2026-11-25T12:30:00Z', now)).toBe(30);
    expect(minutesUntil('2026-11-25T12:29:01Z', now)).toBe(30);
    expect(minutesUntil('2026-11-25T11:00:00Z', now)).toBe(1);
  });
});

describe('line numbers', () => {
  it('accepts the API form only', () => {
    expect(isLineNumber('010-1234-5678')).toBe(true);
    expect(isLineNumber('011-1234-5678')).toBe(false);
    expect(isLineNumber('010-123-5678')).toBe(false);
    expect(isLineNumber('01012345678')).toBe(false);
  });
  it('normalizes what a customer types', () => {
    expect(normalizeLineNumber('01012345678')).toBe('010-1234-5678');
    expect(normalizeLineNumber('010 1234 5678')).toBe('010-1234-5678');
    expect(normalizeLineNumber(' 010-0000-0001 ')).toBe('010-0000-0001');
    expect(normalizeLineNumber('0101234567')).toBe(null);
    expect(normalizeLineNumber('02-1234-5678')).toBe(null);
    expect(normalizeLineNumber('010-abcd-5678')).toBe(null);
  });
  it('masks the middle digits', () => {
    expect(maskLineNumber('010-1234-5678')).toBe('010-****-5678');
    expect(maskLineNumber('bad')).toBe('bad');
  });
});

describe('usage', () => {
  it('shows data in MB below a GB and in GB above', () => {
    expect(dataMb(512, 'ko')).toBe('512 MB');
    expect(dataMb(10_240, 'en')).toBe('10.0 GB');
    expect(dataMb(1_536, 'ko')).toBe('1.5 GB');
  });
});
