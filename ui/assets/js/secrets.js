// egressd dashboard: Secrets. Metadata only: a value is typed into a
// password field, sent once, and the field is emptied whatever the answer.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const SCOPES = ['tenant', 'workspace', 'external_workspace', 'external_user', 'user', 'resource'];
  const TYPES = ['generic', 'api_key', 'bearer_token', 'basic_auth', 'password', 'oauth_token'];
  const FILTERS = ['scope', 'type', 'name', 'external_user_id', 'external_workspace_id', 'owner_user_id', 'workspace_id', 'resource_id', 'resource_type'];
  // Which id names the owner of each scope.
  const OWNER = { user: 'owner_user_id', external_user: 'external_user_id', external_workspace: 'external_workspace_id', workspace: 'workspace_id', resource: 'resource_id' };

  function owner(s) {
    const f = OWNER[s.scope];
    if (!f) return '';
    return s.scope === 'resource' ? `${s.resource_type || 'sandbox'} ${s.resource_id}` : s[f];
  }

  // hostsCell shows where a secret may go, with a warning for the two
  // kinds of secret that need one: none (stored by an older version that
  // read no hosts as any host; it no longer resolves) and any host.
  function hostsCell(s) {
    const hosts = s.allowed_hosts || [];
    if (!hosts.length) {
      return [EG.badge('no hosts: does not resolve', 'bad'),
        h('span', { class: 'sub' }, 'Stored without allowed hosts by an older version. Store it again with its hosts.')];
    }
    if (hosts.includes('*')) {
      return [EG.badge('any host', 'warn'),
        h('span', { class: 'sub' }, 'Sent to whatever host a sandbox names; resolves only while Settings allow any-host secrets.')];
    }
    return hosts.join(', ');
  }

  function filterForm(r) {
    const q = r.query;
    const form = h('form', { class: 'grid', 'aria-label': 'Filter secrets', role: 'search' },
      EG.field('Scope', EG.select('scope', [''].concat(SCOPES), q.get('scope') || '')),
      EG.field('Type', EG.select('type', [''].concat(TYPES), q.get('type') || '')),
      EG.field('Name', EG.input('name', { value: q.get('name') || '' })),
      EG.field('External user', EG.input('external_user_id', { value: q.get('external_user_id') || '' })),
      EG.field('External workspace', EG.input('external_workspace_id', { value: q.get('external_workspace_id') || '' })),
      EG.field('Owner user', EG.input('owner_user_id', { value: q.get('owner_user_id') || '' })),
      EG.field('Workspace', EG.input('workspace_id', { value: q.get('workspace_id') || '' })),
      EG.field('Resource id', EG.input('resource_id', { value: q.get('resource_id') || '' })),
      EG.field('Resource type', EG.select('resource_type', ['', 'sandbox', 'computer'], q.get('resource_type') || '')),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit' }, 'Apply filters'),
        h('button', { type: 'button', class: 'secondary', onclick: () => EG.go('secrets') }, 'Clear')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      EG.go('secrets', EG.formValues(form));
    });
    return EG.fold('secrets-filter', 'Filter', FILTERS.some((f) => q.get(f)), form);
  }

  function createForm(reload) {
    const err = h('p', { class: 'form-error', role: 'alert', id: 'secret-create-error' });
    const value = h('input', { type: 'password', name: 'value', id: 'secret-value', autocomplete: 'off', spellcheck: 'false', required: true });
    const scope = EG.select('scope', SCOPES, 'tenant', { id: 'secret-scope' });
    const ownerFields = {
      user: EG.field('Owner user id', EG.input('owner_user_id', { required: true })),
      external_user: EG.field('External user id', EG.input('external_user_id', { id: 'secret-external-user', required: true })),
      external_workspace: EG.field('External workspace id', EG.input('external_workspace_id', { required: true })),
      workspace: EG.field('Workspace id', EG.input('workspace_id', { required: true })),
      resource: [EG.field('Resource id', EG.input('resource_id', { required: true })),
        EG.field('Resource type', EG.select('resource_type', ['sandbox', 'computer'], 'sandbox'))],
    };
    const ownerBox = h('div', { class: 'grid-contents' });
    const showOwner = () => {
      ownerBox.replaceChildren(...[].concat(ownerFields[scope.value] || []));
    };
    scope.addEventListener('change', showOwner);
    showOwner();
    const locations = h('fieldset', { class: 'field wide' }, h('legend', null, 'Substitute in'),
      h('div', { class: 'checks' }, ['header', 'query', 'path', 'body'].map((l) =>
        h('label', null, h('input', { type: 'checkbox', name: 'substitute_in', value: l, checked: l === 'header' }), l))),
      h('small', null, 'Header (Basic credentials included) is the default. Query and path are opt-in: an API may store a URL and hand the value back later. Body is opt-in: agents quote their own placeholders in prompts.'));
    const form = h('form', { class: 'grid', id: 'secret-create', 'aria-label': 'Add a secret', novalidate: true },
      EG.field('Name', EG.input('name', { id: 'secret-name', required: true, pattern: '[A-Za-z0-9_.\\-]{1,128}' }), 'Letters, digits, _ . -'),
      EG.field('Value', value, 'Write-only: stored encrypted, never shown again.'),
      EG.field('Type', EG.select('type', TYPES, 'generic')),
      EG.field('Scope', scope, 'Who the secret belongs to.'),
      ownerBox,
      EG.field('Allowed hosts', h('textarea', { name: 'allowed_hosts', id: 'secret-hosts', rows: '2', spellcheck: 'false', required: true }), 'Required. One a line: api.example.com or *.example.com (not over a public suffix such as *.co.uk). * alone: any host, where Settings allow it.', { class: 'field wide' }),
      locations,
      EG.field('Placeholder prefix', EG.input('placeholder_prefix'), 'Such as sk-proj- so SDKs accept the shape.'),
      EG.field('Expose as env var', EG.input('expose_as_env'), 'Needs a resource id: also binds it there.'),
      err,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Create secret')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const v = EG.formValues(form);
      const body = EG.compact({
        name: v.name, value: value.value, type: v.type, scope: v.scope,
        owner_user_id: v.owner_user_id, external_user_id: v.external_user_id,
        external_workspace_id: v.external_workspace_id, workspace_id: v.workspace_id,
        resource_id: v.resource_id, resource_type: v.resource_id ? v.resource_type : '',
        placeholder_prefix: v.placeholder_prefix, expose_as_env: v.expose_as_env,
      });
      body.allowed_hosts = EG.list(v.allowed_hosts);
      body.substitute_in = [...form.querySelectorAll('input[name=substitute_in]:checked')].map((c) => c.value);
      // The value leaves the page with this request and nowhere else.
      value.value = '';
      try {
        const res = await EG.busy(form, () => EG.api('POST', '/api/v1/egress/secrets', { body }));
        form.reset();
        showOwner();
        EG.say(`Secret ${res.secret.name} ${res.created ? 'created' : 'updated'} (version ${res.secret.version}).`);
        await reload();
      } catch (e) {
        EG.fail(e, err);
      }
    });
    return EG.fold('secret-add', 'Add a secret', false, form);
  }

  async function rotate(s, reload) {
    const input = h('input', { type: 'password', name: 'value', autocomplete: 'off', spellcheck: 'false', required: true });
    const ok = await EG.dialog({
      title: `Rotate ${s.name}`,
      body: [h('p', null, 'The new value replaces the old one at once; sandboxes keep their placeholder.'),
        EG.field('New value', input, 'Write-only.')],
      ok: 'Rotate',
      onOK: async () => {
        const v = input.value;
        input.value = '';
        if (!v) throw new Error('Type the new value.');
        const res = await EG.api('POST', `/api/v1/egress/secrets/${encodeURIComponent(s.id)}/rotate`, { body: { value: v } });
        EG.say(`Secret ${res.name} rotated to version ${res.version}.`);
      },
    });
    if (ok) await reload();
  }

  async function toggle(s, reload) {
    try {
      const res = await EG.api('POST', `/api/v1/egress/secrets/${encodeURIComponent(s.id)}/${s.disabled ? 'enable' : 'disable'}`);
      EG.say(`Secret ${res.name} ${res.disabled ? 'disabled: it no longer resolves' : 'enabled'}.`);
      await reload();
    } catch (e) {
      EG.fail(e);
    }
  }

  async function remove(s, reload) {
    const ok = await EG.confirm(`Delete ${s.name}?`,
      `The secret ${s.name} (${s.scope}${owner(s) ? ' ' + owner(s) : ''}) and its bindings are deleted. Sandboxes stop getting it at once. This cannot be undone.`);
    if (!ok) return;
    try {
      await EG.api('DELETE', `/api/v1/egress/secrets/${encodeURIComponent(s.id)}`);
      EG.say(`Secret ${s.name} deleted.`);
      await reload();
    } catch (e) {
      EG.fail(e);
    }
  }

  EG.pages.secrets = {
    title: 'Secrets',
    async render(view, r, live) {
      const query = EG.params(r.query, FILTERS);
      const filtered = Object.keys(query).length > 0;
      let reload;
      const cols = [
        { label: 'Name', rowHeader: true, cell: (s) => [h('span', { class: 'mono' }, s.name), h('span', { class: 'sub mono' }, s.id)] },
        { label: 'Scope', cell: (s) => [s.scope, owner(s) ? h('span', { class: 'sub mono' }, owner(s)) : null] },
        { label: 'Type', cell: (s) => s.type },
        { label: 'Allowed hosts', cell: hostsCell },
        { label: 'Substitute in', cell: (s) => (s.substitute_in || []).join(', ') },
        { label: 'Version', num: true, cell: (s) => s.version },
        { label: 'State', cell: (s) => (s.disabled ? EG.badge('disabled', 'bad') : EG.badge('enabled', 'ok')) },
        { label: 'Updated', cell: (s) => EG.time(s.updated_at) },
      ];
      if (EG.canWrite()) {
        cols.push({ label: 'Actions', cell: (s) => h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'secondary', 'aria-label': `Rotate ${s.name}`, onclick: () => rotate(s, reload) }, 'Rotate'),
          h('button', { type: 'button', class: 'secondary', 'aria-label': `${s.disabled ? 'Enable' : 'Disable'} ${s.name}`, onclick: () => toggle(s, reload) }, s.disabled ? 'Enable' : 'Disable'),
          h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${s.name}`, onclick: () => remove(s, reload) }, 'Delete')) });
      }
      // Secrets come a page at a time, in id order; More adds the next.
      const list = EG.pagedList({
        id: 'secrets-list', path: '/api/v1/egress/secrets', query, field: 'secrets', live,
        render: (rows, more) => {
          const n = rows.length;
          return EG.table(`${n} secret${n === 1 ? '' : 's'}${more ? ' shown, more follow' : ''}${filtered ? ' matching the filters' : ''}`, cols, rows,
            filtered ? 'No secret matches these filters.' : 'No secrets yet.');
        },
      });
      reload = () => list.load();
      view.append(...EG.header('Secrets', EG.canWrite()
        ? 'Credentials egressd puts in place of placeholders. Values are write-only: neither this page nor the API ever shows one.'
        : 'Your credentials (metadata only). This view is read-only.'));
      if (EG.canWrite()) view.append(createForm(reload));
      view.append(filterForm(r), list.el);
      await reload();
    },
  };
})();
