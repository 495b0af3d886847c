// Package golden replays the golden-request cases of testdata/golden
// through the real proxy and diffs what happened against what each case
// expects, field by field.
//
// A case is one txtar-like file ("-- name --" lines start sections) with the
// sections setup (JSON), request (the raw HTTP/1.1 request the sandbox
// sends), upstream (what the upstream must receive), response (what the
// sandbox must get) and audit (the final audit event). Tokens such as
// {{placeholder sbx1 openai_key}} and {{value openai_key}} stand for the
// random placeholders and the stored values; see README.md, "Golden-request
// suite", for the whole format.
package golden
