import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createHash } from "node:crypto";
import { clone, create, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema, IdempotencyKeyConflictSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { SendNotificationRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { CreateTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { migrate, withTransaction } from "../src/db.js";
import {
  AlreadyReversedError,
  connectErrorOf,
  IdempotencyConflictError,
  InsufficientFundsError,
  LimitExceededError,
  NotConfiguredError,
  NotFoundError,
} from "../src/domain-errors.js";
import { claimIdempotencyKey, claimingManyCte, idempotencyRace, requestFingerprint } from "../src/idempotency.js";
import { createTestDatabase, eventually, heapWalRecords, uniqueName, type TestDatabase } from "../src/testing/index.js";

const tip = (amountMinor: bigint, key: string) =>
  create(CreateTipRequestSchema, { idempotencyKey: key, amount: { amountMinor, currency: "KES" }, recipient: { case: "qrCode", value: "ABC123" } });

describe("request fingerprints", () => {
  test("the same request under any key is the same; any other field makes another", () => {
    assert.equal(requestFingerprint(CreateTipRequestSchema, tip(25_000n, "a")), requestFingerprint(CreateTipRequestSchema, tip(25_000n, "b")));
    assert.notEqual(requestFingerprint(CreateTipRequestSchema, tip(25_000n, "a")), requestFingerprint(CreateTipRequestSchema, tip(25_100n, "a")));
    const original = tip(25_000n, "keep");
    requestFingerprint(CreateTipRequestSchema, original);
    assert.equal(original.idempotencyKey, "keep", "the caller's message is not changed");
  });

  test("the fingerprint is the binary of the request with its key cleared, whatever its fields (oneof, map, repeated, nested)", () => {
    const send = create(SendNotificationRequestSchema, {
      idempotencyKey: "receipt:abc", recipient: { case: "phone", value: "+254712345678" }, templateKey: TemplateKey.RECEIPT,
      variables: { amount: "KES 150", worker: "Amina" }, channels: [Channel.SMS], locale: "sw",
    });
    const tipped = tip(25_000n, "k-1");
    for (const [schema, request] of [[SendNotificationRequestSchema, send], [CreateTipRequestSchema, tipped]] as const) {
      const cleared = clone(schema as DescMessage, request) as unknown as { idempotencyKey: string };
      cleared.idempotencyKey = "";
      const expected = createHash("sha256").update(toBinary(schema as DescMessage, cleared as never)).digest("hex");
      assert.equal(requestFingerprint(schema as DescMessage, request as never), expected, schema.typeName);
    }
    assert.equal(send.idempotencyKey, "receipt:abc");
    assert.deepEqual(send.recipient, { case: "phone", value: "+254712345678" }, "the request is not changed");
  });
});

describe("claimIdempotencyKey on PostgreSQL", () => {
  let db: TestDatabase;
  const schema = uniqueName("idem");
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, schema, undefined);
  });
  after(async () => db?.drop());

  const request = (key: string, fingerprint: string, caller = "") => ({ schema, operation: "test/Create", caller, key, fingerprint });
  const claim = (key: string, fingerprint: string, resultId: string, caller = "") =>
    withTransaction(db.pool, async (tx) => {
      return claimIdempotencyKey(tx, request(key, fingerprint, caller), resultId);
    });

  test("first claim makes; a retry of the same request gets the first result; another request is a conflict naming the key", async () => {
    const key = randomUUID();
    assert.equal(await claim(key, "f1", "result-1"), undefined);
    assert.equal(await claim(key, "f1", "result-2"), "result-1");
    const err = await claim(key, "f2", "result-3").catch((e) => e);
    assert.ok(err instanceof IdempotencyConflictError);
    const ce = connectErrorOf(err)!;
    assert.equal(ce.code, Code.AlreadyExists);
    assert.match(ce.message, /idempotency_key/);
    assert.deepEqual(ce.findDetails(IdempotencyKeyConflictSchema).map((d) => d.idempotencyKey), [key]);
  });

  test("keys are per caller where the operation says so", async () => {
    const key = randomUUID();
    assert.equal(await claim(key, "f1", "a", "alice"), undefined);
    assert.equal(await claim(key, "f2", "b", "bob"), undefined);
  });

  test("a claim rolled back with its transaction frees the key", async () => {
    const key = randomUUID();
    await assert.rejects(
      withTransaction(db.pool, async (tx) => {
          await claimIdempotencyKey(tx, request(key, "f1"), "lost");
        throw new Error("the write failed");
      }),
      /the write failed/,
    );
    assert.equal(await claim(key, "f2", "kept"), undefined);
  });

  test("concurrent claims of one key: exactly one makes, the others get its result", async () => {
    const key = randomUUID();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claim(key, "same", `r${i}`)));
    const made = results.filter((r) => r === undefined).length;
    assert.equal(made, 1);
    const winner = results.map((r, i) => (r === undefined ? `r${i}` : undefined)).find(Boolean);
    assert.ok(results.every((r) => r === undefined || r === winner));
  });
});

