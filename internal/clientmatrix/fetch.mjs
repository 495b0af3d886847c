// The Node client of the client matrix test (matrix_test.go): one GET with
// the global fetch, Authorization: Bearer $UPSTREAM_TOKEN, through the proxy
// that the sandbox env names.
//
//   node fetch.mjs URL env     Node >= 22.21 or >= 24: NODE_USE_ENV_PROXY=1
//                              (from the sandbox env) makes the global fetch
//                              read HTTPS_PROXY and NO_PROXY itself.
//   node fetch.mjs URL undici  Node 20 (and older 22): the global fetch
//                              ignores HTTPS_PROXY; undici's EnvHttpProxyAgent
//                              (npm package, installed by `npm ci` here)
//                              reads it and becomes the global dispatcher.
//
// Prints the status and the body; exits 0 on 200.
const [url, mode] = process.argv.slice(2);
if (mode === 'undici') {
  const { EnvHttpProxyAgent, setGlobalDispatcher } = await import('undici');
  setGlobalDispatcher(new EnvHttpProxyAgent());
} else if (mode !== 'env') {
  console.error(`usage: node fetch.mjs URL env|undici (got mode ${mode})`);
  process.exit(2);
}
const res = await fetch(url, {
  headers: { Authorization: `Bearer ${process.env.UPSTREAM_TOKEN}` },
  signal: AbortSignal.timeout(20000),
});
console.log(res.status);
console.log(await res.text());
process.exit(res.status === 200 ? 0 : 1);
