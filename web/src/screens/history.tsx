import { Link, Loading, Pager, ProblemBox, Title, useApp, useLoad } from '../app';
import { dateTimeKst, month as fmtMonth } from '../format';
import { failureReasons, inquiryResults, label, statusLabels } from '../i18n';
import { paths } from '../router';

export const PAGE_SIZE = 10;

/** The line's product-change requests, newest first, a page at a time. */
export function ChangesScreen({ line, page }: { line: string; page: number }) {
  const { t, lang, api } = useApp();
  const res = useLoad((signal) => api.lineChanges(line, page - 1, PAGE_SIZE, signal), [line, page]);
  const d = res.data;
  return (
    <section>
      <Title>{t('changesTitle')}</Title>
      <p class="sub">
        {t('line')} {line}
      </p>
      {res.loading && <Loading />}
      <ProblemBox error={res.error} onRetry={res.reload} />
      {d && d.totalElements === 0 && <p data-testid="empty">{t('noChanges')}</p>}
      {d && d.items.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-labelledby="screen-title">
          <table data-testid="changes">
            <thead>
              <tr>
                <th scope="col">{t('requestedAt')}</th>
                <th scope="col">{t('currentProduct')}</th>
                <th scope="col">{t('newProduct')}</th>
                <th scope="col">{t('status')}</th>
                <th scope="col">{t('failureReason')}</th>
              </tr>
            </thead>
            <tbody>
              {d.items.map((r) => (
                <tr key={r.requestId} data-request-id={r.requestId} data-status={r.status}>
                  <td data-label={t('requestedAt')}>
                    <Link href={paths.request(line, r.requestId)}>{dateTimeKst(r.requestedAt)}</Link>
                  </td>
                  <td data-label={t('currentProduct')}>{r.currentProductCode}</td>
                  <td data-label={t('newProduct')}>{r.newProductCode ?? r.targetProductCode}</td>
                  <td data-label={t('status')}>{label(statusLabels, r.status, lang)}</td>
                  <td data-label={t('failureReason')}>{r.failureReason ? label(failureReasons, r.failureReason, lang) : '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {d && <Pager page={page} pages={d.totalPages} href={(p) => paths.changes(line, p)} />}
    </section>
  );
}

/** The line's recorded bill inquiries (UFR-BILL-040), newest first, a page at a time. */
export function InquiriesScreen({ line, page }: { line: string; page: number }) {
  const { t, lang, api } = useApp();
  const res = useLoad((signal) => api.billHistory(line, page - 1, PAGE_SIZE, signal), [line, page]);
  const d = res.data;
  return (
    <section>
      <Title>{t('inquiriesTitle')}</Title>
      <p class="sub">
        {t('line')} {line}
      </p>
      {res.loading && <Loading />}
      <ProblemBox error={res.error} onRetry={res.reload} />
      {d && d.totalElements === 0 && <p data-testid="empty">{t('noInquiries')}</p>}
      {d && d.items.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-labelledby="screen-title">
          <table data-testid="inquiries">
            <thead>
              <tr>
                <th scope="col">{t('inquiredAt')}</th>
                <th scope="col">{t('month')}</th>
                <th scope="col">{t('result')}</th>
              </tr>
            </thead>
            <tbody>
              {d.items.map((i) => (
                <tr key={i.inquiryId}>
                  <td data-label={t('inquiredAt')}>{dateTimeKst(i.inquiredAt)}</td>
                  <td data-label={t('month')}>
                    <Link href={paths.bill(line, i.month)}>{fmtMonth(i.month, lang)}</Link>
                  </td>
                  <td data-label={t('result')}>{label(inquiryResults, i.result, lang)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {d && <Pager page={page} pages={d.totalPages} href={(p) => paths.inquiries(line, p)} />}
    </section>
  );
}
