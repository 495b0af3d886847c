// egressd dashboard: Sandboxes (and computers): attribution, the env with
// its placeholders, and the explain view of the six-level walk.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const FILTERS = ['resource_type', 'owner_user_id', 'workspace_id', 'external_user_id', 'external_workspace_id', 'external_project_id'];
  const STATUS = {
    matched: ['matched', 'ok', 'This level resolves the name.'],
    shadowed: ['shadowed', 'info', 'Usable, but a level above matched first.'],
    not_found: ['not found', 'muted', 'No secret of that name here.'],
    empty_attribution: ['no id', 'muted', 'The sandbox has no id for this level, so it matches nothing.'],
    disabled: ['disabled', 'bad', 'A secret is here but disabled: it counts as absent.'],
    no_allowed_hosts: ['no allowed hosts', 'bad', 'A secret is here but has no allowed hosts (stored by an older version): it counts as absent until it is stored again with its hosts.'],
    blocked_by_setting: ['blocked by setting', 'warn', 'A secret is here but a tenant setting (allow_end_user_credentials or allow_any_host_secrets) is off.'],
  };
  const LEVEL_LABEL = {
    binding: 'Binding on this sandbox', user: 'User (owner_user_id)', external_user: 'External user',
    external_workspace: 'External workspace', workspace: 'Workspace', tenant: 'Tenant',
  };

  function listView(view, r, live) {
    const q = r.query;
    const query = EG.params(q, FILTERS);
    const form = h('form', { class: 'grid', role: 'search', 'aria-label': 'Filter sandboxes' },
      EG.field('Type', EG.select('resource_type', ['', 'sandbox', 'computer'], q.get('resource_type') || '')),
      EG.field('Owner user', EG.input('owner_user_id', { value: q.get('owner_user_id') || '' })),
      EG.field('Workspace', EG.input('workspace_id', { value: q.get('workspace_id') || '' })),
      !EG.canWrite() ? null : EG.field('External user', EG.input('external_user_id', { value: q.get('external_user_id') || '' })),
      EG.field('External workspace', EG.input('external_workspace_id', { value: q.get('external_workspace_id') || '' })),
      EG.field('External project', EG.input('external_project_id', { value: q.get('external_project_id') || '' })),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Apply filters'),
        h('button', { type: 'button', class: 'secondary', onclick: () => EG.go('sandboxes') }, 'Clear')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      EG.go('sandboxes', EG.formValues(form));
    });
    view.append(...EG.header('Sandboxes', EG.canWrite()
      ? 'Sandboxes and computers registered with egressd, with the attribution stamped when each was created. Open one for its env and to explain how a name resolves.'
      : 'Your sandboxes. Open one for its env and to see how a name resolves.'),
    EG.fold('sandboxes-filter', 'Filter', FILTERS.some((f) => q.get(f)), form));
    const dash = (v) => v || h('span', { class: 'muted' }, '—');
    const cols = [
      { label: 'Sandbox', rowHeader: true, cell: (x) => [h('a', { href: '#/sandboxes/' + encodeURIComponent(x.id), class: 'mono' }, x.id), x.name ? h('span', { class: 'sub' }, x.name) : null] },
      { label: 'Type', cell: (x) => x.resource_type },
      { label: 'Owner user', cell: (x) => dash(x.owner_user_id) },
      { label: 'Workspace', cell: (x) => dash(x.workspace_id) },
      { label: 'External user', cell: (x) => dash(x.external_user_id) },
      { label: 'External workspace', cell: (x) => dash(x.external_workspace_id) },
      { label: 'External project', cell: (x) => dash(x.external_project_id) },
      { label: 'Created', cell: (x) => EG.time(x.created_at) },
    ];
    // Sandboxes come a page at a time, in id order; More adds the next.
    const list = EG.pagedList({
      id: 'sandboxes-list', path: '/api/v1/sandboxes', query, field: 'sandboxes', live,
      render: (rows, more) => EG.table(`${rows.length} sandbox${rows.length === 1 ? '' : 'es'}${more ? ' shown, more follow' : ''}`, cols, rows,
        Object.keys(query).length ? 'No sandbox matches these filters.' : 'No sandboxes.'),
    });
    view.append(list.el);
    return list.load();
  }

  function explainForm(id, names, out) {
    const listId = EG.uid('names');
    const name = EG.input('name', { required: true, list: listId, id: 'explain-name', pattern: '[A-Za-z0-9_.\\-]{1,128}' });
    const err = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { class: 'grid', novalidate: true, 'aria-label': 'Explain a name' },
      EG.field('Secret name', name, 'The name the walk looks for.'),
      h('datalist', { id: listId }, names.map((n) => h('option', { value: n }))),
      EG.field('Host (optional)', EG.input('host', { placeholder: 'api.openai.com', id: 'explain-host' }), 'Also check the winner may go there.'),
      err,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Explain')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const v = EG.formValues(form);
      if (!v.name) {
        err.textContent = 'Type a secret name.';
        return;
      }
      try {
        const ex = await EG.busy(form, () => EG.api('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}/explain/${encodeURIComponent(v.name)}`, { query: { host: v.host } }));
        out.replaceChildren(...explained(ex).filter(Boolean));
      } catch (e) {
        out.replaceChildren();
        EG.fail(e, err);
      }
    });
    return form;
  }

  function explained(ex) {
    const verdict = ex.resolved
      ? h('p', null, EG.badge('resolves', 'ok'), ` ${ex.name} resolves at level ${ex.level} (secret `, EG.code(ex.secret_id), `, version ${ex.version}).`)
      : h('p', null, EG.badge('does not resolve', 'bad'), ` Nothing resolves ${ex.name} for this sandbox.`);
    const host = ex.host
      ? h('p', null, ex.host_allowed ? EG.badge('host allowed', 'ok') : EG.badge('host not allowed', 'bad'),
        ex.host_allowed ? ` The winner may be sent to ${ex.host}.` : ` The winner may not be sent to ${ex.host}: the proxy refuses (host_not_allowed).`)
      : null;
    const setting = ex.allow_end_user_credentials ? null
      : h('p', { class: 'muted' }, 'allow_end_user_credentials is off: only tenant and external_workspace secrets resolve.');
    return [verdict, host, setting, EG.table('The six levels, first match wins', [
      { label: '#', num: true, cell: (s) => s.rank },
      { label: 'Level', rowHeader: true, cell: (s) => LEVEL_LABEL[s.level] || s.level },
      { label: 'Sandbox id at this level', cell: (s) => (s.attribute ? (s.attribute_value ? [h('span', { class: 'sub' }, s.attribute), h('span', { class: 'mono' }, s.attribute_value)] : h('span', { class: 'muted' }, `no ${s.attribute}`)) : '') },
      { label: 'Status', cell: (s) => { const st = STATUS[s.status] || [s.status, 'muted', '']; return [EG.badge(st[0], st[1]), h('span', { class: 'sub' }, s.detail || st[2])]; } },
      { label: 'Secret', cell: (s) => (s.secret_id ? [h('span', { class: 'mono' }, s.secret_id), h('span', { class: 'sub' }, `${s.scope || ''}${s.version ? ' v' + s.version : ''}`)] : '') },
    ], ex.steps || [])];
  }

  async function detailView(view, id, live) {
    const [sbx, env] = await Promise.all([
      EG.api('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}`),
      EG.api('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}/env`),
    ]);
    if (!live()) return;
    const kv = (label, v) => [h('dt', null, label), h('dd', null, v ? h('span', { class: 'mono' }, v) : h('span', { class: 'muted' }, '—'))];
    const placeholders = env.placeholders || [];
    const other = Object.keys(env.env || {}).filter((k) => !placeholders.some((p) => p.env === k)).sort();
    const out = h('div', { id: 'explain-result', 'aria-live': 'polite' });
    view.append(
      h('p', null, h('a', { href: '#/sandboxes' }, '← All sandboxes')),
      ...EG.header(`${sbx.resource_type === 'computer' ? 'Computer' : 'Sandbox'} ${sbx.name || sbx.id}`),
      h('section', { class: 'card', 'aria-labelledby': 'attr-title' }, h('h2', { id: 'attr-title' }, 'Attribution'),
        h('dl', { class: 'kv' }, kv('Id', sbx.id), kv('Type', sbx.resource_type), kv('Owner user', sbx.owner_user_id),
          kv('Workspace', sbx.workspace_id), kv('External user', sbx.external_user_id),
          kv('External workspace', sbx.external_workspace_id), kv('External project', sbx.external_project_id),
          [h('dt', null, 'Created'), h('dd', null, EG.time(sbx.created_at))])),
      h('section', { class: 'card', 'aria-labelledby': 'env-title' }, h('h2', { id: 'env-title' }, 'Env'),
        h('p', { class: 'intro' }, 'What the sandbox runs with: placeholders only, never a value. The proxy token was shown once, when the sandbox was created.'),
        EG.table('Placeholders', [
          { label: 'Variable', rowHeader: true, cell: (p) => EG.code(p.env) },
          { label: 'Placeholder', cell: (p) => EG.code(p.placeholder) },
          { label: 'Secret', cell: (p) => [p.name, h('span', { class: 'sub mono' }, p.secret_id)] },
          { label: 'Level', cell: (p) => p.level },
        ], placeholders, 'No secret resolves for this sandbox now.'),
        h('details', null, h('summary', null, `Proxy and CA variables (${other.length})`),
          EG.table('Other variables', [
            { label: 'Variable', rowHeader: true, cell: (k) => EG.code(k) },
            { label: 'Value', cell: (k) => EG.code(env.env[k]) },
          ], other))),
      h('section', { class: 'card', 'aria-labelledby': 'explain-title' }, h('h2', { id: 'explain-title' }, 'Explain a name'),
        h('p', { class: 'intro' }, 'The six-level walk for one name, level by level: which secret wins, and why the others do not.'),
        explainForm(sbx.id, placeholders.map((p) => p.name), out), out));
  }

  EG.pages.sandboxes = {
    title: 'Sandboxes',
    render(view, r, live) {
      if (r.args[0]) return detailView(view, r.args[0], live);
      return listView(view, r, live);
    },
  };
})();
