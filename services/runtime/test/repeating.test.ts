// repeating: one pass at a time, a failed pass logged and the schedule kept, a stop that waits for the pass running
// and starts no other. inBatches: bounded by a short batch, the pass's limit, or a stop.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { inBatches, repeating } from "../src/repeating.js";
import { captureLogger, eventually } from "../src/testing/index.js";

describe("repeating", () => {
  test("a slow pass never has another beside it: the next starts only after it ended", async () => {
    const { logger } = captureLogger();
    let running = 0;
    let most = 0;
    let passes = 0;
    const stop = repeating(async () => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 30));
      running--;
      passes++;
    }, { everyMs: 2, firstAfterMs: 0, logger, failed: "pass failed" });
    await eventually("three passes", async () => passes >= 3 || undefined, 5_000);
    await stop();
    assert.equal(most, 1, "passes overlapped");
  });

  test("a failed pass is logged with what was left undone, and the next pass still comes", async () => {
    const { logger, records } = captureLogger();
    let calls = 0;
    const stop = repeating(async () => {
      if (++calls === 1) throw new Error("database out of reach");
    }, { everyMs: 5, firstAfterMs: 0, logger, failed: "old rows not deleted; the next pass tries" });
    await eventually("a second pass", async () => calls >= 2 || undefined, 5_000);
    await stop();
    const warned = records().filter((r) => r.msg === "old rows not deleted; the next pass tries");
    assert.equal(warned.length, 1);
    assert.match(JSON.stringify(warned[0].err), /database out of reach/);
  });

  test("the stop settles only when the pass running has ended, and no pass starts after it", async () => {
    const { logger } = captureLogger();
    let release!: () => void;
    let calls = 0;
    const stop = repeating(() => {
      calls++;
      return new Promise<void>((r) => (release = r));
    }, { everyMs: 1, firstAfterMs: 0, logger, failed: "pass failed" });
    await eventually("the first pass", async () => calls === 1 || undefined, 5_000);
    let stopped = false;
    const stopping = stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(stopped, false, "the stop settled while its pass still ran");
    release();
    await stopping;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(calls, 1, "a pass started after the stop");
  });

  test("nonsense schedules are refused at once", () => {
    const { logger } = captureLogger();
    assert.throws(() => repeating(async () => undefined, { everyMs: 0, logger, failed: "x" }), /everyMs/);
    assert.throws(() => repeating(async () => undefined, { everyMs: 10, jitter: 1, logger, failed: "x" }), /jitter/);
  });
});

describe("inBatches", () => {
  /** A table of `rows` rows, deleted `size` at a time: answers the batches' sizes. */
  const table = (rows: number) => {
    const sizes: number[] = [];
    return {
      sizes,
      batch: async (size: number) => {
        const n = Math.min(size, rows);
        rows -= n;
        sizes.push(n);
        return n;
      },
    };
  };

  test("stops at the first short batch", async () => {
    const t = table(7);
    assert.equal(await inBatches({ size: 3, maxBatches: 10 }, t.batch), 7);
    assert.deepEqual(t.sizes, [3, 3, 1]);
  });

  test("a full last batch is followed by one that finds nothing", async () => {
    const t = table(6);
    assert.equal(await inBatches({ size: 3, maxBatches: 10 }, t.batch), 6);
    assert.deepEqual(t.sizes, [3, 3, 0]);
  });

  test("runs at most maxBatches: the rest waits for the next pass", async () => {
    const t = table(100);
    assert.equal(await inBatches({ size: 3, maxBatches: 2 }, t.batch), 6);
    assert.deepEqual(t.sizes, [3, 3]);
  });

  test("a stop ends the pass before its next batch", async () => {
    const t = table(100);
    let stopped = false;
    const n = await inBatches({ size: 3, maxBatches: 10 }, async (size) => {
      const done = await t.batch(size);
      stopped = t.sizes.length === 2;
      return done;
    }, () => stopped);
    assert.equal(n, 6);
  });

  test("bounds that are not positive are refused", async () => {
    await assert.rejects(inBatches({ size: 0, maxBatches: 1 }, async () => 0), /positive/);
    await assert.rejects(inBatches({ size: 1, maxBatches: 0 }, async () => 0), /positive/);
  });
});
