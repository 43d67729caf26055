import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { withTransaction, type PoolClient } from "../src/db.js";
import { batchRefusal } from "../src/domain-errors.js";
import { errorInterceptor } from "../src/interceptors.js";
import { Metrics } from "../src/metrics.js";
import { captureLogger, createTestDatabase, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await db.pool.query("CREATE TABLE accounts (id int PRIMARY KEY, n int NOT NULL)");
});
after(() => db.drop());

const resetAccounts = () => db.pool.query("TRUNCATE accounts; INSERT INTO accounts VALUES (1, 0), (2, 0)");
const balances = async () => (await db.pool.query<{ n: number }>("SELECT n FROM accounts ORDER BY id")).rows.map((r) => r.n);

/** Resolves once `n` parties have arrived: both transactions hold their first lock before either asks for its second. */
function barrier(n: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return () => {
    if (++arrived === n) open();
    return opened;
  };
}

/**
 * A service (grpc.health's Check, as the smallest unary method) whose handler
 * runs `handle` against the test database, behind the runtime's metrics and
 * error interceptors as a server runs them (metrics outermost).
 */
function service(handle: () => Promise<void>) {
  const { logger, records } = captureLogger("debug");
  const metrics = new Metrics();
  const transport = createRouterTransport(
    (router) =>
      router.service(Health, {
        check: async () => {
          await handle();
          return {};
        },
      }),
    { router: { interceptors: [metrics.interceptor(), errorInterceptor(logger)] } },
  );
  const client = createClient(Health, transport);
  const call = () => client.check({}).then(() => "OK" as const, (e: unknown) => e as ConnectError);
  const handled = async (code: string) => {
    const metric = await metrics.handled.get();
    return metric.values.filter((v) => v.labels.grpc_code === code).reduce((sum, v) => sum + v.value, 0);
  };
  return { call, records, handled };
}

/** Two calls whose transactions lock the two accounts in opposite order: PostgreSQL picks one of them as the deadlock's victim. */
async function deadlockedCalls() {
  await resetAccounts();
  const bothLocked = barrier(2);
  const order = [
    [1, 2],
    [2, 1],
  ];
  let next = 0;
  const svc = service(() => {
    const [first, second] = order[next++];
    return withTransaction(db.pool, async (tx: PoolClient) => {
      await tx.query("UPDATE accounts SET n = n + 1 WHERE id = $1", [first]);
      await bothLocked();
      await tx.query("UPDATE accounts SET n = n + 1 WHERE id = $1", [second]);
    });
  });
  const outcomes = await Promise.all([svc.call(), svc.call()]);
  return { ...svc, outcomes };
}

/** Refusal a caller sees for a lost conflict: ABORTED, a reason to branch on, and nothing of SQL in its text. */
function assertConflictRefusal(e: ConnectError | "OK") {
  assert.ok(e instanceof ConnectError, "the call fails");
  assert.equal(Code[e.code], Code[Code.Aborted]);
  assert.equal(e.findDetails(DomainErrorInfoSchema)[0]?.reason, "CONCURRENT_CHANGE");
  assert.match(e.rawMessage, /concurrent change/);
  assert.match(e.rawMessage, /retry/);
  assert.doesNotMatch(e.rawMessage, /deadlock|serializ|lock|accounts|UPDATE|SELECT|40P01|40001|55P03|relation|process \d/i);
}

describe("a statement that lost to a concurrent transaction is ABORTED, for the caller to retry", () => {
  test("a real deadlock: one call succeeds, the other is ABORTED (not INTERNAL), logged at warn with its SQLSTATE and counted", async () => {
    const { outcomes, records, handled } = await deadlockedCalls();
    const failed = outcomes.filter((o) => o !== "OK");
    assert.equal(failed.length, 1, `exactly one victim: ${outcomes.map((o) => (o === "OK" ? o : Code[o.code])).join(", ")}`);
    assertConflictRefusal(failed[0]);
    // The victim's transaction was rolled back: only the winner's two increments remain.
    assert.deepEqual(await balances(), [1, 1]);
    const warned = records().filter((r) => r.level === "warn");
    assert.equal(warned.length, 1);
    assert.equal(warned[0].sqlstate, "40P01");
    assert.equal(records().filter((r) => r.level === "error").length, 0, "a lost conflict is not a server fault");
    assert.equal(await handled("Aborted"), 1);
    assert.equal(await handled("Internal"), 0);
  });

  test("a serialization failure (REPEATABLE READ, a row changed after the snapshot) is ABORTED", async () => {
    await resetAccounts();
    const svc = service(() =>
      withTransaction(db.pool, async (tx) => {
        await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        await tx.query("SELECT n FROM accounts WHERE id = 1");
        await db.pool.query("UPDATE accounts SET n = 10 WHERE id = 1");
        await tx.query("UPDATE accounts SET n = n + 1 WHERE id = 1");
      }),
    );
    assertConflictRefusal(await svc.call());
    assert.equal(svc.records().find((r) => r.level === "warn")?.sqlstate, "40001");
    assert.deepEqual(await balances(), [10, 0]);
  });

  test("a lock not available (FOR UPDATE NOWAIT on a row another transaction holds) is ABORTED", async () => {
    await resetAccounts();
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT n FROM accounts WHERE id = 1 FOR UPDATE");
      const svc = service(async () => {
        await db.pool.query("SELECT n FROM accounts WHERE id = 1 FOR UPDATE NOWAIT");
      });
      assertConflictRefusal(await svc.call());
      assert.equal(svc.records().find((r) => r.level === "warn")?.sqlstate, "55P03");
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
  });

  test("any other database error is still INTERNAL, its text hidden", async () => {
    await resetAccounts();
    const svc = service(async () => {
      await db.pool.query("INSERT INTO accounts VALUES (1, 0)");
    });
    const e = await svc.call();
    assert.ok(e instanceof ConnectError);
    assert.equal(Code[e.code], Code[Code.Internal]);
    assert.doesNotMatch(e.rawMessage, /duplicate|accounts/);
    assert.equal(svc.records().find((r) => r.level === "error")?.msg, "unhandled error in handler");
  });
});

describe("a batch item whose statement lost to a concurrent transaction", () => {
  test("is ABORTED in the batch's answer, as the error interceptor answers the call alone (not INTERNAL), logged at warn", async () => {
    await resetAccounts();
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT n FROM accounts WHERE id = 1 FOR UPDATE");
      const lost = await db.pool.query("SELECT n FROM accounts WHERE id = 1 FOR UPDATE NOWAIT").then(() => undefined, (e: unknown) => e);
      assert.ok(lost, "the row is held");
      const logged: { level: string; fields: object }[] = [];
      const logger = { error: (fields: object) => void logged.push({ level: "error", fields }), warn: (fields: object) => void logged.push({ level: "warn", fields }) };
      const item = batchRefusal(lost, logger, "a batch item failed");
      const alone = await service(() => Promise.reject(lost)).call();
      assert.ok(alone instanceof ConnectError);
      assert.equal(Code[item.code], Code[alone.code]);
      assert.equal(Code[item.code], Code[Code.Aborted]);
      assert.match(item.message, /concurrent change/);
      assert.doesNotMatch(item.message, /lock|accounts|SELECT|55P03/i);
      assert.deepEqual(logged, [{ level: "warn", fields: { sqlstate: "55P03", condition: "lock_not_available" } }]);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
  });
});
