// egressd dashboard: Settings → Security. The end-user credentials switch
// (saved when flipped) and the tenant's egress host rules.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;

  function toggleCard(st) {
    const box = h('input', { type: 'checkbox', id: 'allow-end-user', role: 'switch', checked: st.allow_end_user_credentials, 'aria-describedby': 'allow-end-user-help' });
    const state = h('p', { class: 'small', id: 'allow-end-user-state' });
    const showState = () => {
      state.replaceChildren(box.checked
        ? EG.badge('on', 'ok') : EG.badge('off', 'warn'),
      box.checked ? ' End-user credentials resolve.' : ' Only tenant and external_workspace secrets resolve.');
    };
    showState();
    box.addEventListener('change', async () => {
      const want = box.checked;
      box.disabled = true;
      try {
        const res = await EG.api('PATCH', '/api/v1/tenant/settings', { body: { allow_end_user_credentials: want } });
        box.checked = res.allow_end_user_credentials;
        EG.say(res.allow_end_user_credentials
          ? 'End-user credentials are allowed again.'
          : 'End-user credentials are now off: only tenant and external_workspace secrets resolve.');
      } catch (e) {
        box.checked = !want;
        EG.fail(e);
      } finally {
        box.disabled = false;
        showState();
      }
    });
    return h('section', { class: 'card', 'aria-labelledby': 'sec-title' },
      h('h2', { id: 'sec-title' }, 'End-user credentials'),
      h('div', { class: 'switch' }, box, h('div', null,
        h('label', { for: 'allow-end-user' }, 'Allow end-user-scoped credentials'), state)),
      h('div', { id: 'allow-end-user-help' },
        h('p', null, 'This is a kill switch for credentials that belong to end-users and their sandboxes. It takes effect for the very next request.'),
        h('ul', { class: 'explain' },
          h('li', null, h('strong', null, 'When off: '), 'only secrets of scope ', EG.code('tenant'), ' and ', EG.code('external_workspace'), ' resolve, at whatever level of the walk they are found (a binding of a tenant secret still works). Secrets of scope ', EG.code('external_user'), ', ', EG.code('user'), ', ', EG.code('workspace'), ' and ', EG.code('resource'), ' do not: a request carrying their placeholder goes out with the placeholder unreplaced, and the audit log says why.'),
          h('li', null, h('strong', null, 'When off: '), 'creating an ', EG.code('external_user'), ' secret is refused (403), through this page, the API and OAuth connect alike.'),
          h('li', null, h('strong', null, 'Nothing is deleted: '), 'turn it back on and the same secrets resolve again.'))));
  }

  function hostsCard(st) {
    const err = h('p', { class: 'form-error', role: 'alert' });
    const allow = h('textarea', { name: 'egress_allow_hosts', id: 'egress-allow', rows: '4', spellcheck: 'false' }, (st.egress_allow_hosts || []).join('\n'));
    const deny = h('textarea', { name: 'egress_deny_hosts', id: 'egress-deny', rows: '4', spellcheck: 'false' }, (st.egress_deny_hosts || []).join('\n'));
    const ca = EG.input('ca_bundle_path', { id: 'ca-bundle-path', value: st.ca_bundle_path || '', placeholder: '/etc/egressd/ca.pem' });
    const form = h('form', { class: 'grid', novalidate: true },
      EG.field('Allowed hosts', allow, 'One a line (api.openai.com, *.github.com). When set, the only hosts sandboxes may reach. Empty: any public host.', { class: 'field wide' }),
      EG.field('Denied hosts', deny, 'Never reachable; a deny wins over an allow.', { class: 'field wide' }),
      EG.field('Sandbox CA bundle path', ca, 'Where your platform puts egressd\'s CA bundle inside a sandbox; empty for the server default.', { class: 'field wide' }),
      err,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Save egress rules')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const body = { egress_allow_hosts: EG.list(allow.value), egress_deny_hosts: EG.list(deny.value), ca_bundle_path: ca.value.trim() };
      try {
        const res = await EG.busy(form, () => EG.api('PATCH', '/api/v1/tenant/settings', { body }));
        allow.value = (res.egress_allow_hosts || []).join('\n');
        deny.value = (res.egress_deny_hosts || []).join('\n');
        EG.say('Egress rules saved.');
      } catch (e) {
        EG.fail(e, err);
      }
    });
    return h('section', { class: 'card', 'aria-labelledby': 'egress-title' }, h('h2', { id: 'egress-title' }, 'Egress hosts'),
      h('p', { class: 'intro' }, 'Which hosts your sandboxes may reach through the proxy at all, whatever their secrets. Private and metadata addresses are always refused.'), form);
  }

  EG.pages.settings = {
    title: 'Settings',
    admin: true,
    async render(view, r, live) {
      const st = await EG.api('GET', '/api/v1/tenant/settings');
      if (!live()) return;
      view.append(...EG.header('Settings → Security', 'Switches that apply to every sandbox of this tenant.'), toggleCard(st), hostsCard(st));
    },
  };
})();
