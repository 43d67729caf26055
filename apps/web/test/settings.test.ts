import assert from "node:assert/strict";
import { test } from "node:test";
import { parseWebSettings, provideWebSettings, webSettings } from "../src/lib/settings.js";

test("web settings: checked once, defaults for what is not given, a bad URL named; the host's hand-over wins over the environment", () => {
  assert.deepEqual(parseWebSettings({}), { apiUrl: "http://127.0.0.1:8080", stripeJsUrl: "https://js.stripe.com/v3/" });
  assert.equal(parseWebSettings({ apiUrl: "http://127.0.0.1:9000" }).apiUrl, "http://127.0.0.1:9000");
  assert.throws(() => parseWebSettings({ apiUrl: "127.0.0.1:9000" }), /^Error: apiUrl \(TTIP_API_URL\): "127.0.0.1:9000" is not an http\(s\) URL$/);
  assert.throws(() => parseWebSettings({ stripeJsUrl: "javascript:alert(1)" }), /stripeJsUrl \(STRIPE_JS_URL\)/);
  assert.ok(Object.isFrozen(parseWebSettings({})));
  const handed = parseWebSettings({ apiUrl: "http://127.0.0.1:9100", stripeJsUrl: "http://127.0.0.1:9200/v3/" });
  provideWebSettings(handed);
  assert.equal(webSettings(), handed);
});
