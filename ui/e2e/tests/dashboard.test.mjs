// Browser tests of the dashboard against the real binary. One egressd and
// one Chromium for the file; every test has its own tenant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  useStack, withPage, signIn, newTenant, must, api, proxied, poll, randomValue,
} from '../lib/harness.mjs';

let stack;
let browser;

useStack((s, b) => {
  stack = s;
  browser = b;
});

// waitStatus waits for the polite status region to say what re matches.
async function waitStatus(page, re) {
  try {
    await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status').textContent), re.source, { timeout: 15000 });
  } catch (e) {
    throw new Error(`status never matched ${re}: status ${JSON.stringify(await page.textContent('#status'))}, alert ${JSON.stringify(await page.textContent('#alert'))}`);
  }
}

test('sign in with an API key, see the tenant, sign out', async () => {
  const t = await newTenant(stack, 'signin');
  await withPage(browser, 'signin', async (page) => {
    await page.goto(stack.admin + '/ui/');
    assert.equal(await page.isVisible('#signin'), true);
    // A wrong key is refused with a clear message and nothing is kept.
    await page.fill('#signin-token', 'egk_not_a_key');
    await page.click('#signin-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('signin-error').textContent.includes('not valid'));
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    // The operator key cannot manage a tenant: said plainly, not kept.
    await page.fill('#signin-token', stack.operatorKey);
    await page.click('#signin-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('signin-error').textContent.includes('operator key'));
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    await page.fill('#signin-token', t.key);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#nav:not([hidden])');
    assert.match(await page.textContent('#who-text'), new RegExp(t.name));
    assert.match(await page.textContent('#who-text'), /admin/);
    assert.equal(await page.inputValue('#signin-token'), '', 'the key is cleared from the form');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('egressd.token')), t.key);
    // Every page of an admin key is in the navigation, and the key is sent
    // as a bearer token, never as a cookie.
    const pages = await page.$$eval('#nav li:not([hidden]) a', (as) => as.map((a) => a.dataset.page));
    assert.deepEqual(pages, ['secrets', 'bindings', 'sandboxes', 'oauth', 'settings', 'audit']);
    assert.deepEqual(await page.context().cookies(), []);
    // A reload keeps the session (same tab); sign-out clears it.
    await page.reload();
    await page.waitForSelector('#nav:not([hidden])');
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('egressd.token')), null);
    assert.equal(await page.isVisible('#nav'), false);
  });
});

test('create a secret and see it listed without its value', async () => {
  const t = await newTenant(stack, 'create');
  const value = randomValue('sk-live-e2e');
  await withPage(browser, 'create-secret', async (page) => {
    const sent = [];
    page.on('request', (r) => {
      if (r.postData()) sent.push(r.url() + ' ' + r.postData());
    });
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/secrets');
    await page.click('#secret-add summary');
    assert.equal(await page.getAttribute('#secret-value', 'type'), 'password');
    assert.equal(await page.getAttribute('#secret-value', 'autocomplete'), 'off');
    await page.fill('#secret-name', 'OPENAI_API_KEY');
    await page.fill('#secret-value', value);
    await page.fill('#secret-hosts', 'api.openai.com\n*.openai.azure.com');
    await page.click('#secret-create button[type=submit]');
    await waitStatus(page, /Secret OPENAI_API_KEY created \(version 1\)/);
    assert.equal(await page.inputValue('#secret-value'), '', 'the value field is emptied');
    const row = page.locator('#secrets-list tbody tr', { hasText: 'OPENAI_API_KEY' });
    await row.waitFor();
    assert.match(await row.textContent(), /tenant/);
    assert.match(await row.textContent(), /api\.openai\.com, \*\.openai\.azure\.com/);
    // The value went out once, in the create request, and never came back:
    // not in the DOM, not in any answer the page received.
    assert.equal(sent.filter((s) => s.includes(value)).length, 1);
    assert.equal((await page.content()).includes(value), false, 'the value is in the DOM');
    assert.equal((await page.received()).includes(value), false, 'an answer carried the value');

    // The list's filters are the API's, kept in the address.
    await page.goto(stack.admin + '/ui/#/secrets?scope=external_user');
    await page.waitForSelector('#secrets-list .empty');
    await page.goto(stack.admin + '/ui/#/secrets?scope=tenant&name=OPENAI_API_KEY');
    await row.waitFor();
    // Rotate through the dialog: version 2, the value write-only again.
    const value2 = randomValue('sk-live-e2e-2');
    await row.getByRole('button', { name: 'Rotate OPENAI_API_KEY' }).click();
    await page.fill('#dialog-body input[type=password]', value2);
    await page.click('#dialog-ok');
    await waitStatus(page, /rotated to version 2/);
    await page.locator('#secrets-list tbody tr', { hasText: 'OPENAI_API_KEY' }).getByRole('cell', { name: '2', exact: true }).waitFor();
    // Disable, enable, then delete after confirming.
    await page.getByRole('button', { name: 'Disable OPENAI_API_KEY' }).click();
    await page.locator('#secrets-list .badge', { hasText: 'disabled' }).waitFor();
    await page.getByRole('button', { name: 'Enable OPENAI_API_KEY' }).click();
    await page.locator('#secrets-list .badge', { hasText: 'enabled' }).waitFor();
    await page.getByRole('button', { name: 'Delete OPENAI_API_KEY' }).click();
    assert.match(await page.textContent('#dialog-title'), /Delete OPENAI_API_KEY\?/);
    await page.click('#dialog-cancel');
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/egress/secrets')).secrets.length, 1, 'cancel deletes nothing');
    await page.getByRole('button', { name: 'Delete OPENAI_API_KEY' }).click();
    await page.click('#dialog-ok');
    await page.waitForSelector('#secrets-list .empty');
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/egress/secrets')).secrets.length, 0);
    const all = await page.received();
    assert.equal(all.includes(value) || all.includes(value2), false, 'an answer carried a value');
    assert.equal((await page.content()).includes(value2), false);
  });
});

