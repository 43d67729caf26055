// The key of one intended write (the screens' write guard): kept over a lost
// answer for the same request, new after a definite answer or for an edited
// request. No browser: the bookkeeping the guard runs on.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { requestKey } from "../src/lib/request-key.js";
import { formIntent } from "../src/lib/form-intent.js";
import { settlesWrite, WriteKey } from "../src/lib/write-key.js";

const form = (fields: Record<string, string>) => {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return formIntent(f);
};

test("a retry of the same request after a lost answer carries the same key", () => {
  const k = new WriteKey("page-key-1");
  const first = k.use(form({ amount: "500", phone: "0712345678" }));
  assert.equal(first, "page-key-1", "the page's key is the first write's");
  assert.equal(k.use(form({ amount: "500", phone: "0712345678" })), first);
});

test("an amount edited after a lost answer is another write: a new key, not the first write's", () => {
  const k = new WriteKey();
  const first = k.use(form({ amount: "500", phone: "0712345678" }));
  const edited = k.use(form({ amount: "300", phone: "0712345678" }));
  assert.notEqual(edited, first, "the service would refuse the kept key or answer with the 500's result");
  assert.equal(k.use(form({ amount: "300", phone: "0712345678" })), edited, "the edited write's own retry keeps its key");
  // Going back to 500, still unanswered: the first write again (it may have gone through). Before, a third key: twice 500.
  assert.equal(k.use(form({ amount: "500", phone: "0712345678" })), first);
  k.settle(first);
  assert.notEqual(k.use(form({ amount: "500", phone: "0712345678" })), first, "once answered, 500 again is a new write");
});

test("a definite answer ends the write: the next one gets a new key, whatever it asks", () => {
  const k = new WriteKey();
  const used = k.use(form({ table: "T1" }));
  k.settle(used);
  const next = k.use(form({ table: "T1" }));
  assert.notEqual(next, used);
  k.settle(used); // a late answer for the old key changes nothing
  assert.equal(k.use(form({ table: "T1" })), next);
});

test("a call that says nothing about its request keeps the key (the card's confirmation after its start)", () => {
  const k = new WriteKey();
  const started = k.use(form({ "card-amount": "10", "card-currency": "USD" }));
  assert.equal(k.use(), started);
  assert.equal(k.use(form({ "card-amount": "10", "card-currency": "USD" })), started);
});

test("fields' order and names count; a file is its name and size", () => {
  assert.notEqual(form({ a: "1", b: "2" }), form({ b: "2", a: "1" }));
  const f = new FormData();
  f.append("photo", new Blob(["abc"]), "me.jpg");
  assert.equal(formIntent(f), JSON.stringify([["photo", "me.jpg:3"]]));
});

test("the tip form posted by the browser: its key is the page's seed's for the request, a new one for an edited request", () => {
  const ask = (amount: string) => JSON.stringify(["CODE42", amount, "KES", "254712345678", true, ""]);
  const first = requestKey("seed-1", ask("5000"));
  assert.match(first, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "a UUID (version 8)");
  assert.equal(requestKey("seed-1", ask("5000")), first, "the same request from the same page: the same write");
  assert.notEqual(requestKey("seed-1", ask("10000")), first, "an edited amount: another write");
  assert.notEqual(requestKey("seed-2", ask("5000")), first, "another page: another write");
});

test("a refusal the gateway answers before any service reads the key (a session ended, a rate limit) keeps the key; the service's own refusals, a withdrawal limit among them, settle it", () => {
  const limit = new ConnectError("over your daily limit", Code.ResourceExhausted, undefined, [{ desc: DomainErrorInfoSchema, value: { reason: "LIMIT_EXCEEDED" } }]);
  assert.deepEqual(
    [new ConnectError("x", Code.Unauthenticated), new ConnectError("x", Code.ResourceExhausted), limit, new ConnectError("x", Code.FailedPrecondition), new ConnectError("x", Code.DeadlineExceeded)].map(settlesWrite),
    [false, false, true, true, false],
  );
});

test("a request sent and not answered for is known as such until its answer", () => {
  const keys = new WriteKey("key-1");
  const used = keys.use("1000|");
  assert.equal(keys.sentUnanswered("1000|"), true);
  assert.equal(keys.sentUnanswered("2000|"), false);
  keys.settle(used);
  assert.equal(keys.sentUnanswered("1000|"), false);
});
