import { Link, Loading, ProblemBox, Title, useApp, useLoad } from '../app';
import type { Bill } from '../api';
import { count, dataMb, date, dateTimeKst, minutes, month as fmtMonth, won, wonDiscount } from '../format';
import { label, paymentMethods, paymentStatuses } from '../i18n';
import { paths } from '../router';

/** UFR-BILL-020/030: every field of one month's bill. */
export function BillScreen({ line, month }: { line: string; month: string }) {
  const { t, lang, api } = useApp();
  const bill = useLoad((signal) => api.bill(line, month, signal), [line, month]);
  return (
    <section>
      <Title>{t('billTitle', { month: fmtMonth(month, lang) })}</Title>
      <p class="sub">
        {t('line')} {line} · <Link href={paths.menu(line)}>{t('otherMonths')}</Link>
      </p>
      {bill.loading && <Loading />}
      <ProblemBox error={bill.error} onRetry={bill.reload} />
      {bill.data && <BillBody bill={bill.data} />}
    </section>
  );
}

function BillBody({ bill }: { bill: Bill }) {
  const { t, lang } = useApp();
  const c = bill.contract;
  return (
    <div data-testid="bill">
      <div class="card total">
        <span>{t('totalAmount')}</span>
        <strong data-testid="bill-total" data-amount={bill.totalAmount}>
          {won(bill.totalAmount, lang)}
        </strong>
      </div>
      <div class="card">
        <dl class="facts">
          <dt>{t('product')}</dt>
          <dd data-testid="bill-product">
            {bill.productName} <small>({bill.productCode})</small>
          </dd>
          <dt>{t('contract')}</dt>
          <dd data-testid="bill-contract">
            {c && c.commitmentMonths > 0
              ? t('contractText', { months: c.commitmentMonths, from: date(c.startedOn, lang), to: date(c.endsOn, lang) })
              : t('noCommitment')}
          </dd>
          <dt>{t('billingMonth')}</dt>
          <dd data-testid="bill-month">{fmtMonth(bill.month, lang)}</dd>
          <dt>{t('monthlyFee')}</dt>
          <dd>{won(bill.monthlyFee, lang)}</dd>
          <dt>{t('usageCharges')}</dt>
          <dd>{won(bill.usageCharges, lang)}</dd>
        </dl>
      </div>
      <div class="card">
        <h2>{t('discounts')}</h2>
        {bill.discounts.length === 0 ? (
          <p>{t('noDiscounts')}</p>
        ) : (
          <dl class="facts" data-testid="bill-discounts">
            {bill.discounts.map((d) => [<dt key={`n${d.name}`}>{d.name}</dt>, <dd key={`a${d.name}`}>{wonDiscount(d.amount, lang)}</dd>])}
          </dl>
        )}
      </div>
      <div class="card">
        <h2>{t('usage')}</h2>
        <dl class="facts" data-testid="bill-usage">
          <dt>{t('voice')}</dt>
          <dd>{minutes(bill.usage.voiceMinutes, lang)}</dd>
          <dt>{t('sms')}</dt>
          <dd>{count(bill.usage.smsCount, lang)}</dd>
          <dt>{t('data')}</dt>
          <dd>{dataMb(bill.usage.dataMb, lang)}</dd>
        </dl>
      </div>
      <div class="card">
        <dl class="facts">
          <dt>{t('earlyTerminationFee')}</dt>
          <dd data-testid="bill-etf">{won(bill.earlyTerminationFee, lang)}</dd>
          <dt>{t('deviceInstallmentBalance')}</dt>
          <dd data-testid="bill-installment">{won(bill.deviceInstallmentBalance, lang)}</dd>
        </dl>
      </div>
      <div class="card">
        <h2>{t('billingInfo')}</h2>
        <dl class="facts" data-testid="bill-billing">
          <dt>{t('billingDate')}</dt>
          <dd>{date(bill.billing.billingDate, lang)}</dd>
          <dt>{t('dueDate')}</dt>
          <dd>{date(bill.billing.dueDate, lang)}</dd>
          <dt>{t('paymentStatus')}</dt>
          <dd data-testid="bill-payment-status" class={`pay-${bill.billing.paymentStatus.toLowerCase()}`}>
            {label(paymentStatuses, bill.billing.paymentStatus, lang)}
          </dd>
          <dt>{t('paymentMethod')}</dt>
          <dd data-testid="bill-payment-method">{label(paymentMethods, bill.billing.paymentMethod, lang)}</dd>
          {bill.billing.paidAt && [<dt key="pa">{t('paidAt')}</dt>, <dd key="pav">{dateTimeKst(bill.billing.paidAt)}</dd>]}
          {bill.billing.paidAmount !== undefined && [
            <dt key="pm">{t('paidAmount')}</dt>,
            <dd key="pmv">{won(bill.billing.paidAmount, lang)}</dd>,
          ]}
        </dl>
      </div>
    </div>
  );
}
