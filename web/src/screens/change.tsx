import { useEffect, useState } from 'preact/hooks';
import { Link, Loading, ProblemBox, Title, useApp, useLoad } from '../app';
import { followRequest, newIdempotencyKey, type ChangeRequest, type Product, type Validation } from '../api';
import { count, dataMb, dateTimeKst, minutes, won } from '../format';
import { checkMessages, failureReasons, label, lineStatuses, statusLabels } from '../i18n';
import { navigate, paths } from '../router';
import { clearDraft, loadDraft, saveDraft } from '../session';

interface Draft {
  target: string;
  key: string;
}

function productName(p: Product): string {
  return p.name ?? p.productName ?? p.productCode;
}

/** UFR-PROD-010/020/030: current plan, the plans the line may change to, pre-check, request. */
export function ChangeScreen({ line }: { line: string }) {
  const { t, lang, api } = useApp();
  const draftKey = `change:${line}`;
  const avail = useLoad((signal) => api.available(line, signal), [line]);
  const [draft, setDraft] = useState<Draft | null>(loadDraft<Draft>(draftKey));
  const [validation, setValidation] = useState<{ target: string; v: Validation } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<'check' | 'submit' | null>(null);

  const choose = (code: string) => {
    // A new choice is a new request: a new Idempotency-Key.
    const d = { target: code, key: draft?.target === code ? draft.key : newIdempotencyKey() };
    setDraft(d);
    saveDraft(draftKey, d);
    setValidation(null);
    setError(null);
  };

  const data = avail.data;
  const body = data && draft ? { lineNumber: line, currentProductCode: data.currentProduct.productCode, targetProductCode: draft.target } : null;

  const check = async () => {
    if (!body) {
      setError(null);
      setValidation(null);
      return;
    }
    setBusy('check');
    setError(null);
    try {
      setValidation({ target: body.targetProductCode, v: await api.validate(body) });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const submit = async () => {
    if (!body || !draft) return;
    setBusy('submit');
    setError(null);
    try {
      const accepted = await api.requestChange(body, draft.key);
      clearDraft(draftKey);
      navigate(paths.request(line, accepted.requestId, accepted.position));
    } catch (e) {
      setError(e);
      setBusy(null);
    }
  };

  const checked = validation && draft && validation.target === draft.target ? validation.v : null;

  return (
    <section>
      <Title>{t('changeTitle')}</Title>
      {avail.loading && <Loading />}
      <ProblemBox error={avail.error} onRetry={avail.reload} />
      {data && (
        <>
          <div class="card" data-testid="current-product">
            <dl class="facts">
              <dt>{t('line')}</dt>
              <dd>{data.lineNumber}</dd>
              <dt>{t('customer')}</dt>
              <dd>{data.customerId}</dd>
              <dt>{t('operator')}</dt>
              <dd>{data.operator}</dd>
              <dt>{t('lineStatus')}</dt>
              <dd>{label(lineStatuses, data.status, lang)}</dd>
              <dt>{t('currentProduct')}</dt>
              <dd data-testid="current-product-code" data-code={data.currentProduct.productCode}>
                {productName(data.currentProduct)} <small>({data.currentProduct.productCode})</small>
                {data.currentProduct.monthlyFee !== undefined && <> · {t('perMonth', { fee: won(data.currentProduct.monthlyFee, lang) })}</>}
              </dd>
            </dl>
          </div>
          {data.pendingChange && (
            <p class="notice" role="status">
              {t('pendingChange', {
                product: data.pendingChange.targetProductCode,
                status: label(statusLabels, data.pendingChange.status, lang),
              })}{' '}
              <Link href={paths.request(line, data.pendingChange.requestId)}>{t('requestTitle')}</Link>
            </p>
          )}
          <form
            class="card"
            onSubmit={(e) => {
              e.preventDefault();
              void (checked?.valid ? submit() : check());
            }}
          >
            <fieldset>
              <legend>{t('availableProducts')}</legend>
              {data.availableProducts.length === 0 && <p>{t('noAvailableProducts')}</p>}
              <ul class="products" data-testid="products">
                {data.availableProducts.map((p) => (
                  <li key={p.productCode}>
                    <label class="product">
                      <input
                        type="radio"
                        name="target"
                        value={p.productCode}
                        checked={draft?.target === p.productCode}
                        onChange={() => choose(p.productCode)}
                        data-testid={`product-${p.productCode}`}
                      />
                      <span>
                        <strong>{productName(p)}</strong> <small>({p.productCode})</small>
                        <br />
                        {p.monthlyFee !== undefined && t('perMonth', { fee: won(p.monthlyFee, lang) })}
                        <br />
                        <small>
                          {t('allowance', {
                            data: p.dataMb == null ? t('unlimited') : dataMb(p.dataMb, lang),
                            voice: p.voiceMinutes == null ? t('unlimited') : minutes(p.voiceMinutes, lang),
                            sms: p.smsCount == null ? t('unlimited') : count(p.smsCount, lang),
                          })}
                        </small>
                      </span>
                    </label>
                  </li>
                ))}
              </ul>
            </fieldset>
            {!draft && <p class="hint">{t('chooseProduct')}</p>}
            <div class="actions">
              <button type="button" onClick={() => void check()} disabled={!draft || busy !== null} data-testid="check">
                {busy === 'check' ? t('checking') : t('checkButton')}
              </button>
              <button type="button" class="primary" onClick={() => void submit()} disabled={!checked?.valid || busy !== null} data-testid="submit">
                {busy === 'submit' ? t('submitting') : t('submitButton')}
              </button>
            </div>
          </form>
          {checked && (
            <div class={`card precheck ${checked.valid ? 'ok' : 'bad'}`} role="status" aria-live="polite" data-testid="precheck" data-valid={String(checked.valid)}>
              <h2>{t('precheckTitle')}</h2>
              <p>{checked.valid ? t('precheckOk') : t('precheckFailed')}</p>
              <ul class="checks">
                {checked.checks.map((c) => (
                  <li key={c.check} class={c.passed ? 'pass' : 'fail'}>
                    <span aria-hidden="true">{c.passed ? '✓' : '✗'}</span> {label(checkMessages, c.check, lang)}
                    {!c.passed && c.message && <small> — {c.message}</small>}
                  </li>
                ))}
              </ul>
            </div>
          )}
          <ProblemBox error={error} />
        </>
      )}
    </section>
  );
}

/** UFR-PROD-040: the request's status, updating by itself until COMPLETED or FAILED. */
export function RequestScreen({ line, requestId, position }: { line: string; requestId: string; position?: number }) {
  const { t, lang, api } = useApp();
  const [req, setReq] = useState<ChangeRequest | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [round, setRound] = useState(0);

  useEffect(() => {
    const ctl = new AbortController();
    setError(null);
    followRequest(api, requestId, position, (r) => !ctl.signal.aborted && setReq(r), { signal: ctl.signal }).catch(
      (e) => !ctl.signal.aborted && (e as Error)?.name !== 'AbortError' && setError(e),
    );
    return () => ctl.abort();
  }, [requestId, position, round]);

  const done = req && (req.status === 'COMPLETED' || req.status === 'FAILED');
  return (
    <section>
      <Title>{t('requestTitle')}</Title>
      {!req && !error && <Loading />}
      <ProblemBox error={error} onRetry={() => setRound((r) => r + 1)} />
      {req && (
        <div class="card" data-testid="request">
          <p class={`status status-${req.status.toLowerCase()}`} role="status" aria-live="polite" data-testid="request-status" data-status={req.status}>
            {t('status')}: <strong>{label(statusLabels, req.status, lang)}</strong>
          </p>
          <p class="hint">{done ? t('statusDone') : t('statusUpdating')}</p>
          <dl class="facts">
            <dt>{t('requestId')}</dt>
            <dd>
              <code>{req.requestId}</code>
            </dd>
            <dt>{t('line')}</dt>
            <dd>{req.lineNumber}</dd>
            <dt>{t('currentProduct')}</dt>
            <dd>{req.currentProductCode}</dd>
            <dt>{req.status === 'COMPLETED' ? t('newProduct') : t('product')}</dt>
            <dd data-testid="request-target">{req.newProductCode ?? req.targetProductCode}</dd>
            <dt>{t('requestedAt')}</dt>
            <dd>{dateTimeKst(req.requestedAt)}</dd>
            <dt>{t('updatedAt')}</dt>
            <dd>{dateTimeKst(req.updatedAt)}</dd>
            {req.failureReason && [<dt key="fr">{t('failureReason')}</dt>, <dd key="frv">{label(failureReasons, req.failureReason, lang)}</dd>]}
            {req.message && [<dt key="m">{t('message')}</dt>, <dd key="mv">{req.message}</dd>]}
          </dl>
          {done && (
            <p class="actions">
              <Link href={paths.changes(line)} data-testid="see-history">
                {t('seeHistory')}
              </Link>
              <Link href={paths.change(line)}>{t('newChange')}</Link>
            </p>
          )}
        </div>
      )}
    </section>
  );
}