test('a secret needs its hosts; any host needs the setting and is marked, as is one without hosts', async () => {
  const t = await newTenant(stack, 'hosts');
  await withPage(browser, 'secret-hosts', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/secrets');
    // Without hosts the form's secret is refused, naming the field; the
    // default locations are header only.
    await page.click('#secret-add summary');
    assert.deepEqual(await page.$$eval('#secret-create input[name=substitute_in]:checked', (cs) => cs.map((c) => c.value)), ['header']);
    await page.fill('#secret-name', 'NO_HOSTS');
    await page.fill('#secret-value', randomValue('v'));
    await page.click('#secret-create button[type=submit]');
    await page.waitForFunction(() => document.getElementById('secret-create-error').textContent !== '');
    assert.match(await page.textContent('#secret-create-error'), /allowed_hosts: required/);
    // * is refused while the switch is off...
    await page.fill('#secret-name', 'ANYWHERE');
    await page.fill('#secret-value', randomValue('v'));
    await page.fill('#secret-hosts', '*');
    await page.click('#secret-create button[type=submit]');
    await page.waitForFunction(() => /allow_any_host_secrets/.test(document.getElementById('secret-create-error').textContent));
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/egress/secrets')).secrets.length, 0);
    // ...and taken once it is on.
    await page.click('#nav a[data-page=settings]');
    const sw = page.locator('#allow-any-host');
    assert.equal(await sw.isChecked(), false);
    await sw.click();
    await waitStatus(page, /Any-host secrets are now allowed/);
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/tenant/settings')).allow_any_host_secrets, true);
    await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'ANYWHERE', value: randomValue('v'), scope: 'tenant', allowed_hosts: ['*'] });
    await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'OLD', value: randomValue('v'), scope: 'tenant', allowed_hosts: ['old.example.com'] });
    // An older version stored secrets without hosts: the page gets one as
    // the API reads it back (the API cannot store one any more).
    await page.route(/\/api\/v1\/egress\/secrets(\?.*)?$/, async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      for (const sec of body.secrets) if (sec.name === 'OLD') sec.allowed_hosts = null;
      await route.fulfill({ response: res, json: body });
    });
    await page.click('#nav a[data-page=secrets]');
    const any = page.locator('#secrets-list tbody tr', { hasText: 'ANYWHERE' });
    await any.waitFor();
    assert.match(await any.locator('.badge.warn').textContent(), /any host/);
    const old = page.locator('#secrets-list tbody tr', { hasText: 'OLD' });
    assert.match(await old.locator('.badge.bad').textContent(), /no hosts: does not resolve/);
    assert.match(await old.textContent(), /Store it again with its hosts/);
  });
});

