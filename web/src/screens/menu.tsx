import { Link, Loading, ProblemBox, Title, useApp, useLoad } from '../app';
import { month as fmtMonth } from '../format';
import { paths } from '../router';

/** UFR-BILL-010: the customer's lines, the months that have a bill, the current month. */
export function MenuScreen({ line }: { line: string }) {
  const { t, lang, api, session } = useApp();
  const menu = useLoad((signal) => api.billMenu(line, signal), [line]);
  // The menu's own list of the caller's lines, else the one from the login answer.
  const lines = menu.data?.lines ?? session?.lines ?? [];
  return (
    <section>
      <Title>{t('menuTitle')}</Title>
      <div class="card">
        <h2>{t('yourLines')}</h2>
        <ul class="lines" data-testid="lines">
          {lines.map((l) => (
            <li key={l}>
              <Link href={paths.menu(l)} current={l === line} class="line-link">
                {l}
              </Link>
            </li>
          ))}
        </ul>
      </div>
      {menu.loading && <Loading />}
      <ProblemBox error={menu.error} onRetry={menu.reload} />
      {menu.data && (
        <div class="card" data-testid="bill-menu">
          <dl class="facts">
            <dt>{t('customer')}</dt>
            <dd data-testid="menu-customer">{menu.data.customerId}</dd>
            <dt>{t('line')}</dt>
            <dd data-testid="menu-line">{menu.data.lineNumber}</dd>
            <dt>{t('currentMonth')}</dt>
            <dd>
              <Link href={paths.bill(line, menu.data.currentMonth)} data-testid="current-month">
                {fmtMonth(menu.data.currentMonth, lang)}
              </Link>
            </dd>
          </dl>
          <h2>{t('monthsWithBill')}</h2>
          {menu.data.months.length === 0 ? (
            <p>{t('noBills')}</p>
          ) : (
            <ul class="months" data-testid="months">
              {menu.data.months.map((m) => (
                <li key={m}>
                  <Link href={paths.bill(line, m)} class="month-link" data-testid={`month-${m}`}>
                    {fmtMonth(m, lang)}
                  </Link>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
