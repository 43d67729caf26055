import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { inspect } from "node:util";
import { LightHeaders } from "../src/light-headers.js";

/** Both kinds after the same operations: what each answers, and what each throws. */
function both(ops: (h: Headers) => unknown) {
  const answer = (h: Headers) => {
    try {
      return { value: ops(h) };
    } catch (err) {
      return { threw: (err as Error).constructor.name };
    }
  };
  return { light: answer(new LightHeaders()), fetch: answer(new Headers()) };
}

const sorted = (h: Headers) => [...h].sort(([a], [b]) => (a < b ? -1 : 1));

describe("LightHeaders", () => {
  test("answers as fetch's Headers: names in any case, values appended with ', ', trimmed, deleted", () => {
    const script = (h: Headers) => {
      h.append("X-Request-Id", " abc\t");
      h.append("accept-encoding", "gzip");
      h.append("Accept-Encoding", "br");
      h.append("cookie", "a=1");
      h.append("Cookie", "b=2");
      h.set("x-ttip-subject", "user-1");
      h.delete("X-TTIP-SUBJECT");
      h.delete("x-absent");
      return { id: h.get("x-request-id"), enc: h.get("ACCEPT-ENCODING"), subject: h.get("x-ttip-subject"), has: h.has("X-Request-ID"), all: sorted(h) };
    };
    const { light, fetch } = both(script);
    assert.deepEqual(light, fetch);
    assert.deepEqual((light.value as { all: unknown }).all, [["accept-encoding", "gzip, br"], ["cookie", "a=1; b=2"], ["x-request-id", "abc"]]);
  });

  test("refuses what fetch refuses: a name that is no token, a value with CR, LF or NUL", () => {
    for (const bad of [(h: Headers) => h.set("bad name", "v"), (h: Headers) => h.append("x-a", "1\r\nx-b: 2"), (h: Headers) => h.set("x-a", "a\0b"), (h: Headers) => h.append("", "v")]) {
      const { light, fetch } = both(bad);
      assert.deepEqual(light, { threw: "TypeError" });
      assert.deepEqual(fetch, { threw: "TypeError" });
    }
  });

  test("is a Headers to whoever asks, and copies into one", () => {
    const h = LightHeaders.fromRaw([":method", "POST", ":path", "/x", "content-type", "application/proto", "X-Forwarded-For", "10.0.0.1", "x-forwarded-for", "10.0.0.2"]);
    assert.ok(h instanceof Headers);
    const copy = new Headers(h);
    assert.equal(copy.get("x-forwarded-for"), "10.0.0.1, 10.0.0.2");
    assert.equal(h.get(":method"), null, "pseudo-headers are not headers");
    const seen: string[] = [];
    h.forEach((value, key, parent) => seen.push(`${key}=${value}:${parent === h}`));
    assert.deepEqual(seen, ["content-type=application/proto:true", "x-forwarded-for=10.0.0.1, 10.0.0.2:true"]);
    assert.deepEqual([...h.keys()], ["content-type", "x-forwarded-for"]);
    assert.match(inspect(h), /"x-forwarded-for":"10\.0\.0\.1, 10\.0\.0\.2"/, "a log line shows its entries");
  });
  test("copies what new Headers(init) takes as fetch's Headers does: a Headers, pairs, a record; refuses what it refuses", () => {
    const fetchHeaders = new Headers([["X-Request-Id", "r-1"], ["Accept-Language", "sw"]]);
    const inits: ConstructorParameters<typeof Headers>[0][] = [
      undefined,
      fetchHeaders,
      LightHeaders.of(fetchHeaders),
      [["x-a", " 1 "], ["X-A", "2"], ["cookie", "a=1"], ["Cookie", "b=2"]],
      { "X-Ttip-Subject": "user-1", "content-type": "application/proto" },
    ];
    for (const init of inits) {
      const light = LightHeaders.of(init);
      assert.ok(light instanceof Headers);
      assert.deepEqual(sorted(light), sorted(new Headers(init)), `init ${JSON.stringify(init)}`);
    }
    const original = LightHeaders.of({ "x-a": "1" });
    const copy = LightHeaders.of(original);
    copy.set("x-a", "2");
    assert.equal(original.get("x-a"), "1", "a copy, not the same entries");
    for (const bad of [[["bad name", "v"]], { "x-a": "1\r\nx-b: 2" }, [["x-a"]]] as ConstructorParameters<typeof Headers>[0][]) {
      assert.throws(() => new Headers(bad), TypeError);
      assert.throws(() => LightHeaders.of(bad), TypeError);
    }
  });
});