test('the settings page shows the source prefixes the operator granted, and the tenant cannot set them', async () => {
  const t = await newTenant(stack, 'prefixes');
  await withPage(browser, 'prefixes', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/settings');
    await page.waitForSelector('#source-prefixes');
    assert.match(await page.textContent('#source-prefixes'), /may claim no source address/);
    const r = await api(stack, t.key, 'PUT', `/api/v1/tenants/${t.id}/source_prefixes`, { source_prefixes: ['10.61.0.0/16'] });
    assert.equal(r.status, 403);
    await must(stack, stack.operatorKey, 'PUT', `/api/v1/tenants/${t.id}/source_prefixes`, { source_prefixes: ['10.61.0.0/16', 'fd61::/48'] });
    await page.reload();
    await page.waitForSelector('#source-prefixes li');
    assert.deepEqual(await page.locator('#source-prefixes li').allTextContents(), ['10.61.0.0/16', 'fd61::/48']);
  });
});

test('with end-user credentials off, creating an external_user secret is refused', async () => {
  const t = await newTenant(stack, 'toggle');
  await withPage(browser, 'toggle', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/settings');
    const sw = page.locator('#allow-end-user');
    assert.equal(await sw.isChecked(), true);
    assert.equal(await sw.getAttribute('role'), 'switch');
    assert.match(await page.textContent('#allow-end-user-help'), /only secrets of scope tenant and external_workspace resolve/);
    await sw.click();
    await waitStatus(page, /End-user credentials are now off/);
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/tenant/settings')).allow_end_user_credentials, false);

    const value = randomValue('ghp-e2e');
    await page.click('#nav a[data-page=secrets]');
    await page.click('#secret-add summary');
    await page.fill('#secret-name', 'GITHUB_TOKEN');
    await page.fill('#secret-value', value);
    await page.fill('#secret-hosts', 'api.github.com');
    await page.selectOption('#secret-scope', 'external_user');
    await page.fill('#secret-external-user', 'u-1');
    await page.click('#secret-create button[type=submit]');
    await page.waitForFunction(() => document.getElementById('secret-create-error').textContent !== '');
    const msg = await page.textContent('#secret-create-error');
    assert.match(msg, /^Not allowed: /);
    assert.match(msg, /does not allow end-user credentials \(allow_end_user_credentials is off\)/);
    assert.equal(await page.inputValue('#secret-value'), '');
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/egress/secrets')).secrets.length, 0);

    // Back on: the same secret is accepted.
    await page.click('#nav a[data-page=settings]');
    await page.locator('#allow-end-user').click();
    await waitStatus(page, /allowed again/);
    await page.click('#nav a[data-page=secrets]');
    await page.click('#secret-add summary');
    await page.fill('#secret-name', 'GITHUB_TOKEN');
    await page.fill('#secret-value', value);
    await page.fill('#secret-hosts', 'api.github.com');
    await page.selectOption('#secret-scope', 'external_user');
    await page.fill('#secret-external-user', 'u-1');
    await page.click('#secret-create button[type=submit]');
    await waitStatus(page, /GITHUB_TOKEN created/);
    assert.equal((await page.received()).includes(value), false);
  });
});

