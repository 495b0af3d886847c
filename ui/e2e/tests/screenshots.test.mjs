// Screenshot mode: SCREENSHOTS=<dir> saves one full-page PNG of every page
// of the dashboard at laptop (1280×800) and phone (390×844) widths, over a
// tenant with a little of everything. Without SCREENSHOTS it is skipped.
import { test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { startStack, launch, openPage, signIn, newTenant, must, proxied, poll, randomValue } from '../lib/harness.mjs';

const dir = process.env.SCREENSHOTS;
const sizes = { laptop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };

async function seed(stack) {
  const t = await newTenant(stack, 'acme-robotics');
  const post = (p, body) => must(stack, t.key, 'POST', p, body);
  await post('/api/v1/egress/secrets', { name: 'OPENAI_API_KEY', value: randomValue('sk'), type: 'api_key', scope: 'tenant', allowed_hosts: ['localhost', 'api.openai.com'], placeholder_prefix: 'sk-proj-' });
  await post('/api/v1/egress/secrets', { name: 'ANTHROPIC_API_KEY', value: randomValue('sk'), type: 'api_key', scope: 'external_workspace', external_workspace_id: 'ws-blue', allowed_hosts: ['api.anthropic.com'], substitute_in: ['header'] });
  const alice = await post('/api/v1/sandboxes', { external_user_id: 'u-alice', external_workspace_id: 'ws-blue', owner_user_id: 'alice', name: 'alice-agent' });
  const bob = await post('/api/v1/sandboxes', { external_user_id: 'u-bob', external_workspace_id: 'ws-red', name: 'bob-agent' });
  await post('/api/v1/sandboxes', { resource_type: 'computer', workspace_id: 'w-build', name: 'ci-runner' });
  await post('/api/v1/egress/secrets', { name: 'GITHUB_TOKEN', value: randomValue('ghp'), type: 'bearer_token', scope: 'external_user', external_user_id: 'u-alice', allowed_hosts: ['api.github.com', 'localhost'], placeholder_prefix: 'ghp_' });
  const stripe = await post('/api/v1/egress/secrets', { name: 'STRIPE_KEY', value: randomValue('rk'), scope: 'tenant', allowed_hosts: ['api.stripe.com'] });
  await post('/api/v1/egress/bindings', { secret_id: stripe.secret.id, resource_id: alice.id, resource_type: 'sandbox', expose_as_env: 'STRIPE_API_KEY' });
  const old = await post('/api/v1/egress/secrets', { name: 'LEGACY_TOKEN', value: randomValue('x'), scope: 'tenant', allowed_hosts: ['legacy.example.com'] });
  await post(`/api/v1/egress/secrets/${old.secret.id}/disable`);
  await must(stack, t.key, 'PUT', '/api/v1/egress/oauth/overrides/acme', { client_id: 'acme-robotics-app', client_secret: randomValue('cs'), display_name: 'Acme Robotics', branding: { button_label: 'Connect your Acme ID', primary_color: '#0f6e5f' } });
  await must(stack, t.key, 'PATCH', '/api/v1/tenant/settings', { egress_allow_hosts: ['*.openai.com', 'api.github.com', 'localhost'], egress_deny_hosts: ['uploads.github.com'] });
  const env = await must(stack, t.key, 'GET', `/api/v1/sandboxes/${alice.id}/env`);
  const ph = (name) => env.placeholders.find((p) => p.name === name).placeholder;
  for (let i = 0; i < 9; i++) await proxied(stack, alice, { headers: { Authorization: 'Bearer ' + ph(i % 3 ? 'OPENAI_API_KEY' : 'GITHUB_TOKEN') } });
  for (let i = 0; i < 2; i++) await proxied(stack, alice, { path: '/v1/x', headers: { 'X-Key': ph('STRIPE_KEY') } });
  await proxied(stack, bob, { headers: { Authorization: 'Bearer ' + ph('OPENAI_API_KEY') } });
  await poll('audit rows', async () => (await must(stack, t.key, 'GET', '/api/v1/audit?kind=request')).rows.length >= 12);
  const bt = await post('/api/v1/browser_tokens', { external_user_id: 'u-alice', ttl: '30m' });
  return { t, alice, browserToken: bt.token };
}

test('screenshots of every page at laptop and phone widths', { skip: !dir && 'set SCREENSHOTS=<dir> to take them' }, async () => {
  fs.mkdirSync(dir, { recursive: true });
  const stack = await startStack();
  const browser = await launch();
  try {
    const s = await seed(stack);
    for (const [size, viewport] of Object.entries(sizes)) {
      const page = await openPage(browser, viewport);
      const shot = async (name) => {
        await page.waitForFunction(() => !document.querySelector('#view[aria-busy]'));
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: path.join(dir, `${name}-${size}.png`), fullPage: true });
      };
      await page.goto(stack.admin + '/ui/');
      await page.waitForSelector('#signin:not([hidden])');
      await shot('signin');
      await signIn(page, stack, s.t.key);
      await page.waitForSelector('#secrets-list table');
      await page.click('#secret-add summary');
      await shot('secrets');
      await page.goto(stack.admin + '/ui/#/bindings');
      await page.waitForSelector('#view table');
      await shot('bindings');
      await page.goto(stack.admin + '/ui/#/sandboxes');
      await page.waitForSelector('#sandboxes-list table');
      await shot('sandboxes');
      await page.goto(stack.admin + '/ui/#/sandboxes/' + s.alice.id);
      await page.fill('#explain-name', 'OPENAI_API_KEY');
      await page.fill('#explain-host', 'api.openai.com');
      await page.click('#explain-name >> xpath=ancestor::form//button[@type="submit"]');
      await page.waitForSelector('#explain-result table');
      await shot('sandbox-explain');
      await page.goto(stack.admin + '/ui/#/oauth');
      await page.getByRole('button', { name: 'Edit override for acme' }).click();
      await page.waitForSelector('#override-form');
      await shot('oauth');
      await page.goto(stack.admin + '/ui/#/settings');
      await page.waitForSelector('#allow-end-user');
      await shot('settings');
      await page.goto(stack.admin + '/ui/#/audit?since=1h');
      await page.waitForSelector('#audit-charts svg');
      await shot('audit');
      await page.context().close();

      const end = await openPage(browser, viewport);
      await end.goto(`${stack.admin}/ui/#token=${encodeURIComponent(s.browserToken)}`);
      await end.waitForSelector('#sandboxes-list table');
      await end.evaluate(() => window.scrollTo(0, 0));
      await end.screenshot({ path: path.join(dir, `enduser-sandboxes-${size}.png`), fullPage: true });
      await end.goto(stack.admin + '/ui/#/audit?since=1h');
      await end.waitForSelector('#audit-charts svg');
      await end.evaluate(() => window.scrollTo(0, 0));
      await end.screenshot({ path: path.join(dir, `enduser-audit-${size}.png`), fullPage: true });
      await end.context().close();

      // The end-user's Connect page (the override's brand), then the
      // callback's result after the fake provider sends the browser back.
      const flow = await must(stack, s.t.key, 'POST', '/api/v1/egress/oauth/connect', { provider: 'acme', external_user_id: 'u-alice' });
      const cp = await openPage(browser, viewport);
      await cp.goto(flow.authorize_url);
      await cp.waitForSelector('#connect-button');
      await cp.screenshot({ path: path.join(dir, `connect-${size}.png`), fullPage: true });
      await cp.click('#connect-button');
      await cp.waitForSelector('#connect-result');
      await cp.screenshot({ path: path.join(dir, `connect-result-${size}.png`), fullPage: true });
      await cp.context().close();
    }
  } finally {
    await browser.close();
    await stack.stop();
  }
});
