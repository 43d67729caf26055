// A server stream's request messages (messagesOf) are handed over as connect's createAsyncIterable
// hands them: the same results, call for call, whoever reads them and however they stop.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { messagesOf } from "../src/connect-stream.js";

type Make = (items: readonly string[]) => AsyncIterator<string> & AsyncIterable<string>;
const ways: [string, Make][] = [
  ["connect's createAsyncIterable", (items) => createAsyncIterable([...items]) as AsyncIterator<string> & AsyncIterable<string>],
  ["messagesOf", messagesOf],
];

/** What each way answers to the same reads, as settled values. */
async function answers(read: (make: Make) => Promise<unknown[]>): Promise<unknown[][]> {
  return Promise.all(ways.map(([, make]) => read(make)));
}
const settled = (p: Promise<unknown>) => p.then((value) => ({ value }), (err: Error) => ({ rejected: err.message }));

describe("a server stream's request messages", () => {
  test("read to the end, twice over (one iterator: the second read finds nothing), and past it", async () => {
    const [theirs, ours] = await answers(async (make) => {
      const it = make(["a", "b"]);
      const seen: unknown[] = [];
      for await (const m of it) seen.push(m);
      for await (const m of it) seen.push(`again ${m}`);
      seen.push(await it.next(), await it.next());
      return seen;
    });
    assert.deepEqual(ours, theirs);
    assert.deepEqual(ours, ["a", "b", { done: true, value: undefined }, { done: true, value: undefined }]);
  });

  test("stopped by return() or throw() before or after the first message: then done", async () => {
    for (const stop of ["return", "throw"] as const) {
      for (const before of [0, 1]) {
        const [theirs, ours] = await answers(async (make) => {
          const it = make(["a", "b", "c"]);
          const seen: unknown[] = [];
          for (let i = 0; i < before; i++) seen.push(await it.next());
          seen.push(await settled(stop === "return" ? it.return!("r") : it.throw!(new Error("stopped"))));
          seen.push(await it.next(), await it.next());
          return seen;
        });
        assert.deepEqual(ours, theirs, `${stop} after ${before}`);
      }
    }
  });

  test("none: done at once", async () => {
    const [theirs, ours] = await answers(async (make) => [await make([]).next()]);
    assert.deepEqual(ours, theirs);
  });
});
