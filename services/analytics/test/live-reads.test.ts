// How often a live dashboard reads while batches commit: each commit in the process wakes every stream.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { DashboardSnapshotSchema } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { DEFAULT_CONFIG } from "../src/handlers/context.js";
import { live } from "../src/handlers/dashboards.js";
import { rollupChanges } from "../src/ingest.js";

test("a live dashboard reads at most once per liveMinReadGapMs however many batches commit meanwhile, and reads after the last of them", async () => {
  const GAP_MS = 300;
  let reads = 0;
  let lastReadAt = 0;
  const read = async () => ((lastReadAt = Date.now()), [create(DashboardSnapshotSchema, { tipsToday: BigInt(++reads) })]);
  const abort = new AbortController();
  const stream = live({ ...DEFAULT_CONFIG, livePollMs: 60_000, liveMinReadGapMs: GAP_MS }, read, abort.signal);
  await stream.next();
  const seen: bigint[] = [];
  const consumed = (async () => {
    for await (const [s] of stream) seen.push(s!.tipsToday);
  })();
  const started = Date.now();
  let lastChangeAt = 0;
  for (let i = 0; i < 20; i++) {
    lastChangeAt = Date.now();
    rollupChanges.emit("change");
    await sleep(25);
  }
  // The last change is read (a gap after the read before it, at most).
  for (const until = Date.now() + 5_000; lastReadAt < lastChangeAt && Date.now() < until;) await sleep(20);
  const elapsed = Date.now() - started;
  abort.abort();
  await consumed;
  assert.ok(lastReadAt >= lastChangeAt, "read after the last change");
  // Before, a read for each change: 21 here.
  assert.ok(reads <= 2 + Math.ceil(elapsed / GAP_MS), `reads ${reads} in ${elapsed} ms`);
  assert.equal(seen.at(-1), BigInt(reads), "and sent");
});
