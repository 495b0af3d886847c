// egressd dashboard: OAuth providers and the tenant's white-label overrides,
// with a live preview of the Connect page's brand and button. The client
// secret is write-only: the API says only whether one is stored.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const COLOR = /^#[0-9a-fA-F]{6}$/;

  // preview draws what the Connect page shows: the brand name and the
  // button, in the override's colour. Text only, set as text.
  function preview(p) {
    const brand = h('p', { class: 'brand-name', id: 'preview-brand' });
    const button = h('span', { class: 'connect', id: 'preview-button', role: 'presentation' });
    const note = h('p', { class: 'small muted' });
    const box = h('div', { class: 'preview', id: 'oauth-preview', 'aria-live': 'polite' }, h('p', { class: 'small muted' }, 'Connect page preview'), brand, button, note);
    box.update = (v) => {
      const name = v.display_name || p.display_name || p.name;
      brand.textContent = name;
      button.textContent = v.button_label || 'Connect ' + name;
      const c = COLOR.test(v.primary_color || '') ? v.primary_color : '';
      // CSSOM, not a style attribute: allowed by the page's CSP.
      button.style.backgroundColor = c || '';
      button.style.color = c ? readableOn(c) : '';
      note.textContent = c ? `Accent colour ${c}.` : 'Default colour.';
    };
    return box;
  }

  // readableOn picks black or white text for a background colour.
  function readableOn(hex) {
    const n = parseInt(hex.slice(1), 16);
    const [r, g, b] = [(n >> 16) & 255, (n >> 8) & 255, n & 255];
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? '#111111' : '#ffffff';
  }

  function editor(p, holder, reload) {
    const o = p.override || {};
    const br = o.branding || {};
    const err = h('p', { class: 'form-error', role: 'alert' });
    const secret = h('input', { type: 'password', name: 'client_secret', id: 'override-secret', autocomplete: 'off', spellcheck: 'false' });
    const colorText = EG.input('primary_color', { id: 'override-color', value: br.primary_color || '', placeholder: '#1f5fbf', pattern: '#[0-9a-fA-F]{6}' });
    const colorPick = h('input', { type: 'color', id: 'override-color-pick', value: COLOR.test(br.primary_color || '') ? br.primary_color : '#24292f', 'aria-label': 'Pick the accent colour' });
    const pv = preview(p);
    const form = h('form', { class: 'grid', id: 'override-form', novalidate: true },
      EG.field('Client id', EG.input('client_id', { id: 'override-client-id', value: o.client_id || '', required: true })),
      EG.field('Client secret', secret, o.has_client_secret ? 'Stored. Leave empty to keep it; type to replace it.' : 'Not stored. Write-only: never shown again.'),
      EG.field('Callback URL (optional)', EG.input('callback_url', { type: 'url', value: o.callback_url || '', placeholder: 'https://app.example.com/oauth/callback' }), 'Your own callback; empty uses egressd\'s.', { class: 'field wide' }),
      EG.field('Display name', EG.input('display_name', { id: 'override-display-name', value: o.display_name || '', placeholder: p.display_name })),
      EG.field('Button label', EG.input('button_label', { id: 'override-button-label', value: br.button_label || '', maxlength: '64', placeholder: 'Connect ' + (p.display_name || p.name) })),
      h('div', { class: 'field' }, h('label', { for: colorText.id }, 'Accent colour'), h('div', { class: 'color-row' }, colorPick, colorText), h('small', null, '#rrggbb; empty for the default.')),
      h('div', { class: 'field wide' }, pv),
      err,
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit' }, p.override ? 'Save override' : 'Add override'),
        h('button', { type: 'button', class: 'secondary', onclick: () => holder.replaceChildren() }, 'Cancel')));
    const refresh = () => pv.update(EG.formValues(form));
    form.addEventListener('input', (ev) => {
      if (ev.target === colorPick) colorText.value = colorPick.value;
      if (ev.target === colorText && COLOR.test(colorText.value)) colorPick.value = colorText.value.toLowerCase();
      refresh();
    });
    refresh();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const v = EG.formValues(form);
      const body = { client_id: v.client_id, client_secret: secret.value, callback_url: v.callback_url, display_name: v.display_name,
        branding: EG.compact({ button_label: v.button_label, primary_color: v.primary_color }) };
      secret.value = '';
      try {
        await EG.busy(form, () => EG.api('PUT', `/api/v1/egress/oauth/overrides/${encodeURIComponent(p.name)}`, { body }));
        EG.say(`Override for ${p.display_name || p.name} saved.`);
        holder.replaceChildren();
        await reload();
      } catch (e) {
        EG.fail(e, err);
      }
    });
    holder.replaceChildren(h('section', { class: 'card', 'aria-labelledby': 'ov-title' },
      h('h2', { id: 'ov-title' }, `${p.override ? 'Edit' : 'Add'} the override for ${p.display_name || p.name}`),
      h('p', { class: 'intro' }, 'Your own OAuth app for this provider: end-users see your name and your button, and tokens are issued to your app.'),
      form));
    form.querySelector('input').focus();
  }

  EG.pages.oauth = {
    title: 'OAuth providers',
    admin: true,
    async render(view, r, live) {
      view.append(...EG.header('OAuth providers', 'The providers end-users can connect, and your white-label overrides. Client secrets are write-only.'));
      const holder = h('div', { id: 'override-editor' });
      const list = h('div', { id: 'providers-list' });
      view.append(list, holder);
      const reload = async () => {
        let data;
        try {
          data = await EG.api('GET', '/api/v1/egress/oauth/providers');
        } catch (e) {
          if (e.status === 501) {
            list.replaceChildren(h('p', { class: 'card' }, e.message));
            return;
          }
          throw e;
        }
        if (!live()) return;
        const inForce = { override: ['your override', 'ok'], operator: ["operator's app", 'info'], none: ['not configured', 'muted'] };
        list.replaceChildren(EG.table('Providers', [
          { label: 'Provider', rowHeader: true, cell: (p) => [p.display_name || p.name, h('span', { class: 'sub mono' }, p.name)] },
          { label: 'Kind', cell: (p) => (p.builtin ? 'built-in' : 'custom') },
          { label: 'App in force', cell: (p) => { const b = inForce[p.in_force] || [p.in_force, 'muted']; return EG.badge(b[0], b[1]); } },
          { label: 'Override', cell: (p) => (p.override
            ? [h('span', { class: 'mono' }, p.override.client_id), h('span', { class: 'sub' }, `client secret ${p.override.has_client_secret ? 'stored' : 'not stored'}`),
              p.override.display_name ? h('span', { class: 'sub' }, 'shown as ' + p.override.display_name) : null]
            : h('span', { class: 'muted' }, 'none')) },
          { label: 'Token hosts', cell: (p) => (p.allowed_hosts || []).join(', ') },
          { label: 'Actions', cell: (p) => h('div', { class: 'row-actions' },
            h('button', { type: 'button', class: 'secondary', 'aria-label': `${p.override ? 'Edit' : 'Add'} override for ${p.name}`, onclick: () => editor(p, holder, reload) }, p.override ? 'Edit' : 'Add override'),
            p.override ? h('button', { type: 'button', class: 'danger', 'aria-label': `Remove override for ${p.name}`, onclick: async () => {
              if (!(await EG.confirm(`Remove the override for ${p.display_name || p.name}?`, 'End-users connect with the operator\'s app again (or cannot connect, if there is none). Its client secret is deleted.', 'Remove'))) return;
              try {
                await EG.api('DELETE', `/api/v1/egress/oauth/overrides/${encodeURIComponent(p.name)}`);
                EG.say(`Override for ${p.display_name || p.name} removed.`);
                holder.replaceChildren();
                await reload();
              } catch (e) {
                EG.fail(e);
              }
            } }, 'Remove') : null) },
        ], data.providers, 'No providers.'));
      };
      await reload();
    },
  };
})();
