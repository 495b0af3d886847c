// egressd dashboard: a stacked bar chart of an audit summary, drawn as
// inline SVG (no library), with a legend and the same counts as a table.
'use strict';
(() => {
  const EG = window.EG;
  const h = EG.h;
  const NS = 'http://www.w3.org/2000/svg';
  const ORDER = {
    outcomes: ['substituted', 'passed', 'denied', 'upstream_error', 'tunnelled', 'unknown'],
    levels: ['binding', 'user', 'external_user', 'external_workspace', 'workspace', 'tenant', 'none'],
  };
  const COLORS = {
    substituted: '#1a7f37', passed: '#2f81f7', denied: '#cf222e', upstream_error: '#d4760a', tunnelled: '#8250df', unknown: '#8c959f',
    binding: '#1f5fbf', user: '#8250df', external_user: '#bf3989', external_workspace: '#1a7f37', workspace: '#d4760a', tenant: '#0f8a8a', none: '#8c959f',
  };
  const EXTRA = ['#6e40c9', '#9a6700', '#57606a', '#e16f24'];

  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const kid of kids) if (kid) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }

  function niceStep(max, ticks) {
    const raw = Math.max(1, max) / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
    return 10 * mag;
  }

  function label(iso, bucketSeconds, withDate) {
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, '0');
    const date = `${p(d.getMonth() + 1)}-${p(d.getDate())}`;
    if (bucketSeconds >= 86400) return date;
    const t = `${p(d.getHours())}:${p(d.getMinutes())}`;
    return withDate ? `${date} ${t}` : t;
  }

  EG.keysOf = function keysOf(summary, dim) {
    const seen = Object.keys((summary.total && summary.total[dim]) || {});
    const order = ORDER[dim] || [];
    return order.filter((k) => seen.includes(k)).concat(seen.filter((k) => !order.includes(k)).sort());
  };
  const colorOf = (k, i) => COLORS[k] || EXTRA[i % EXTRA.length];

  // chart returns a <figure> with the bars of summary by dim ("outcomes"
  // or "levels").
  EG.chart = function chart(title, summary, dim) {
    const keys = EG.keysOf(summary, dim);
    const buckets = summary.buckets || [];
    // A narrower drawing on a phone keeps its text readable when scaled.
    const W = window.innerWidth < 700 ? 360 : 640, H = window.innerWidth < 700 ? 200 : 230, L = 40, R = 8, T = 12, B = 30;
    const id = EG.uid('chart');
    const totalReq = (summary.total && summary.total.requests) || 0;
    const desc = `${title}: ${totalReq} request${totalReq === 1 ? '' : 's'}` +
      (keys.length ? '; ' + keys.map((k) => `${k} ${summary.total[dim][k]}`).join(', ') : '') + '.';
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': id + '-t', preserveAspectRatio: 'xMidYMid meet' },
      s('title', { id: id + '-t' }, desc));
    const max = Math.max(0, ...buckets.map((b) => b.requests));
    const step = niceStep(max, 4);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (let v = 0; v <= top; v += step) {
      svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'gridline' }),
        s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, v));
    }
    const n = Math.max(1, buckets.length);
    const bw = (W - L - R) / n;
    const gap = Math.min(2, bw * 0.2);
    buckets.forEach((b, i) => {
      let acc = 0;
      keys.forEach((k, ki) => {
        const c = (b[dim] && b[dim][k]) || 0;
        if (!c) return;
        const y0 = y(acc), y1 = y(acc + c);
        acc += c;
        svg.append(s('rect', { x: L + i * bw + gap / 2, y: y1, width: Math.max(0.5, bw - gap), height: Math.max(0.5, y0 - y1), fill: colorOf(k, ki) },
          s('title', null, `${label(b.start, summary.bucket_seconds, true)}: ${k} ${c}`)));
      });
    });
    const every = Math.max(1, Math.ceil(n / (W < 500 ? 4 : 6)));
    buckets.forEach((b, i) => {
      if (i % every) return;
      svg.append(s('text', { x: L + i * bw + bw / 2, y: H - B + 16, 'text-anchor': 'middle' }, label(b.start, summary.bucket_seconds, i === 0)));
    });
    svg.append(s('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: 'currentColor', 'stroke-width': 1, class: 'axis' }));
    if (!totalReq) svg.append(s('text', { x: (L + W - R) / 2, y: (T + H - B) / 2, 'text-anchor': 'middle' }, 'No requests in this window'));

    const legend = h('ul', { class: 'legend', 'aria-label': title + ' legend' }, keys.map((k, ki) =>
      h('li', null, s('svg', { viewBox: '0 0 12 12', 'aria-hidden': 'true' }, s('rect', { width: 12, height: 12, rx: 2, fill: colorOf(k, ki) })), `${k} (${summary.total[dim][k]})`)));
    const rows = buckets.filter((b) => b.requests > 0);
    const table = h('details', null, h('summary', null, `${title} as a table`),
      EG.table(title, [{ label: 'From', rowHeader: true, cell: (b) => EG.time(b.start) }, { label: 'Requests', num: true, cell: (b) => b.requests }]
        .concat(keys.map((k) => ({ label: k, num: true, cell: (b) => (b[dim] && b[dim][k]) || 0 }))), rows, 'No requests in this window.'));
    return h('figure', { class: 'chart card', 'data-dim': dim }, h('figcaption', null, title), svg, legend, table);
  };
})();
