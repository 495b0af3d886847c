// egressd dashboard: the core. DOM helpers, the API client, the session,
// status messages, dialogs and tables. Pages register in EG.pages; start.js
// signs in and routes. Nothing here decides what a key may do: the API does,
// and the page only hides controls the API would refuse anyway.
'use strict';
(() => {
  const EG = (window.EG = { pages: {}, me: null });
  const TOKEN_KEY = 'egressd.token';

  // h builds an element. Attributes are set as attributes or properties,
  // text always as text: nothing from the API is ever parsed as HTML. An
  // on* attribute takes a function only (never code as a string), and a
  // URL attribute only an address that runs nothing (not javascript: or
  // data:), whatever the CSP would do with them.
  const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'xlink:href', 'poster', 'srcset', 'ping', 'data', 'background', 'cite']);
  const SAFE_SCHEMES = new Set(['http:', 'https:', 'blob:', 'mailto:']);
  function safeURL(v) {
    try {
      return SAFE_SCHEMES.has(new URL(v, location.href).protocol);
    } catch (_) {
      return false;
    }
  }
  EG.h = function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      const name = k.toLowerCase();
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (name.startsWith('on')) {
        if (typeof v !== 'function') throw new Error('not allowed: ' + k + ' as a string');
        el.addEventListener(k.slice(2), v);
      } else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = !!v;
      else if (name === 'style' || name === 'srcdoc' || name.endsWith('html')) throw new Error('not allowed: ' + k);
      else if (URL_ATTRS.has(name) && !safeURL(String(v))) throw new Error('not allowed: ' + k + ' to this address');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, kids);
    return el;
  };
  function append(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }
  const h = EG.h;
  let uid = 0;
  EG.uid = (p) => `${p || 'f'}-${++uid}`;

  // ---- session ----
  EG.token = () => sessionStorage.getItem(TOKEN_KEY) || '';
  EG.setToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);
  EG.clearToken = () => sessionStorage.removeItem(TOKEN_KEY);
  EG.canWrite = () => !!EG.me && !EG.me.read_only;

  // ---- API ----
  class APIError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  EG.APIError = APIError;

  // api calls the admin API with the session's bearer token. Cookies are
  // never sent. An error answer becomes an APIError with the API's message.
  EG.api = async function api(method, path, opts = {}) {
    const url = new URL(path, location.origin);
    // An id of . or .. (from the address, say) would make a dot-segment
    // that moves the call, with its bearer token, to another endpoint.
    if (url.origin !== location.origin || url.pathname !== path) {
      throw new APIError(400, 'bad_path', 'an id of "." or ".." is not a valid id.');
    }
    for (const [k, v] of Object.entries(opts.query || {})) {
      if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const headers = { Authorization: 'Bearer ' + (opts.token || EG.token()), Accept: 'application/json' };
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    } catch (e) {
      throw new APIError(0, 'network', 'Cannot reach egressd (' + e.message + ').');
    }
    if (opts.raw && res.ok) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const e = (data && data.error) || {};
      const err = new APIError(res.status, e.code || 'http_' + res.status, e.message || res.statusText || 'request failed');
      if (res.status === 401 && !opts.token && EG.onUnauthorized) EG.onUnauthorized(err);
      throw err;
    }
    return data;
  };

  // describe turns an error into one sentence for a person.
  EG.describe = function describe(err) {
    if (!(err instanceof APIError)) return String((err && err.message) || err);
    const what = {
      400: 'Refused: ', 403: 'Not allowed: ', 404: 'Not found: ', 409: 'Conflict: ',
      413: 'Too large: ', 429: 'Too many requests: ', 501: 'Not available: ',
    }[err.status] || (err.status ? `Error ${err.status}: ` : '');
    return what + err.message;
  };

  // ---- status messages (aria-live) ----
  EG.say = function say(msg) {
    document.getElementById('alert').textContent = '';
    const s = document.getElementById('status');
    s.textContent = '';
    // A fresh text node is announced even when the message repeats.
    requestAnimationFrame(() => (s.textContent = msg));
  };
  EG.fail = function fail(err, where) {
    document.getElementById('status').textContent = '';
    const msg = EG.describe(err);
    document.getElementById('alert').textContent = msg;
    if (where) where.textContent = msg;
    return msg;
  };
  EG.clearMessages = function clearMessages() {
    document.getElementById('status').textContent = '';
    document.getElementById('alert').textContent = '';
  };

  // ---- building blocks ----
  EG.header = (title, intro) => [h('h1', { tabindex: '-1', class: 'page-title' }, title)].concat(intro ? [h('p', { class: 'intro' }, intro)] : []);

  // fold is a card that opens and closes (details/summary): keyboard and
  // screen readers handle it natively.
  EG.fold = function fold(id, title, open, ...kids) {
    return h('details', { class: 'card', id, open }, h('summary', null, h('h2', null, title)), kids);
  };

  // field wraps a control with its label and an optional hint.
  EG.field = function field(label, control, hint, extra) {
    if (!control.id) control.id = EG.uid('f');
    const kids = [h('label', { for: control.id }, label), control];
    if (hint) {
      const hid = EG.uid('hint');
      control.setAttribute('aria-describedby', hid);
      kids.push(h('small', { id: hid }, hint));
    }
    return h('div', Object.assign({ class: 'field' }, extra || {}), kids);
  };
  EG.input = (name, attrs) => h('input', Object.assign({ type: 'text', name, autocomplete: 'off', spellcheck: 'false' }, attrs || {}));
  EG.select = function select(name, options, value, attrs) {
    return h('select', Object.assign({ name }, attrs || {}), options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o === '' ? 'any' : o];
      return h('option', { value: v, selected: v === value }, label);
    }));
  };
  EG.formValues = function formValues(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.closest('[hidden]')) continue;
      if (el.type === 'checkbox') continue;
      out[el.name] = el.value.trim();
    }
    return out;
  };
  // params is the parameters of q (URLSearchParams) named in names that
  // have a value, as an object.
  EG.params = function params(q, names) {
    const out = {};
    for (const n of names) if (q.get(n)) out[n] = q.get(n);
    return out;
  };
  // list reads hosts or names given one a line or separated by commas.
  EG.list = (text) => String(text || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  EG.badge = (text, kind) => h('span', { class: 'badge ' + (kind || 'muted') }, text);
  EG.code = (text) => h('code', null, text);
  EG.time = function time(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const p = (n) => String(n).padStart(2, '0');
    const s = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    return h('time', { datetime: d.toISOString(), title: d.toISOString() }, s);
  };
  EG.compact = function compact(obj) {
    const out = {};
    for (const [k, v] of Object.entries(obj)) if (v !== '' && v !== undefined && v !== null) out[k] = v;
    return out;
  };

  // table builds a semantic table. cols: [{label, cell(row), num}].
  EG.table = function table(caption, cols, rows, empty) {
    if (!rows.length) {
      return h('div', { class: 'table-wrap' }, h('p', { class: 'empty' }, empty || 'Nothing here yet.'));
    }
    // On a phone the rows become cards (CSS); the roles keep the table's
    // meaning for screen readers when its cells are laid out as blocks.
    return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
      h('table', { class: 'cards', role: 'table' },
        h('caption', { class: caption ? '' : 'sr-only' }, caption),
        h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' }, cols.map((c) => h('th', { scope: 'col', role: 'columnheader', class: c.num ? 'num' : null }, c.label)))),
        h('tbody', { role: 'rowgroup' }, rows.map((r) => h('tr', { role: 'row' }, cols.map((c, i) =>
          i === 0 && c.rowHeader
            ? h('th', { scope: 'row', role: 'rowheader', 'data-label': c.label }, c.cell(r))
            : h('td', { role: 'cell', class: c.num ? 'num' : null, 'data-label': c.label }, h('div', null, c.cell(r)))))))));
  };

  // LIST_PAGE is how many rows the dashboard asks of a paged list at once.
  EG.LIST_PAGE = 100;

  // pagedList shows a list the API pages (limit, cursor, next_cursor) in
  // a box with id. load() shows its first page; while more rows follow, a
  // More button (id-more) under the table asks for the next page and adds
  // its rows below those shown. render(rows, more) builds the table of the
  // rows so far. A page that arrives after a newer load() began, or after
  // the view was left (live), is dropped.
  EG.pagedList = function pagedList({ id, path, query, field, live, render }) {
    const table = h('div');
    const more = h('button', { type: 'button', class: 'secondary', id: `${id}-more` }, 'More');
    const note = h('span', { class: 'small muted', 'aria-live': 'polite' });
    const pager = h('div', { class: 'pager', hidden: true }, more, note);
    const box = h('div', { id }, table, pager);
    let rows = [];
    let cursor = '';
    let gen = 0;
    // fetchPage asks for the page after `after` and adds it to the rows
    // (to none when after is empty); false when it came too late.
    const fetchPage = async (g, after) => {
      const page = await EG.api('GET', path, { query: Object.assign({}, query, { limit: EG.LIST_PAGE, cursor: after }) });
      if (g !== gen || !live()) return false;
      rows = after ? rows.concat(page[field]) : page[field];
      cursor = page.next_cursor || '';
      table.replaceChildren(render(rows, !!cursor));
      box.setAttribute('data-rows', String(rows.length));
      pager.hidden = !cursor;
      return true;
    };
    more.addEventListener('click', async () => {
      if (!cursor) return;
      more.disabled = true;
      note.textContent = 'Loading…';
      try {
        if (await fetchPage(gen, cursor)) note.textContent = `${rows.length} shown.`;
      } catch (e) {
        note.textContent = '';
        EG.fail(e);
      } finally {
        more.disabled = false;
      }
    });
    return {
      el: box,
      load() {
        note.textContent = '';
        return fetchPage(++gen, '');
      },
    };
  };

  // all follows a paged list's cursors and returns its rows, at most cap
  // of them, and whether more were left unread.
  EG.all = async function all(path, query, field, cap) {
    let rows = [];
    let cursor = '';
    do {
      const page = await EG.api('GET', path, { query: Object.assign({}, query, { limit: 1000, cursor }) });
      rows = rows.concat(page[field]);
      cursor = page.next_cursor || '';
    } while (cursor && rows.length < cap);
    return { rows: rows.slice(0, cap), more: !!cursor || rows.length > cap };
  };

  // ---- dialogs ----
  // dialog shows a modal with body nodes; onOK returns a promise and may
  // throw to keep it open with the error shown. Resolves true when done.
  EG.dialog = function dialog({ title, body, ok, danger, onOK }) {
    const dlg = document.getElementById('dialog');
    const form = document.getElementById('dialog-form');
    const okb = document.getElementById('dialog-ok');
    const err = document.getElementById('dialog-error');
    document.getElementById('dialog-title').textContent = title;
    document.getElementById('dialog-body').replaceChildren(...[].concat(body || []));
    err.textContent = '';
    okb.textContent = ok || 'OK';
    okb.className = danger ? 'danger' : '';
    const opener = document.activeElement;
    return new Promise((resolve) => {
      let done = false;
      const finish = (v) => {
        if (done) return;
        done = true;
        form.onsubmit = null;
        document.getElementById('dialog-cancel').onclick = null;
        dlg.onclose = null;
        for (const i of form.querySelectorAll('input[type=password]')) i.value = '';
        if (dlg.open) dlg.close();
        if (opener && opener.isConnected) opener.focus();
        resolve(v);
      };
      form.onsubmit = async (ev) => {
        ev.preventDefault();
        okb.disabled = true;
        try {
          if (onOK) await onOK(form);
          finish(true);
        } catch (e) {
          err.textContent = EG.describe(e);
          for (const i of form.querySelectorAll('input[type=password]')) i.value = '';
        } finally {
          okb.disabled = false;
        }
      };
      document.getElementById('dialog-cancel').onclick = () => finish(false);
      dlg.onclose = () => finish(false);
      dlg.showModal();
      const first = form.querySelector('#dialog-body input, #dialog-body select, #dialog-body textarea');
      (first || document.getElementById('dialog-cancel')).focus();
    });
  };
  EG.confirm = (title, text, ok) => EG.dialog({ title, body: [h('p', null, text)], ok: ok || 'Delete', danger: true });

  // ---- navigation ----
  EG.go = function go(page, query) {
    const qs = query ? new URLSearchParams(EG.compact(query)).toString() : '';
    EG.goTo('#/' + page + (qs ? '?' + qs : ''));
  };
  // goTo opens the address hash next, or routes again when the address is
  // already there (no hashchange would fire).
  EG.goTo = function goTo(next) {
    if (location.hash === next) EG.route();
    else location.hash = next;
  };

  // busy disables a form's buttons while fn runs.
  EG.busy = async function busy(form, fn) {
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => (b.disabled = true));
    try {
      return await fn();
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
})();
