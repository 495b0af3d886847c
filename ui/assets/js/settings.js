// egressd dashboard: Settings → Security. The end-user credentials and
// any-host secrets switches (saved when flipped), the tenant's egress
// host rules, and (read-only: the operator sets them) its source prefixes.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;

  // switchCard is a setting's on/off switch, saved when flipped. o: id (of
  // the checkbox; its state and help get -state and -help), setting (the
  // settings field), title, label, state(on) (the line under the label),
  // said(on) (what the status line says once saved), help (nodes).
  function switchCard(st, o) {
    const box = h('input', { type: 'checkbox', id: o.id, role: 'switch', checked: st[o.setting], 'aria-describedby': o.id + '-help' });
    const state = h('p', { class: 'small', id: o.id + '-state' });
    const showState = () => {
      const [kind, text] = o.state(box.checked);
      state.replaceChildren(EG.badge(box.checked ? 'on' : 'off', kind), ' ' + text);
    };
    showState();
    box.addEventListener('change', async () => {
      const want = box.checked;
      box.disabled = true;
      try {
        const res = await EG.api('PATCH', '/api/v1/tenant/settings', { body: { [o.setting]: want } });
        box.checked = res[o.setting];
        EG.say(o.said(res[o.setting]));
      } catch (e) {
        box.checked = !want;
        EG.fail(e);
      } finally {
        box.disabled = false;
        showState();
      }
    });
    return h('section', { class: 'card', 'aria-labelledby': o.id + '-title' },
      h('h2', { id: o.id + '-title' }, o.title),
      h('div', { class: 'switch' }, box, h('div', null, h('label', { for: o.id }, o.label), state)),
      h('div', { id: o.id + '-help' }, o.help));
  }

  function endUserCard(st) {
    return switchCard(st, {
      id: 'allow-end-user', setting: 'allow_end_user_credentials', title: 'End-user credentials', label: 'Allow end-user-scoped credentials',
      state: (on) => (on ? ['ok', 'End-user credentials resolve.'] : ['warn', 'Only tenant and external_workspace secrets resolve.']),
      said: (on) => (on ? 'End-user credentials are allowed again.' : 'End-user credentials are now off: only tenant and external_workspace secrets resolve.'),
      help: [h('p', null, 'This is a kill switch for credentials that belong to end-users and their sandboxes. It takes effect for the very next request.'),
        h('ul', { class: 'explain' },
          h('li', null, h('strong', null, 'When off: '), 'only secrets of scope ', EG.code('tenant'), ' and ', EG.code('external_workspace'), ' resolve, at whatever level of the walk they are found (a binding of a tenant secret still works). Secrets of scope ', EG.code('external_user'), ', ', EG.code('user'), ', ', EG.code('workspace'), ' and ', EG.code('resource'), ' do not: a request carrying their placeholder goes out with the placeholder unreplaced, and the audit log says why.'),
          h('li', null, h('strong', null, 'When off: '), 'creating an ', EG.code('external_user'), ' secret is refused (403), through this page, the API and OAuth connect alike.'),
          h('li', null, h('strong', null, 'Nothing is deleted: '), 'turn it back on and the same secrets resolve again.'))],
    });
  }

  function anyHostCard(st) {
    return switchCard(st, {
      id: 'allow-any-host', setting: 'allow_any_host_secrets', title: 'Any-host secrets', label: 'Allow secrets whose allowed hosts are *',
      state: (on) => (on ? ['warn', 'A secret may name * and go to whatever host a sandbox asks for.'] : ['ok', 'Every secret names the hosts it may go to.']),
      said: (on) => (on ? 'Any-host secrets are now allowed.' : 'Any-host secrets are now off: secrets whose allowed hosts are * no longer resolve.'),
      help: [h('p', null, 'Off by default. A secret that may go to any host goes wherever a prompt-injected agent points it.'),
        h('ul', { class: 'explain' },
          h('li', null, h('strong', null, 'When on: '), 'a secret may be stored with allowed hosts ', EG.code('*'), '; the Secrets page marks each one.'),
          h('li', null, h('strong', null, 'When off: '), 'storing one is refused (403), and those stored while it was on do not resolve; turn it back on and they do again.'))],
    });
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

  // sourcePrefixesCard shows the addresses the operator granted this
  // tenant for transparent mode; the tenant's keys cannot change them.
  function sourcePrefixesCard(st) {
    const ps = st.source_prefixes || [];
    const body = ps.length
      ? h('ul', { id: 'source-prefixes' }, ...ps.map((p) => h('li', null, EG.code(p))))
      : h('p', { id: 'source-prefixes' }, EG.badge('none', 'warn'), ' Your sandboxes may claim no source address: transparent mode is off for this tenant.');
    return h('section', { class: 'card', 'aria-labelledby': 'source-prefixes-title' }, h('h2', { id: 'source-prefixes-title' }, 'Transparent mode source prefixes'),
      h('p', { class: 'intro' }, 'The addresses inside which your sandboxes may register ', EG.code('source_addrs'), ' for the transparent listener. Only the operator of this egressd sets them.'), body);
  }

  EG.pages.settings = {
    title: 'Settings',
    admin: true,
    async render(view, r, live) {
      const st = await EG.api('GET', '/api/v1/tenant/settings');
      if (!live()) return;
      view.append(...EG.header('Settings → Security', 'Switches that apply to every sandbox of this tenant.'), endUserCard(st), anyHostCard(st), hostsCard(st), sourcePrefixesCard(st));
    },
  };
})();
