import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { Ctx, Link, Title, useApp, useAppState } from './app';
import { isExpired, setReturnTo } from './session';
import { currentPath, navigate, parseRoute, paths, useLocation, type Route } from './router';
import { LoginScreen } from './screens/login';
import { MenuScreen } from './screens/menu';
import { BillScreen } from './screens/bill';
import { ChangeScreen, RequestScreen } from './screens/change';
import { ChangesScreen, InquiriesScreen } from './screens/history';
import './styles.css';

function App() {
  const state = useAppState();
  const loc = useLocation();
  const route = parseRoute(loc.pathname, loc.search);
  const { session } = state;
  const needsLogin = route.name !== 'login' && route.name !== 'notFound';
  const expired = !!session && isExpired(session);

  useEffect(() => {
    if (needsLogin && (!session || expired)) {
      if (expired) {
        setReturnTo({ path: currentPath(), customerId: session!.customerId });
        state.setSession(null);
        navigate(`${paths.login()}?reason=expired`, { replace: true });
      } else {
        if (route.name !== 'home') setReturnTo({ path: currentPath(), customerId: null });
        navigate(paths.login(), { replace: true });
      }
    } else if (route.name === 'home' && session) {
      navigate(paths.menu(session.lines[0] ?? ''), { replace: true });
    } else if (route.name === 'login' && session && !expired) {
      navigate(paths.menu(session.lines[0] ?? ''), { replace: true });
    }
  });

  return (
    <Ctx.Provider value={state}>
      <a class="skip" href="#main">
        {state.t('skipToContent')}
      </a>
      <Header route={route} />
      <main id="main" key={loc.pathname + loc.search}>
        {needsLogin && (!session || expired) ? null : <Screen route={route} />}
      </main>
    </Ctx.Provider>
  );
}

function Screen({ route }: { route: Route }) {
  switch (route.name) {
    case 'login':
      return <LoginScreen />;
    case 'menu':
      return <MenuScreen line={route.line} />;
    case 'bill':
      return <BillScreen line={route.line} month={route.month} />;
    case 'change':
      return <ChangeScreen line={route.line} />;
    case 'request':
      return <RequestScreen line={route.line} requestId={route.requestId} position={route.position} />;
    case 'changes':
      return <ChangesScreen line={route.line} page={route.page} />;
    case 'inquiries':
      return <InquiriesScreen line={route.line} page={route.page} />;
    case 'home':
      return null;
    default:
      return <NotFound />;
  }
}

function NotFound() {
  const { t, session } = useApp();
  return (
    <section>
      <Title>{t('notFoundTitle')}</Title>
      <p>{t('notFoundText')}</p>
      <Link href={session ? paths.menu(session.lines[0] ?? '') : paths.login()}>{t('home')}</Link>
    </section>
  );
}

function Header({ route }: { route: Route }) {
  const { t, lang, setLang, session, logout } = useApp();
  const line = 'line' in route ? route.line : null;
  return (
    <header class="top">
      <div class="bar">
        <span class="brand">{t('appName')}</span>
        <div class="tools">
          <button
            type="button"
            class="lang"
            data-testid="lang-switch"
            lang={lang === 'ko' ? 'en' : 'ko'}
            aria-label={`${t('language')}: ${t('switchTo')}`}
            onClick={() => setLang(lang === 'ko' ? 'en' : 'ko')}
          >
            {t('switchTo')}
          </button>
          {session && (
            <span class="who" data-testid="who">
              {session.customerId}
            </span>
          )}
          {session && (
            <button type="button" data-testid="logout" onClick={() => void logout()}>
              {t('logout')}
            </button>
          )}
          {session && (
            <button type="button" data-testid="logout-everywhere" onClick={() => void logout(true)}>
              {t('logoutEverywhere')}
            </button>
          )}
        </div>
      </div>
      {session && line && (
        <nav class="tabs" aria-label={t('line')}>
          <Link href={paths.menu(line)} current={route.name === 'menu' || route.name === 'bill'}>
            {t('navBills')}
          </Link>
          <Link href={paths.change(line)} current={route.name === 'change' || route.name === 'request'}>
            {t('navChange')}
          </Link>
          <Link href={paths.changes(line)} current={route.name === 'changes'} data-testid="nav-changes">
            {t('navChanges')}
          </Link>
          <Link href={paths.inquiries(line)} current={route.name === 'inquiries'} data-testid="nav-inquiries">
            {t('navInquiries')}
          </Link>
        </nav>
      )}
    </header>
  );
}

render(<App />, document.getElementById('app')!);
