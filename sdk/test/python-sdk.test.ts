// The Python SDK (sdk/python) as a partner uses it, against the running gateway:
// pytest runs in the SDK's venv (sdk/tools.sh) with the gateway's address and a
// partner key, and each Python test's result is asserted here, so a missing or
// skipped test fails too.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { repoRoot, runProgram, sdkTools, startSdkPlatform, type SdkPlatform } from "./harness.js";

const GATEWAY = "tests/test_gateway.py::";
/** The tests that reach the qr service, once each (TWICE: twice, with the same request). */
const TWICE = `${GATEWAY}test_identical_calls_in_one_second_both_go_through`;
const GATEWAY_CALLS = [
  "test_identical_calls_in_one_second_both_go_through",
  "test_signed_call_gets_an_answer[connect-binary-gzip]",
  "test_signed_call_gets_an_answer[connect-json]",
  "test_signed_call_gets_an_answer[grpc-web]",
  "test_signed_call_gets_an_answer[grpc]",
  "test_signed_get_gets_an_answer",
  "test_async_signed_call_gets_an_answer",
  "test_replayed_request_is_named",
].map((t) => GATEWAY + t);
const EXPECTED = [
  ...GATEWAY_CALLS,
  ...["test_wrong_secret_is_named", "test_stale_timestamp_is_named", "test_missing_scope_is_named", "test_webhook_delivery_from_the_platform_verifies"].map((t) => GATEWAY + t),
  "tests/test_signer.py::test_signature_headers_match_the_shared_vector",
  "tests/test_signer.py::test_each_call_gets_a_fresh_nonce",
  "tests/test_signer.py::test_signer_signs_the_bytes_it_sends[bytes]",
  "tests/test_signer.py::test_signer_signs_the_bytes_it_sends[chunks]",
  "tests/test_signer.py::test_keys_are_checked_before_any_call",
  "tests/test_webhook.py::test_sign_webhook_matches_the_shared_vector",
  "tests/test_webhook.py::test_a_genuine_delivery_returns_its_body",
  ...["tampered body", "another secret", "no timestamp", "no signature", "no header", "stale timestamp", "latin-1 signature", "lone surrogate signature"].map(
    (c) => `tests/test_webhook.py::test_a_delivery_is_refused_saying_why[${c}]`,
  ),
];

describe("Python SDK against a running gateway", () => {
  let platform: SdkPlatform;
  const results = new Map<string, string>();
  let output = "";
  let summary = "";

  before(async () => {
    const tools = await sdkTools();
    platform = await startSdkPlatform();
    // -rA lists every test's outcome by node id; no cache folder in the work tree.
    const run = await runProgram(path.join(tools, "venv/bin/python"), ["-m", "pytest", "-rA", "-p", "no:cacheprovider", "-q"], {
      cwd: path.join(repoRoot, "sdk/python"),
      env: { ...platform.env, PYTHONDONTWRITEBYTECODE: "1" },
      timeoutMs: 180_000,
    });
    output = run.output;
    for (const m of output.matchAll(/^(PASSED|FAILED|ERROR|XFAIL|XPASS) ([^\s[]+(?:\[[^\]]*\])?)/gm)) results.set(m[2], m[1]);
    // pytest's closing line, e.g. "23 passed in 1.20s" or "21 passed, 2 skipped in 1.31s".
    summary = /^=*\s*(\d+ passed[^=]*?) in [\d.]+s\b/m.exec(output)?.[1] ?? "";
  });

  after(async () => {
    await platform?.close();
  });

  for (const name of EXPECTED) {
    test(`pytest ${name}`, () => {
      assert.equal(results.get(name), "PASSED", `${name}: ${results.get(name) ?? "did not run"}\n${output}`);
    });
  }

  test("pytest ran exactly these, none failed or skipped", () => {
    assert.equal(summary, `${EXPECTED.length} passed`, output);
  });

  test("the Python webhook test asked for exactly one tip event", () => {
    assert.equal(platform.published.length, 1);
  });

  test("the qr service saw each accepted call once, as the partner key with the role partner", () => {
    assert.equal(platform.seen.length, GATEWAY_CALLS.length + 1, `${TWICE} calls twice\n${platform.seen.join("\n")}`);
    assert.equal(new Set(platform.seen.map((s) => s.split(" ")[0])).size, GATEWAY_CALLS.length);
    for (const s of platform.seen) assert.match(s, new RegExp(`^[0-9a-f-]{36} ${platform.key.keyId} partner$`));
  });
});
