// egressd dashboard: sign-in, sign-out and the hash router.
'use strict';
(() => {
  const EG = window.EG;
  const $ = (id) => document.getElementById(id);
  let generation = 0;

  // A platform links an end-user in with /ui/#token=<browser token>: the
  // token is kept in this tab's session storage and taken out of the
  // address bar (and so out of the history) at once.
  function tokenFromFragment() {
    const m = /^#token=([^&]*)/.exec(location.hash);
    if (!m) return;
    let t = '';
    try {
      t = decodeURIComponent(m[1]);
    } catch (_) {
      t = '';
    }
    history.replaceState(null, '', location.pathname + location.search + '#/');
    if (t) EG.setToken(t);
  }

  function showSignin(message) {
    EG.me = null;
    $('nav').hidden = true;
    $('who').hidden = true;
    $('view').replaceChildren();
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
    document.title = 'Sign in · egressd';
    $('signin-token').focus();
  }

  async function signIn(token) {
    let me;
    try {
      me = await EG.api('GET', '/api/v1/whoami', { token });
    } catch (e) {
      if (e.status === 401) return 'That key or token is not valid, or it has expired.';
      return EG.describe(e);
    }
    if (me.key_kind === 'operator') {
      return 'This is the operator key: it can only create tenants. Sign in with a tenant API key.';
    }
    EG.setToken(token);
    EG.me = me;
    return '';
  }

  function showApp() {
    const me = EG.me;
    $('signin').hidden = true;
    $('signin-token').value = '';
    $('nav').hidden = false;
    for (const li of document.querySelectorAll('#nav [data-admin]')) li.hidden = me.read_only;
    const who = $('who-text');
    who.replaceChildren(
      me.tenant_name || me.tenant_id,
      me.read_only
        ? EG.badge('end-user view: ' + me.external_user_id + ' (read-only)', 'warn')
        : EG.badge('admin', 'info'));
    $('who').hidden = false;
  }

  EG.signOut = function signOut(message) {
    EG.clearToken();
    EG.clearMessages();
    history.replaceState(null, '', location.pathname + location.search);
    showSignin(message);
  };
  EG.onUnauthorized = () => EG.signOut('Your session has ended: the key or token is no longer valid. Sign in again.');

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [path, qs] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch (_) {
        return '';
      }
    });
    return { page: parts[0] || '', args: parts.slice(1), query: new URLSearchParams(qs || '') };
  }

  EG.route = async function route() {
    if (!EG.me) return;
    const r = parseHash();
    const fallback = EG.me.read_only ? 'sandboxes' : 'secrets';
    const page = EG.pages[r.page];
    if (!page || (page.admin && EG.me.read_only)) {
      history.replaceState(null, '', '#/' + fallback);
      return route();
    }
    const gen = ++generation;
    const moved = route.last !== undefined && route.last !== r.page;
    route.last = r.page;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === r.page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = page.title + ' · egressd';
    const view = $('view');
    view.replaceChildren();
    view.setAttribute('aria-busy', 'true');
    try {
      await page.render(view, r, () => gen === generation);
    } catch (e) {
      if (gen === generation) EG.fail(e);
    } finally {
      if (gen === generation) view.removeAttribute('aria-busy');
    }
    if (moved && gen === generation) {
      const t = view.querySelector('.page-title');
      if (t) t.focus();
    }
  };

  async function start() {
    tokenFromFragment();
    $('signin-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const input = $('signin-token');
      const token = input.value.trim();
      if (!token) {
        $('signin-error').textContent = 'Paste an API key or a browser token.';
        return;
      }
      const msg = await EG.busy(ev.target, () => signIn(token));
      input.value = '';
      if (msg) {
        $('signin-error').textContent = msg;
        input.focus();
        return;
      }
      showApp();
      EG.route();
    });
    $('signout').addEventListener('click', () => EG.signOut('Signed out.'));
    window.addEventListener('hashchange', () => {
      if (/^#token=/.test(location.hash)) {
        // A new link in the same tab: sign in with its token instead.
        tokenFromFragment();
        return start2();
      }
      EG.clearMessages();
      EG.route();
    });
    await start2();
  }

  async function start2() {
    const token = EG.token();
    if (!token) return showSignin();
    const msg = await signIn(token);
    if (msg) {
      EG.clearToken();
      return showSignin(msg);
    }
    showApp();
    EG.route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