test('an override shows its branding in the preview and on the Connect page', async () => {
  const t = await newTenant(stack, 'brand');
  await withPage(browser, 'override-branding', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/oauth');
    const row = page.locator('#providers-list tbody tr', { hasText: 'acme' });
    await row.waitFor();
    assert.match(await row.textContent(), /operator's app/);
    await row.getByRole('button', { name: 'Add override for acme' }).click();
    await page.fill('#override-client-id', 'globex-app');
    await page.fill('#override-secret', 'globex-client-secret-e2e');
    await page.fill('#override-display-name', 'Globex Cloud');
    await page.fill('#override-button-label', 'Link your Acme account');
    await page.fill('#override-color', '#aa3300');
    // The preview follows the form as it is typed.
    assert.equal(await page.textContent('#preview-brand'), 'Globex Cloud');
    assert.equal(await page.textContent('#preview-button'), 'Link your Acme account');
    assert.equal(await page.$eval('#preview-button', (b) => getComputedStyle(b).backgroundColor), 'rgb(170, 51, 0)');
    await page.click('#override-form button[type=submit]');
    await waitStatus(page, /Override for Acme ID saved/);
    assert.equal(await page.$('#override-form'), null, 'the editor closes');
    await page.locator('#providers-list tbody tr', { hasText: 'client secret stored' }).waitFor();
    assert.equal((await page.received()).includes('globex-client-secret-e2e'), false, 'the client secret came back');

    // Edit: the secret field is empty and says one is stored.
    await page.getByRole('button', { name: 'Edit override for acme' }).click();
    assert.equal(await page.inputValue('#override-secret'), '');
    assert.match(await page.textContent('#override-form'), /Stored\. Leave empty to keep it/);
    assert.equal(await page.inputValue('#override-button-label'), 'Link your Acme account');

    // The end-user's Connect page shows the brand and the button label.
    const flow = await must(stack, t.key, 'POST', '/api/v1/egress/oauth/connect', { provider: 'acme', external_user_id: 'u-brand' });
    const user = await browser.newContext();
    try {
      const cp = await user.newPage();
      const res = await cp.goto(flow.authorize_url);
      assert.equal(res.status(), 200, 'the connect link answers a page');
      assert.equal((await cp.textContent('#connect-brand')).trim(), 'Globex Cloud');
      assert.equal((await cp.textContent('#connect-button')).trim(), 'Link your Acme account');
      const html = await cp.content();
      assert.equal(html.includes('egressd'), false, 'the Connect page names egressd');
      // Going on: the fake provider sends the browser back and the flow
      // completes with the override's app.
      await cp.click('#connect-button');
      await cp.waitForSelector('#connect-result');
      assert.equal(await cp.getAttribute('#connect-result', 'data-status'), 'completed');
    } finally {
      await user.close();
    }
    const done = await must(stack, t.key, 'GET', `/api/v1/egress/oauth/flows/${flow.id}?wait=5s`);
    assert.equal(done.status, 'completed');
  });
});

test('bindings, a sandbox\'s env and the explain view of the walk', async () => {
  const t = await newTenant(stack, 'walk');
  const sbx = await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-w', owner_user_id: 'w', name: 'walker' });
  await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'API_TOKEN', value: randomValue('t'), scope: 'tenant', allowed_hosts: ['api.example.com'] });
  await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'API_TOKEN', value: randomValue('u'), scope: 'external_user', external_user_id: 'u-w', allowed_hosts: ['api.example.com'] });
  const bound = await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'DEPLOY_KEY', value: randomValue('d'), scope: 'workspace', workspace_id: 'elsewhere', allowed_hosts: ['deploy.example.com'] });
  await withPage(browser, 'bindings-explain', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/bindings');
    await page.click('#binding-add summary');
    await page.selectOption('#binding-create select[name=secret_id]', bound.secret.id);
    await page.fill('#binding-create input[name=resource_id]', sbx.id);
    await page.fill('#binding-create input[name=expose_as_env]', 'DEPLOY_KEY');
    await page.click('#binding-create button[type=submit]');
    await waitStatus(page, /Binding created/);
    await page.locator('#view tbody tr', { hasText: 'DEPLOY_KEY' }).waitFor();

    await page.goto(stack.admin + '/ui/#/sandboxes');
    await page.click(`#sandboxes-list a[href="#/sandboxes/${sbx.id}"]`);
    await page.waitForSelector('#explain-name');
    const env = await page.textContent('#view');
    assert.match(env, /DEPLOY_KEY/);
    assert.match(env, /EGP_/);
    // The external_user secret wins at level 3; the tenant one is shadowed.
    await page.fill('#explain-name', 'API_TOKEN');
    await page.fill('#explain-host', 'api.example.com');
    await page.press('#explain-host', 'Enter');
    await page.waitForSelector('#explain-result table');
    const steps = await page.$$eval('#explain-result tbody tr', (rs) => rs.map((r) => r.textContent));
    assert.equal(steps.length, 6);
    assert.match(steps[2], /External user.*matched/);
    assert.match(steps[5], /Tenant.*shadowed/);
    assert.match(steps[4], /no workspace_id/);
    assert.match(await page.textContent('#explain-result'), /resolves at level external_user/);
    assert.match(await page.textContent('#explain-result'), /host allowed/);

    // Delete the binding, after confirming.
    await page.goto(stack.admin + '/ui/#/bindings');
    await page.locator('#view tbody tr', { hasText: 'DEPLOY_KEY' }).getByRole('button', { name: /Delete binding/ }).click();
    await page.click('#dialog-ok');
    await waitStatus(page, /Binding deleted/);
    assert.equal((await must(stack, t.key, 'GET', '/api/v1/egress/bindings')).bindings.length, 0);
  });
});

