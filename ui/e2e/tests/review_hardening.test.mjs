// Review regressions of the dashboard's own defences (the CSP is the
// second line; these are the first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useStack, withPage, signIn, newTenant } from '../lib/harness.mjs';

let stack;
let browser;

useStack((s, b) => {
  stack = s;
  browser = b;
});

// Regression: EG.h set any attribute it was given, so a javascript: href or an inline on* handler string from API data would have reached the DOM.
test('EG.h refuses script-bearing URLs and handler strings', async () => {
  const t = await newTenant(stack, 'review-h');
  await withPage(browser, 'review-h', async (page) => {
    await signIn(page, stack, t.key);
    const got = await page.evaluate(() => {
      const refused = (attrs, tag) => { try { EG.h(tag || 'a', attrs); return false; } catch (_) { return true; } };
      return {
        js: refused({ href: 'javascript:alert(1)' }),
        jsSpaced: refused({ href: ' \tJaVaScRiPt:alert(1)' }),
        data: refused({ href: 'data:text/html,<script>alert(1)</script>' }),
        src: refused({ src: 'javascript:alert(1)' }, 'img'),
        formaction: refused({ formaction: 'javascript:alert(1)' }, 'button'),
        srcdoc: refused({ srcdoc: '<script>alert(1)</script>' }, 'iframe'),
        handler: refused({ onclick: 'alert(1)' }),
        upperHandler: refused({ ONCLICK: 'alert(1)' }),
        fragment: refused({ href: '#/sandboxes/x' }),
        blob: refused({ href: 'blob:' + location.origin + '/x' }),
        fn: refused({ onclick: () => {} }, 'button'),
      };
    });
    assert.deepEqual(got, {
      js: true, jsSpaced: true, data: true, src: true, formaction: true, srcdoc: true, handler: true, upperHandler: true,
      fragment: false, blob: false, fn: false,
    });
  });
});

// Regression: an id from the address such as '..' became a dot-segment of the API path, so a crafted link sent the bearer token's GETs to other endpoints.
test('an id of . or .. never moves an API call to another path', async () => {
  const t = await newTenant(stack, 'review-dots');
  await withPage(browser, 'review-dots', async (page) => {
    await signIn(page, stack, t.key);
    const paths = [];
    page.on('request', (req) => {
      const u = new URL(req.url());
      if (u.pathname.startsWith('/api/')) paths.push(u.pathname);
    });
    for (const id of ['..', '%2e%2e', '.']) {
      paths.length = 0;
      await page.evaluate((h) => { location.hash = h; }, '#/sandboxes/' + id);
      await page.waitForFunction(() => document.getElementById('alert').textContent !== '');
      assert.match(await page.textContent('#alert'), /not a valid|Refused/i);
      assert.deepEqual(paths.filter((p) => !p.startsWith('/api/v1/sandboxes/')), [], `#/sandboxes/${id}: ${paths}`);
      await page.evaluate(() => { location.hash = '#/secrets'; });
      await page.waitForSelector('.page-title');
    }
  });
});
