import assert from "node:assert/strict";
import { test } from "node:test";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ListInAppNotificationsResponseSchema, RenderTemplateRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { GetTrialBalanceRequestSchema } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { decompressMessage, encodedLargerThan, envelopedMessage, inspectMessage, timestampOutOfRangeField } from "../src/input.js";

const request = (seconds: bigint, nanos = 0) => create(GetTrialBalanceRequestSchema, { asOf: { seconds, nanos } });

test("a Timestamp outside year 1 to 9999 is named by its field; the range's own ends pass", () => {
  for (const [seconds, nanos, expected] of [
    [0n, 0, undefined],
    [-62_135_596_800n, 0, undefined], // 0001-01-01T00:00:00Z
    [253_402_300_799n, 999_999_999, undefined], // 9999-12-31T23:59:59.999999999Z
    [253_402_300_800n, 0, "as_of"],
    [-62_135_596_801n, 0, "as_of"],
    [9_223_372_036_854_775_807n, 0, "as_of"],
    [0n, -1, "as_of"],
    [0n, 1_000_000_000, "as_of"],
  ] as const) {
    assert.equal(timestampOutOfRangeField(GetTrialBalanceRequestSchema, request(seconds, nanos)), expected, `${seconds}s ${nanos}ns`);
  }
  assert.equal(timestampOutOfRangeField(GetTrialBalanceRequestSchema, create(GetTrialBalanceRequestSchema)), undefined, "unset");
});

test("one walk over a message names its first NUL string and its first Timestamp out of range by path, and bounds its binary size from above", () => {
  const list = create(ListInAppNotificationsResponseSchema, {
    notifications: [
      { notificationId: "a", title: "sawa", createdAt: { seconds: 1n } },
      { notificationId: "b", body: "bad\u0000", readAt: { seconds: 253_402_300_800n } },
      { title: "also\u0000bad", createdAt: { seconds: -62_135_596_801n } },
    ],
  });
  const found = inspectMessage(ListInAppNotificationsResponseSchema, list);
  assert.equal(found.unstorable, "notifications[1].body");
  assert.equal(found.timeOutOfRange, "notifications[1].read_at");
  const size = toBinary(ListInAppNotificationsResponseSchema, list).byteLength;
  assert.ok(found.sizeBound >= size, `${found.sizeBound} >= ${size}`);
  assert.equal(encodedLargerThan(ListInAppNotificationsResponseSchema, list, size), false);
  assert.equal(encodedLargerThan(ListInAppNotificationsResponseSchema, list, size - 1), true);

  const clean = inspectMessage(ListInAppNotificationsResponseSchema, create(ListInAppNotificationsResponseSchema, { notifications: [{ title: "sawa", createdAt: { seconds: 1n } }] }));
  assert.deepEqual([clean.unstorable, clean.timeOutOfRange], [undefined, undefined]);
  // A map: a key is named as the entry, a value by its key.
  const render = (variables: Record<string, string>) => inspectMessage(RenderTemplateRequestSchema, create(RenderTemplateRequestSchema, { locale: "sw", variables })).unstorable;
  assert.equal(render({ name: "Wanjiku", amount: "KES\u00001" }), 'variables["amount"]');
  assert.equal(render({ name: "Wanjiku", "k\u0000": "v\u0000" }), 'variables["k\\u0000"]');
  assert.equal(render({ name: "Wanjiku" }), undefined);
});

const refusal = (f: () => unknown): ConnectError => {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    return err;
  }
  return assert.fail("expected a refusal");
};

test("decompressMessage: gzip, br and identity up to the limit; corrupt bytes INVALID_ARGUMENT; other encodings UNIMPLEMENTED naming gzip and br", () => {
  const message = Buffer.from("asante sana ".repeat(100));
  for (const [encoding, body] of [["gzip", gzipSync(message)], ["br", brotliCompressSync(message)], ["identity", message], [null, message]] as const) {
    assert.deepEqual(Buffer.from(decompressMessage(encoding, body, message.byteLength)), message, String(encoding));
    if (encoding === "gzip" || encoding === "br") {
      const over = refusal(() => decompressMessage(encoding, body, message.byteLength - 1));
      assert.equal(over.code, Code.ResourceExhausted);
      assert.equal(over.rawMessage, `the request message is larger than the ${message.byteLength - 1} bytes this server reads once decompressed`);
    }
  }
  const corrupt = refusal(() => decompressMessage("gzip", Buffer.from("not gzip at all"), 1024));
  assert.equal(corrupt.code, Code.InvalidArgument);
  // connect-es takes gzip and br under those exact names; the services behind the gateway answer these so.
  for (const encoding of ["GZIP", "deflate", "snappy"]) {
    const unknown = refusal(() => decompressMessage(encoding, gzipSync(message), 1024, "grpc-accept-encoding"));
    assert.equal(unknown.code, Code.Unimplemented, encoding);
    assert.equal(unknown.metadata.get("grpc-accept-encoding"), "gzip,br");
  }
});

test("envelopedMessage: an uncompressed envelope's bytes as they are, a compressed one inflated; compressed without an encoding INVALID_ARGUMENT", () => {
  const message = Buffer.from("asante sana ".repeat(10));
  assert.equal(envelopedMessage(0, message, "gzip", 1024, "grpc-accept-encoding"), message);
  assert.deepEqual(Buffer.from(envelopedMessage(1, gzipSync(message), "gzip", 1024, "grpc-accept-encoding")), message);
  for (const encoding of [null, "identity"]) {
    const refused = refusal(() => envelopedMessage(1, gzipSync(message), encoding, 1024, "grpc-accept-encoding"));
    assert.equal(refused.code, Code.InvalidArgument, String(encoding));
    assert.equal(refused.rawMessage, "a compressed message without its encoding header");
  }
  assert.equal(refusal(() => envelopedMessage(1, gzipSync(message), "gzip", message.byteLength - 1, "grpc-accept-encoding")).code, Code.ResourceExhausted);
});

test("decompressMessage stops at the limit: 1 MB of gzip that would inflate to 1 GiB is refused without inflating it all", () => {
  // 64 gzip members of 16 MiB of zeros each (gunzip reads them as one body).
  const member = gzipSync(Buffer.alloc(16 << 20));
  const bomb = Buffer.concat(Array.from({ length: 64 }, () => member));
  assert.ok(bomb.byteLength < 1 << 20, `${bomb.byteLength} bytes`);
  const before = Math.max(process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
  const refused = refusal(() => decompressMessage("gzip", bomb, 1 << 20));
  assert.equal(refused.code, Code.ResourceExhausted);
  // The process's peak memory: inflating it all would have held 1 GiB.
  const grew = process.resourceUsage().maxRSS * 1024 - before;
  assert.ok(grew < 128 << 20, `peak memory grew by ${Math.round(grew / 2 ** 20)} MiB`);
});