test('filter the audit log by external user: only that user\'s rows', async () => {
  const t = await newTenant(stack, 'audit');
  const value = randomValue('sk-audit');
  await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'OPENAI_API_KEY', value, scope: 'tenant', allowed_hosts: ['localhost'], substitute_in: ['header'] });
  const alice = await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-alice', owner_user_id: 'alice' });
  const bob = await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-bob' });
  const ph = (sbx) => sbx.env.OPENAI_API_KEY;
  for (let i = 0; i < 3; i++) {
    const r = await proxied(stack, alice, { headers: { Authorization: 'Bearer ' + ph(alice) } });
    assert.equal(r.status, 200, JSON.stringify(r));
  }
  for (let i = 0; i < 2; i++) await proxied(stack, bob, { headers: { Authorization: 'Bearer ' + ph(bob) } });
  // A placeholder where the secret may not go: refused, and audited.
  const denied = await proxied(stack, alice, { path: '/v1/x?key=' + ph(alice), headers: {} });
  assert.equal(denied.status, 403);
  await poll('request rows', async () => {
    const rows = (await must(stack, t.key, 'GET', '/api/v1/audit?kind=request')).rows;
    return rows.length >= 6;
  });

  await withPage(browser, 'audit-filter', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/audit');
    await page.waitForSelector('#audit-table tbody tr');
    assert.ok((await page.$$('#audit-table tbody tr')).length >= 8, 'all rows before filtering');
    await page.fill('#audit-external-user', 'u-alice');
    await page.click('#audit-filters button[type=submit]');
    await page.waitForFunction(() => location.hash.includes('external_user_id=u-alice'));
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit-table tbody tr')];
      return rows.length > 0 && rows.every((r) => r.textContent.includes('user u-alice'));
    });
    const texts = await page.$$eval('#audit-table tbody tr', (rs) => rs.map((r) => r.textContent));
    assert.equal(texts.some((x) => x.includes('u-bob')), false);
    assert.equal(texts.filter((x) => /substituted/.test(x)).length, 3);
    assert.equal(texts.filter((x) => /denied/.test(x)).length, 1);
    assert.equal(texts.filter((x) => /sandbox\.created/.test(x)).length, 1);

    // The charts count alice's requests by outcome and by level.
    await page.waitForSelector('#audit-charts figure[data-dim=outcomes] svg rect');
    const legend = await page.textContent('#audit-charts figure[data-dim=outcomes] .legend');
    assert.match(legend, /substituted \(3\)/);
    assert.match(legend, /denied \(1\)/);
    assert.match(await page.textContent('#audit-charts figure[data-dim=levels] .legend'), /tenant \(4\)/);

    // Downloads go through the API with the bearer token, same filters.
    const [csvDl] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')]);
    const csv = fs.readFileSync(await csvDl.path(), 'utf8');
    assert.match(csvDl.suggestedFilename(), /^egressd-audit-.*\.csv$/);
    const lines = csv.trim().split('\n');
    assert.match(lines[0], /^time,id,kind,/);
    assert.equal(lines.length - 1, 5, 'csv rows: 3 substituted, 1 denied, 1 sandbox.created');
    assert.equal(csv.includes('u-bob'), false);
    const [jsonDl] = await Promise.all([page.waitForEvent('download'), page.click('#download-jsonl')]);
    const rows = fs.readFileSync(await jsonDl.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(rows.length, 5);
    assert.ok(rows.every((r) => r.external_user_id === 'u-alice'));
    assert.equal(csv.includes(value) || JSON.stringify(rows).includes(value), false, 'an export holds the value');
    assert.equal((await page.received()).includes(value), false);
  });
});

