// The Go SDK (sdk/go) as a partner uses it, against the running gateway: its own
// `go test` runs with the gateway's address, a partner key and the harness's
// tip-event address, and each Go test's result is asserted here, so a missing or
// skipped Go test fails too.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { repoRoot, runProgram, sdkTools, startSdkPlatform, type SdkPlatform } from "./harness.js";

/** The Go tests that must pass; the first seven reach the qr service once each (one, twice). */
const TWICE = "TestGatewayNamesWhatIsWrong/identical_calls_in_one_second";
const GATEWAY_CALLS = [
  TWICE,
  "TestGatewayAnswersSignedCalls/connect-json",
  "TestGatewayAnswersSignedCalls/connect-binary",
  "TestGatewayAnswersSignedCalls/connect-get",
  "TestGatewayAnswersSignedCalls/grpc-web",
  "TestGatewayAnswersSignedCalls/grpc",
  "TestGatewayNamesWhatIsWrong/replayed_request",
];
const EXPECTED = [
  ...GATEWAY_CALLS,
  "TestGatewayNamesWhatIsWrong/wrong_secret",
  "TestGatewayNamesWhatIsWrong/stale_timestamp",
  "TestGatewayNamesWhatIsWrong/missing_scope",
  "TestWebhookDeliveryFromThePlatformVerifies",
  "TestSignatureHeadersMatchTheSharedVector",
  "TestEachCallGetsAFreshNonce",
  "TestSignerSignsTheBytesOnTheWireAndLeavesTheRequestAlone",
  "TestKeysAreCheckedBeforeAnyCall",
  "TestWebhookVerifier",
];

interface GoEvent {
  Action: string;
  Test?: string;
  Output?: string;
}

describe("Go SDK against a running gateway", () => {
  let platform: SdkPlatform;
  const results = new Map<string, string>();
  let output = "";

  before(async () => {
    const tools = await sdkTools();
    platform = await startSdkPlatform();
    // -trimpath: without it Go keys each compiled package of this module by its folder, so
    // every new clone compiled the generated contracts anew (about 30 s of CPU against 2 s);
    // with it the machine's Go build cache serves any clone (a new machine fills it once).
    const run = await runProgram("go", ["test", "-trimpath", "-count=1", "-json", "."], {
      cwd: path.join(repoRoot, "sdk/go"),
      env: { ...platform.env, PATH: `${path.join(tools, "go-bin")}:${process.env.PATH}` },
      timeoutMs: 240_000,
    });
    for (const line of run.output.split("\n")) {
      if (!line.startsWith("{")) continue;
      const e = JSON.parse(line) as GoEvent;
      if (e.Output) output += e.Output;
      if (e.Test && ["pass", "fail", "skip"].includes(e.Action)) results.set(e.Test, e.Action);
    }
    if (results.size === 0) output = run.output;
  });

  after(async () => {
    await platform?.close();
  });

  for (const name of EXPECTED) {
    test(`go test ${name}`, () => {
      assert.equal(results.get(name), "pass", `${name}: ${results.get(name) ?? "did not run"}\n${output}`);
    });
  }

  test("no Go test failed or was skipped", () => {
    const bad = [...results].filter(([, action]) => action !== "pass");
    assert.deepEqual(bad, [], output);
  });

  test("the Go webhook test asked for exactly one tip event", () => {
    assert.equal(platform.published.length, 1);
  });

  test("the qr service saw each accepted call once, as the partner key with the role partner", () => {
    assert.equal(platform.seen.length, GATEWAY_CALLS.length + 1, `${TWICE} calls twice\n${platform.seen.join("\n")}`);
    assert.equal(new Set(platform.seen.map((s) => s.split(" ")[0])).size, GATEWAY_CALLS.length);
    for (const s of platform.seen) assert.match(s, new RegExp(`^[0-9a-f-]{36} ${platform.key.keyId} partner$`));
  });
});