describe("claimingManyCte on PostgreSQL", () => {
  let db: TestDatabase;
  const schema = uniqueName("idem_many");
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, schema, undefined);
  });
  after(async () => db?.drop());

  const claims = (keys: string[]) => keys.map((key) => ({ request: { schema, operation: "test/Batch", caller: "", key, fingerprint: "f" }, resultId: `made:${key}` }));
  /** One statement claiming `keys` (in the order given), as a batch call's; the result ids it claimed. */
  const claimMany = async (db: { query: TestDatabase["pool"]["query"] }, keys: string[]) => {
    const claim = claimingManyCte(claims(keys), 1);
    const { rows } = await db.query<{ result_id: string }>(`WITH ${claim.sql} SELECT result_id FROM claimed`, claim.values);
    return rows.map((r) => r.result_id).sort();
  };

  test("two batches claiming overlapping keys concurrently, one in the other order, do not deadlock", async () => {
    const [low, high] = [`a-${randomUUID()}`, `b-${randomUUID()}`];
    // One batch has claimed `low` and is about to claim `high` (its open transaction stands for its statement midway).
    const first = await db.pool.connect();
    try {
      await first.query("BEGIN");
      await claimMany(first, [low]);
      // The other names them high first: taken in that order it would hold `high` while it waits for `low`.
      // Its refusal caught at once: it can arrive before the first's COMMIT answers, and a rejection left
      // unhandled for a turn fails the test (as it did once in CI).
      const second = claimMany(db.pool, [high, low]).catch((err: unknown) => err);
      await eventually("the second batch waiting for the first", async () => {
        const { rows } = await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [`%${schema}%idempotent_requests%`]);
        return rows.length > 0;
      });
      assert.deepEqual(await claimMany(first, [high]), [`made:${high}`], "the first goes on to its next key (a deadlock error here without the order)");
      await first.query("COMMIT");
      // Its insert of `low` lost on the key (NOT EXISTS did not see it): it wrote nothing, and run again finds both used.
      assert.ok(idempotencyRace(await second, schema), "the second lost the race on the key");
      assert.deepEqual(await claimMany(db.pool, [high, low]), [], "run again, the second finds both keys used");
    } finally {
      await first.query("ROLLBACK").catch(() => undefined);
      first.release();
    }
  });

  test("a batch's claims are written with one heap WAL record each (NOT EXISTS, no speculative insert to confirm); claimed again, none", async () => {
    await db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
    const keys = Array.from({ length: 5 }, () => randomUUID());
    /** The heap WAL records of a statement claiming `keys`, which claims `made` of them. */
    const claimed = (keys: string[], made: number) =>
      heapWalRecords(db.pool, `${schema}.idempotent_requests`, { outside: async () => assert.equal((await claimMany(db.pool, keys)).length, made) });
    assert.deepEqual(await claimed(keys, 5), { INSERT: 5 }, "ON CONFLICT DO NOTHING also wrote a HEAP_CONFIRM per claim");
    assert.deepEqual(await claimed(keys.slice(0, 2), 0), {}, "nothing written for keys used before");
  });

  test("a key claimed by a concurrent transaction: the statement waits, loses on the key writing nothing of the batch, and run again claims only the others", async () => {
    const [taken, free] = [`a-${randomUUID()}`, `b-${randomUUID()}`];
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      assert.deepEqual(await claimMany(other, [taken]), [`made:${taken}`]);
      const repeat = claimMany(db.pool, [free, taken]).catch((err: unknown) => err);
      await eventually("the repeat waiting on the other's key", async () =>
        (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1", [`%${schema}%idempotent_requests%`])).rows.length > 0);
      await other.query("COMMIT");
      assert.ok(idempotencyRace(await repeat, schema), "lost on the key");
      assert.equal(idempotencyRace(await repeat, "elsewhere"), false, "another schema's table is not this one's race");
      const written = await db.pool.query("SELECT key FROM " + schema + ".idempotent_requests WHERE key = ANY($1::text[]) ORDER BY key", [[taken, free]]);
      assert.deepEqual(written.rows.map((r) => r.key), [taken], "nothing of the losing statement written");
      assert.deepEqual(await claimMany(db.pool, [free, taken]), [`made:${free}`], "run again: the free key claimed, the taken one found used");
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
    }
  });

  test("a key claimed by a concurrent transaction that rolls back: the waiting statement claims it", async () => {
    const key = randomUUID();
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      await claimMany(other, [key]);
      const waiting = claimMany(db.pool, [key]);
      await eventually("waiting on the other's key", async () =>
        (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1", [`%${schema}%idempotent_requests%`])).rows.length > 0);
      await other.query("ROLLBACK");
      assert.deepEqual(await waiting, [`made:${key}`]);
    } finally {
      other.release();
    }
  });
});

describe("domain errors map to Connect codes in one place", () => {
  test("each typed error has its code and its reason in the details", () => {
    const rows: [Error, Code, string][] = [
      [new InsufficientFundsError("insufficient funds", { available: "KES 10.00" }), Code.FailedPrecondition, "INSUFFICIENT_FUNDS"],
      [new LimitExceededError("daily limit reached"), Code.FailedPrecondition, "LIMIT_EXCEEDED"],
      [new AlreadyReversedError("entry already reversed"), Code.FailedPrecondition, "ALREADY_REVERSED"],
      [new NotConfiguredError("no fee schedule"), Code.FailedPrecondition, "NOT_CONFIGURED"],
      [new NotFoundError("no such tip"), Code.NotFound, "NOT_FOUND"],
      [new IdempotencyConflictError("k", "op"), Code.AlreadyExists, "IDEMPOTENCY_KEY_CONFLICT"],
    ];
    for (const [err, code, reason] of rows) {
      const ce = connectErrorOf(err);
      assert.ok(ce instanceof ConnectError);
      assert.equal(ce.code, code, reason);
      assert.equal(ce.rawMessage, err.message);
      assert.deepEqual(ce.findDetails(DomainErrorInfoSchema).map((d) => d.reason), [reason]);
    }
    assert.equal(connectErrorOf(new Error("a bug")), undefined, "anything else stays a bug (INTERNAL)");
  });
});
