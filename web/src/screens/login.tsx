import { useState } from 'preact/hooks';
import { ProblemBox, Title, useApp } from '../app';
import { ApiProblem } from '../api';
import { navigate, paths } from '../router';
import { clearDraft, loadDraft, saveDraft, sessionFromLogin, takeReturnTo } from '../session';

export function LoginScreen() {
  const { t, api, setSession } = useApp();
  const reason = new URLSearchParams(location.search).get('reason');
  const draft = loadDraft<{ customerId: string }>('login');
  const [customerId, setCustomerId] = useState(draft?.customerId ?? '');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const id = customerId.trim();
    if (!id || !password) {
      setError(new ApiProblem(0, 'INVALID_FIELDS'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const answer = await api.login(id, password);
      clearDraft('login');
      const session = sessionFromLogin(answer);
      setSession(session);
      const back = takeReturnTo(session.customerId);
      navigate(back ?? paths.menu(session.lines[0] ?? ''), { replace: true });
    } catch (err) {
      setError(err);
      setPassword('');
      setBusy(false);
    }
  };

  return (
    <section class="login">
      <Title>{t('loginTitle')}</Title>
      {reason === 'expired' && (
        <p class="notice" role="status" data-testid="expired-notice">
          {t('sessionExpired')}
        </p>
      )}
      {reason === 'logout' && (
        <p class="notice" role="status" data-testid="logout-notice">
          {t('loggedOut')}
        </p>
      )}
      <p>{t('loginIntro')}</p>
      <form onSubmit={submit} novalidate data-testid="login-form">
        <label for="customerId">{t('customerId')}</label>
        <input
          id="customerId"
          name="customerId"
          autoComplete="username"
          autoCapitalize="characters"
          spellcheck={false}
          required
          value={customerId}
          onInput={(e) => {
            const v = (e.target as HTMLInputElement).value;
            setCustomerId(v);
            saveDraft('login', { customerId: v });
          }}
        />
        <label for="password">{t('password')}</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
        />
        <button type="submit" class="primary" disabled={busy} data-testid="login-submit">
          {busy ? t('loggingIn') : t('loginButton')}
        </button>
      </form>
      {error instanceof ApiProblem && error.code === 'INVALID_FIELDS' && error.status === 0 ? (
        <p class="problem" role="alert" data-testid="problem" data-code="REQUIRED">
          {t('required')}
        </p>
      ) : (
        <ProblemBox error={error} />
      )}
    </section>
  );
}
