// egressd dashboard: Audit. Filters in the address (so a view can be
// shared), a paginated table, JSON-lines and CSV downloads fetched with the
// bearer token, and charts of requests over time by outcome and by level.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const FILTERS = ['since', 'until', 'external_user_id', 'external_workspace_id', 'sandbox_id', 'secret_id', 'outcome', 'kind'];
  const OUTCOMES = ['', 'substituted', 'passed', 'denied', 'upstream_error', 'tunnelled'];
  const OUTCOME_BADGE = { substituted: 'ok', passed: 'info', denied: 'bad', upstream_error: 'warn', tunnelled: 'muted' };
  const DEFAULT_SINCE = '24h';

  // filtersOf reads the filters from the address: since defaults to 24h,
  // and an empty since (all time) stays empty.
  function filtersOf(q) {
    const f = {};
    for (const k of FILTERS) f[k] = q.get(k) || '';
    if (!q.has('since')) f.since = DEFAULT_SINCE;
    return f;
  }

  function go(f, limit) {
    const p = new URLSearchParams();
    for (const k of FILTERS) if (f[k] || k === 'since') p.set(k, f[k] || '');
    if (limit && limit !== '100') p.set('limit', limit);
    EG.goTo('#/audit?' + p.toString());
  }

  function filterForm(f, limit, browser) {
    const form = h('form', { class: 'grid', role: 'search', 'aria-label': 'Filter the audit log', id: 'audit-filters' },
      EG.field('Since', EG.input('since', { value: f.since, id: 'audit-since', placeholder: 'all time' }), '7d, 12h, 90m or 2026-01-02T15:04:05Z; empty: all.'),
      EG.field('Until', EG.input('until', { value: f.until, id: 'audit-until', placeholder: 'now' }), 'Same forms; empty: now.'),
      browser ? null : EG.field('External user', EG.input('external_user_id', { value: f.external_user_id, id: 'audit-external-user' })),
      EG.field('External workspace', EG.input('external_workspace_id', { value: f.external_workspace_id })),
      EG.field('Sandbox', EG.input('sandbox_id', { value: f.sandbox_id })),
      EG.field('Secret id', EG.input('secret_id', { value: f.secret_id })),
      EG.field('Outcome', EG.select('outcome', OUTCOMES, f.outcome, { id: 'audit-outcome' })),
      EG.field('Kind', EG.select('kind', [['', 'any'], ['request', 'proxied requests'], ['admin', 'admin changes']], f.kind)),
      EG.field('Rows a page', EG.select('limit', [...new Set(['25', '50', '100', '200', limit])].sort((a, b) => a - b), limit)),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit' }, 'Apply filters'),
        h('button', { type: 'button', class: 'secondary', onclick: () => go({ since: DEFAULT_SINCE }) }, 'Clear')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = EG.formValues(form);
      go(v, v.limit);
    });
    return form;
  }

  function who(r) {
    const parts = [];
    if (r.sandbox_id) parts.push(h('span', { class: 'mono' }, r.sandbox_id));
    if (r.external_user_id) parts.push(h('span', { class: 'sub' }, 'user ' + r.external_user_id));
    if (r.external_workspace_id) parts.push(h('span', { class: 'sub' }, 'workspace ' + r.external_workspace_id));
    if (r.kind === 'admin' && r.actor_kind) parts.push(h('span', { class: 'sub' }, `by ${r.actor_kind} ${r.actor_id || ''}`));
    return parts.length ? parts : h('span', { class: 'muted' }, '—');
  }

  const COLS = [
    { label: 'Time', rowHeader: true, cell: (r) => EG.time(r.time) },
    { label: 'Event', cell: (r) => (r.kind === 'admin'
      ? [EG.badge('admin', 'muted'), ' ', h('span', { class: 'mono' }, r.action || '')]
      : [EG.badge(r.outcome || 'unknown', OUTCOME_BADGE[r.outcome] || 'muted'), r.reason ? h('span', { class: 'sub' }, r.reason) : null]) },
    { label: 'Who', cell: who },
    { label: 'Secret', cell: (r) => (r.secret_name || r.secret_id
      ? [r.secret_name || '', r.secret_version ? ` v${r.secret_version}` : '', h('span', { class: 'sub' }, r.level ? 'level ' + r.level : r.secret_id)]
      : '') },
    { label: 'Request', cell: (r) => (r.kind === 'request'
      ? [h('span', { class: 'mono' }, `${r.method || ''} ${r.host || ''}${r.path || ''}`), r.status ? h('span', { class: 'sub' }, `status ${r.status}`) : null]
      : '') },
    { label: 'ms', num: true, cell: (r) => (r.duration_ms ? r.duration_ms.toFixed(1) : '') },
  ];

  async function download(f, format, btn) {
    btn.disabled = true;
    try {
      const res = await EG.api('GET', '/api/v1/audit/export', { query: Object.assign({}, f, { format }), raw: true });
      const blob = await res.blob();
      const m = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
      const name = m ? m[1] : `egressd-audit.${format}`;
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
      EG.say(`Downloaded ${name} (${Math.max(1, Math.round(blob.size / 1024))} KB).`);
    } catch (e) {
      EG.fail(e);
    } finally {
      btn.disabled = false;
    }
  }

  async function charts(box, f, live) {
    const q = EG.compact({ since: f.since, until: f.until, external_user_id: f.external_user_id, external_workspace_id: f.external_workspace_id,
      sandbox_id: f.sandbox_id, secret_id: f.secret_id, outcome: f.outcome });
    if (f.kind === 'admin') {
      box.replaceChildren(h('p', { class: 'muted' }, 'The charts count proxied requests; this view shows admin changes only.'));
      return;
    }
    let sum;
    try {
      sum = await EG.api('GET', '/api/v1/audit/summary', { query: q });
    } catch (e) {
      box.replaceChildren(h('p', { class: 'form-error' }, 'Charts: ' + EG.describe(e)));
      return;
    }
    if (!live()) return;
    const span = h('p', { class: 'small muted', id: 'chart-window' },
      'Proxied requests from ', EG.time(sum.since), ' to ', EG.time(sum.until), `, in buckets of ${human(sum.bucket_seconds)}.`,
      f.since ? '' : ' (All time is charted as the last 90 days.)');
    const trunc = sum.truncated
      ? h('p', { class: 'alert', role: 'note' }, `The chart counted the newest ${sum.total.requests} rows and stopped (its limit is ${sum.max_rows}); rows before `, EG.time(sum.complete_since), ' are not counted. Narrow the window for exact counts.')
      : null;
    box.replaceChildren(...[span, trunc, h('div', { class: 'charts' },
      EG.chart('Requests by outcome', sum, 'outcomes'), EG.chart('Requests by resolving level', sum, 'levels'))].filter(Boolean));
  }

  function human(sec) {
    if (sec % 86400 === 0) return `${sec / 86400} day${sec === 86400 ? '' : 's'}`;
    if (sec % 3600 === 0) return `${sec / 3600} hour${sec === 3600 ? '' : 's'}`;
    if (sec % 60 === 0) return `${sec / 60} minute${sec === 60 ? '' : 's'}`;
    return `${sec} s`;
  }

  EG.pages.audit = {
    title: 'Audit',
    async render(view, r, live) {
      const f = filtersOf(r.query);
      const browser = !EG.canWrite();
      if (browser) f.external_user_id = '';
      const asked = Number(r.query.get('limit'));
      const limit = Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? String(asked) : '100';
      const apiFilters = EG.compact(f);
      if (!f.since && !f.until) delete apiFilters.since;
      const chartFilters = Object.assign({}, f, { since: f.since || '90d' });
      const jsonl = h('button', { type: 'button', class: 'secondary', id: 'download-jsonl' }, 'Download JSON lines');
      const csv = h('button', { type: 'button', class: 'secondary', id: 'download-csv' }, 'Download CSV');
      jsonl.addEventListener('click', () => download(apiFilters, 'jsonl', jsonl));
      csv.addEventListener('click', () => download(apiFilters, 'csv', csv));
      const chartInner = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
      const chartBox = h('section', { class: 'card', id: 'audit-charts', 'aria-labelledby': 'ac-title' }, h('h2', { id: 'ac-title' }, 'Requests over time'), chartInner);
      const tableBox = h('div', { id: 'audit-table' });
      const pageLabel = h('span', { class: 'muted', 'aria-live': 'polite' });
      const prev = h('button', { type: 'button', class: 'secondary', id: 'audit-prev' }, '← Previous');
      const next = h('button', { type: 'button', class: 'secondary', id: 'audit-next' }, 'Next →');
      view.append(...EG.header('Audit log', browser
        ? 'Your requests and the changes made to your credentials. Never a value.'
        : 'Every proxied request that carried a placeholder, and every admin change. Never a value.'),
      h('section', { class: 'card', 'aria-labelledby': 'af-title' }, h('h2', { id: 'af-title' }, 'Filter'), filterForm(f, limit, browser),
        h('div', { class: 'actions' }, h('span', { class: 'small muted' }, 'Download every row matching the filters:'), jsonl, csv)),
      chartBox,
      h('section', { 'aria-labelledby': 'at-title' }, h('h2', { id: 'at-title', class: 'sr-only' }, 'Rows'),
        h('div', { class: 'pager' }, prev, next, pageLabel), tableBox));

      // Pages: the cursors of the pages before this one.
      const stack = [];
      let cursor = '';
      let nextCursor = '';
      const load = async () => {
        const page = await EG.api('GET', '/api/v1/audit', { query: Object.assign({}, apiFilters, { limit, cursor }) });
        if (!live()) return;
        nextCursor = page.next_cursor;
        prev.disabled = stack.length === 0;
        next.disabled = !nextCursor;
        pageLabel.textContent = `Page ${stack.length + 1}${page.rows.length ? `, ${page.rows.length} row${page.rows.length === 1 ? '' : 's'}` : ''}${nextCursor ? '' : ' (last)'}`;
        tableBox.replaceChildren(EG.table('Audit rows, newest first', COLS, page.rows,
          stack.length ? 'No more rows.' : 'No audit rows match these filters.'));
        tableBox.setAttribute('data-page', String(stack.length + 1));
      };
      prev.addEventListener('click', async () => {
        cursor = stack.pop() || '';
        await load().catch(EG.fail);
      });
      next.addEventListener('click', async () => {
        if (!nextCursor) return;
        stack.push(cursor);
        cursor = nextCursor;
        await load().catch(EG.fail);
      });
      await Promise.all([load(), charts(chartInner, chartFilters, live)]);
    },
  };
})();