test('the audit table pages forward and back', async () => {
  const t = await newTenant(stack, 'pages');
  for (let i = 0; i < 5; i++) await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-p', name: `box-${i}` });
  await withPage(browser, 'audit-pages', async (page) => {
    await signIn(page, stack, t.key);
    await page.goto(stack.admin + '/ui/#/audit?since=&limit=2');
    // 5 sandbox rows and whatever else the tenant's creation left.
    const total = (await must(stack, t.key, 'GET', '/api/v1/audit')).rows.length;
    assert.ok(total >= 5 && total <= 6, `${total} rows`);
    const sizes = [2, 2, total - 4];
    const seen = [];
    const pageRows = async (label) => {
      await page.waitForFunction((l) => document.querySelector('#audit-table').getAttribute('data-page') === l, label);
      return page.$$eval('#audit-table tbody tr time', (ts) => ts.map((x) => x.getAttribute('datetime') + x.closest('tr').textContent));
    };
    for (const [n, size] of [[1, sizes[0]], [2, sizes[1]], [3, sizes[2]]]) {
      const rows = await pageRows(String(n));
      assert.equal(rows.length, size, `page ${n}`);
      seen.push(...rows);
      assert.equal(await page.isDisabled('#audit-prev'), n === 1);
      assert.equal(await page.isDisabled('#audit-next'), n === 3);
      if (n < 3) await page.click('#audit-next');
    }
    assert.equal(new Set(seen).size, total, 'every row once');
    await page.click('#audit-prev');
    assert.deepEqual(await pageRows('2'), seen.slice(2, 4));
    await page.click('#audit-prev');
    assert.deepEqual(await pageRows('1'), seen.slice(0, 2));
  });
});

test('the secrets, bindings and sandboxes lists load more pages', async () => {
  const t = await newTenant(stack, 'lists');
  const inBatches = async (n, fn) => {
    for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: Math.min(20, n - i) }, (_, j) => fn(i + j)));
  };
  const boxes = [];
  await inBatches(102, async (i) => boxes.push(await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-many', name: `box-${i}` })));
  const secrets = [];
  await inBatches(101, async (i) => secrets.push(await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: `K${i}`, value: randomValue('v'), scope: 'external_user', external_user_id: 'u-many', allowed_hosts: ['api.example.com'] })));
  const shared = secrets.find((s) => s.secret.name === 'K0').secret;
  await inBatches(101, (i) => must(stack, t.key, 'POST', '/api/v1/egress/bindings', { secret_id: shared.id, resource_id: boxes[i].id }));

  await withPage(browser, 'lists-more', async (page) => {
    await signIn(page, stack, t.key);
    // ids is what a list's rows show of cell, in order.
    const ids = (list, cell) => page.$$eval(`${list} tbody tr`, (rs, c) => rs.map((r) => r.querySelector(c).textContent), cell);
    // Secrets and sandboxes show their ids (in id order); bindings their
    // resources, one binding on each box.
    for (const [hash, list, cell, total, want] of [
      ['#/secrets', '#secrets-list', '.sub.mono', 101, secrets.map((s) => s.secret.id)],
      ['#/secrets?external_user_id=u-many', '#secrets-list', '.sub.mono', 101, secrets.map((s) => s.secret.id)],
      ['#/sandboxes', '#sandboxes-list', 'a.mono', 102, boxes.map((b) => b.id)],
      ['#/bindings', '#bindings-list', '[data-label=Resource] .mono', 101, null],
    ]) {
      await page.goto(stack.admin + '/ui/' + hash);
      await page.waitForSelector(`${list}[data-rows="100"]`);
      assert.equal(await page.isVisible(`${list}-more`), true, `${hash}: a More button`);
      assert.match(await page.textContent(`${list} caption`), /more follow/);
      const first = await ids(list, cell);
      await page.click(`${list}-more`);
      await page.waitForSelector(`${list}[data-rows="${total}"]`);
      assert.equal(await page.isVisible(`${list}-more`), false, `${hash}: no More after the last page`);
      assert.doesNotMatch(await page.textContent(`${list} caption`), /more follow/);
      const all = await ids(list, cell);
      assert.deepEqual(all.slice(0, 100), first, `${hash}: the first page stays on top`);
      assert.equal(new Set(all).size, total, `${hash}: every row once`);
      if (want) {
        assert.deepEqual(all, [...want].sort(), `${hash}: the tenant's rows in id order`);
      }
    }
    // A filter that matches one row: no More.
    await page.goto(stack.admin + '/ui/#/secrets?name=K7');
    await page.waitForSelector('#secrets-list[data-rows="1"]');
    assert.equal(await page.isVisible('#secrets-list-more'), false);
  });
});

