// egressd dashboard: Bindings attach a secret to a sandbox or computer
// under an env var name (level 1 of the walk).
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const FILTERS = ['resource_id', 'resource_type', 'secret_id'];

  // CHOICES is the most secrets and sandboxes the form offers to pick from
  // (and the table names secrets by); past it, an id is pasted.
  const CHOICES = 5000;

  function createForm(secrets, sandboxes, reload) {
    const err = h('p', { class: 'form-error', role: 'alert' });
    const secretSel = h('select', { name: 'secret_id', required: true },
      h('option', { value: '' }, 'Choose a secret'),
      secrets.rows.map((s) => h('option', { value: s.id }, `${s.name} · ${s.scope}${s.disabled ? ' (disabled)' : ''}`)));
    // More secrets than the list holds: an id typed here wins over it.
    const secretID = secrets.more ? EG.input('secret_id_typed', { placeholder: 'sec_…' }) : null;
    const listId = EG.uid('sandboxes');
    const resource = EG.input('resource_id', { required: true, list: listId });
    const form = h('form', { class: 'grid', novalidate: true, 'aria-label': 'Add a binding', id: 'binding-create' },
      EG.field('Secret', secretSel, secrets.more ? `The first ${secrets.rows.length} secrets by id.` : null),
      secretID ? EG.field('Or a secret id', secretID, 'For a secret past the list.') : null,
      EG.field('Sandbox or computer id', resource, sandboxes.more ? `Pick from the list (the first ${sandboxes.rows.length}) or paste an id.` : 'Pick from the list or paste an id.'),
      h('datalist', { id: listId }, sandboxes.rows.map((x) => h('option', { value: x.id }, x.name || x.external_user_id || x.owner_user_id || x.id))),
      EG.field('Resource type', EG.select('resource_type', ['sandbox', 'computer'], 'sandbox')),
      EG.field('Expose as env var', EG.input('expose_as_env', { placeholder: 'OPENAI_API_KEY' }), 'Optional: the variable the placeholder goes in.'),
      err,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Create binding')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const v = EG.formValues(form);
      if (v.secret_id_typed) v.secret_id = v.secret_id_typed;
      delete v.secret_id_typed;
      try {
        await EG.busy(form, () => EG.api('POST', '/api/v1/egress/bindings', { body: EG.compact(v) }));
        form.reset();
        EG.say('Binding created.');
        await reload();
      } catch (e) {
        EG.fail(e, err);
      }
    });
    return EG.fold('binding-add', 'Add a binding', false, form);
  }

  function filterForm(r) {
    const q = r.query;
    const form = h('form', { class: 'grid', role: 'search', 'aria-label': 'Filter bindings' },
      EG.field('Resource id', EG.input('resource_id', { value: q.get('resource_id') || '' })),
      EG.field('Resource type', EG.select('resource_type', ['', 'sandbox', 'computer'], q.get('resource_type') || '')),
      EG.field('Secret id', EG.input('secret_id', { value: q.get('secret_id') || '' })),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Apply filters'),
        h('button', { type: 'button', class: 'secondary', onclick: () => EG.go('bindings') }, 'Clear')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      EG.go('bindings', EG.formValues(form));
    });
    return EG.fold('bindings-filter', 'Filter', FILTERS.some((f) => q.get(f)), form);
  }

  EG.pages.bindings = {
    title: 'Bindings',
    async render(view, r, live) {
      view.append(...EG.header('Bindings', 'A binding puts one secret into one sandbox or computer under an env var name. It wins over every scope in the walk.'));
      const query = EG.params(r.query, FILTERS);
      let names = {};
      let reload;
      const cols = [
        { label: 'Env var', rowHeader: true, cell: (b) => (b.expose_as_env ? EG.code(b.expose_as_env) : h('span', { class: 'muted' }, 'by name')) },
        { label: 'Secret', cell: (b) => [names[b.secret_id] || '', h('span', { class: 'sub mono' }, b.secret_id)] },
        { label: 'Resource', cell: (b) => [h('span', { class: 'mono' }, b.resource_id), h('span', { class: 'sub' }, b.resource_type)] },
        { label: 'Created', cell: (b) => EG.time(b.created_at) },
      ];
      if (EG.canWrite()) {
        cols.push({ label: 'Actions', cell: (b) => h('div', { class: 'row-actions' }, h('button', { type: 'button', class: 'danger', 'aria-label': `Delete binding ${b.id}`, onclick: async () => {
          const what = `${names[b.secret_id] || b.secret_id} on ${b.resource_id}`;
          if (!(await EG.confirm('Delete this binding?', `The binding of ${what} is deleted; the sandbox stops getting the secret through it at once.`))) return;
          try {
            await EG.api('DELETE', `/api/v1/egress/bindings/${encodeURIComponent(b.id)}`);
            EG.say('Binding deleted.');
            await reload();
          } catch (e) {
            EG.fail(e);
          }
        } }, 'Delete')) });
      }
      // Bindings come a page at a time, in id order; More adds the next.
      const list = EG.pagedList({
        id: 'bindings-list', path: '/api/v1/egress/bindings', query, field: 'bindings', live,
        render: (rows, more) => EG.table(`${rows.length} binding${rows.length === 1 ? '' : 's'}${more ? ' shown, more follow' : ''}`, cols, rows,
          Object.keys(query).length ? 'No binding matches these filters.' : 'No bindings.'),
      });
      reload = () => list.load();
      const [secrets, sandboxes] = await Promise.all([
        EG.all('/api/v1/egress/secrets', {}, 'secrets', CHOICES),
        EG.all('/api/v1/sandboxes', {}, 'sandboxes', CHOICES),
      ]);
      if (!live()) return;
      names = Object.fromEntries(secrets.rows.map((s) => [s.id, s.name]));
      if (EG.canWrite()) view.append(createForm(secrets, sandboxes, reload));
      view.append(filterForm(r), list.el);
      await reload();
    },
  };
})();