test('a browser token sees only its own user\'s data, read-only', async () => {
  const t = await newTenant(stack, 'browser');
  const mine = await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-alice', name: 'alice-box' });
  const theirs = await must(stack, t.key, 'POST', '/api/v1/sandboxes', { external_user_id: 'u-bob', name: 'bob-box' });
  await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'ALICE_KEY', value: randomValue('a'), scope: 'external_user', external_user_id: 'u-alice', allowed_hosts: ['api.example.com'] });
  await must(stack, t.key, 'POST', '/api/v1/egress/secrets', { name: 'BOB_KEY', value: randomValue('b'), scope: 'external_user', external_user_id: 'u-bob', allowed_hosts: ['api.example.com'] });
  const bt = await must(stack, t.key, 'POST', '/api/v1/browser_tokens', { external_user_id: 'u-alice', ttl: '10m' });

  await withPage(browser, 'browser-token', async (page) => {
    // A platform links the end-user in with the token in the fragment.
    await page.goto(`${stack.admin}/ui/#token=${encodeURIComponent(bt.token)}`);
    await page.waitForSelector('#nav:not([hidden])');
    assert.equal(page.url().includes(bt.token), false, 'the token stays in the address bar');
    assert.equal(await page.evaluate(() => history.length > 0 && location.hash.includes('token')), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('egressd.token')), bt.token);
    assert.match(await page.textContent('#who-text'), /end-user view: u-alice \(read-only\)/);
    const pages = await page.$$eval('#nav li:not([hidden]) a', (as) => as.map((a) => a.dataset.page));
    assert.deepEqual(pages, ['secrets', 'bindings', 'sandboxes', 'audit']);

    await page.waitForSelector('#sandboxes-list tbody tr');
    const sbx = await page.textContent('#sandboxes-list');
    assert.match(sbx, new RegExp(mine.id));
    assert.equal(sbx.includes(theirs.id), false);

    await page.click('#nav a[data-page=secrets]');
    await page.waitForSelector('#secrets-list tbody tr');
    const secrets = await page.textContent('#secrets-list');
    assert.match(secrets, /ALICE_KEY/);
    assert.equal(secrets.includes('BOB_KEY'), false);
    // No write controls are shown...
    assert.equal(await page.$('#secret-add'), null);
    assert.equal(await page.$$eval('#view button', (bs) => bs.filter((b) => /Rotate|Delete|Disable|Create/.test(b.textContent)).length), 0);
    // ...and the API refuses them anyway, from this page, with its token.
    const writes = await page.evaluate(async (id) => {
      const tok = sessionStorage.getItem('egressd.token');
      const call = (method, p, body) => fetch(p, { method, headers: { Authorization: 'Bearer ' + tok, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) }).then((r) => r.status);
      return [
        await call('POST', '/api/v1/egress/secrets', { name: 'X', value: 'v', scope: 'external_user', external_user_id: 'u-alice', allowed_hosts: ['api.example.com'] }),
        await call('DELETE', '/api/v1/sandboxes/' + id),
        await call('PATCH', '/api/v1/tenant/settings', { allow_end_user_credentials: false }),
        await call('GET', '/api/v1/audit?external_user_id=u-bob'),
        await call('GET', '/api/v1/audit/export?external_user_id=u-bob'),
      ];
    }, mine.id);
    assert.deepEqual(writes, [403, 403, 403, 403, 403]);
    // The admin-only pages are not reachable by address either.
    await page.goto(`${stack.admin}/ui/#/settings`);
    await page.waitForFunction(() => location.hash === '#/sandboxes');

    await page.click('#nav a[data-page=audit]');
    await page.waitForSelector('#audit-table tbody tr');
    assert.equal(await page.$('#audit-external-user'), null, 'no user filter for a browser token');
    const rows = await page.$$eval('#audit-table tbody tr', (rs) => rs.map((r) => r.textContent));
    assert.ok(rows.length >= 2);
    assert.ok(rows.every((r) => r.includes('u-alice') && !r.includes('u-bob')), rows.join('\n'));

    // Signing out forgets the token.
    await page.click('#signout');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('egressd.token')), null);
  });
  // An unknown token in the link is refused on the sign-in form.
  await withPage(browser, 'browser-token-bad', async (page) => {
    await page.goto(`${stack.admin}/ui/#token=egb_nope`);
    await page.waitForFunction(() => document.getElementById('signin-error').textContent.includes('not valid'));
    assert.equal(page.url().includes('egb_nope'), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('egressd.token')), null);
  });
  assert.equal((await api(stack, bt.token, 'GET', '/api/v1/whoami')).json.key_kind, 'browser_token');
});
