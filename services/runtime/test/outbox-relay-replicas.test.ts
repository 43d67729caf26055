// Two replicas of a service relay one outbox: one pass at a time (the service's advisory lock),
// and a claim that locks no row (a row lock is a WAL record per event). Each event reaches the
// stream once, also when both relays run together and when one crashes between publish and delete.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { connect } from "nats";
import { JetStreamBus, type BusMessage, type EventBus } from "../src/bus.js";
import { createPool, migrate, withTransaction, type Pool } from "../src/db.js";
import { OutboxRelay, writeOutbox } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, type TestDatabase, testEnv, uniqueName } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
let db: TestDatabase;
let replicas: Pool[];
before(async () => {
  db = await createTestDatabase();
  await migrate(db.pool, "payment", undefined);
  // Each replica has a pool of its own.
  replicas = [createPool(db.url, { max: 2 }), createPool(db.url, { max: 2 })];
});
after(async () => {
  for (const pool of replicas) await pool.end();
  await db.drop();
});

const write = async (n: number) => {
  const ids = Array.from({ length: n }, () => randomUUID());
  for (const id of ids) await writeOutbox(db.pool, "payment", { id, subject: "ttip.payment.x", data: new Uint8Array([1]) });
  return ids;
};

/** A bus whose publishes wait until `open()`; `asked` resolves once `n` publishes came. */
function heldBus(n: number) {
  const published: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let asked!: () => void;
  const askedAll = new Promise<void>((r) => (asked = r));
  let calls = 0;
  const bus = {
    publish: async (m: BusMessage) => {
      if (++calls === n) asked();
      await gate;
      published.push(m.id);
    },
  } as unknown as EventBus;
  return { bus, published, open, askedAll };
}

test("while one replica's pass publishes, the other's claims nothing, not even rows written since, and no row is locked; then the rest goes once, in order", async () => {
  await db.pool.query("DELETE FROM payment.outbox");
  const first = await write(3);
  const held = heldBus(first.length);
  const passA = new OutboxRelay({ pool: replicas[0], schema: "payment", bus: held.bus, logger }).flush();
  await held.askedAll;
  // The claim took no row lock: another transaction may lock every row at once (FOR UPDATE SKIP LOCKED's claim made this fail).
  const lockable = await withTransaction(db.pool, async (tx) => (await tx.query("SELECT seq FROM payment.outbox FOR UPDATE NOWAIT")).rowCount);
  assert.equal(lockable, first.length);
  const later = await write(2);
  const other: string[] = [];
  const busB = { publish: async (m: BusMessage) => void other.push(m.id) } as unknown as EventBus;
  const relayB = new OutboxRelay({ pool: replicas[1], schema: "payment", bus: busB, logger });
  // SKIP LOCKED's claim would take the two rows written since, out of the first pass's order.
  assert.equal(await relayB.flush(), 0, "the other replica's pass finds the lock taken");
  assert.deepEqual(other, []);
  held.open();
  assert.equal(await passA, first.length);
  assert.deepEqual(held.published, first);
  assert.equal(await relayB.flush(), later.length);
  assert.deepEqual(other, later);
  const left = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.outbox WHERE published_at IS NULL");
  assert.equal(left.rows[0].n, 0);
});

test("two replicas relaying together, one crashing between publish and delete and losing an ack: the stream holds each event once", async () => {
  await db.pool.query("DELETE FROM payment.outbox");
  const stream = uniqueName("R").toUpperCase();
  const prefix = uniqueName("rel");
  const buses = await Promise.all(replicas.map(() => JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger })));
  try {
    const ids = await write(120);
    // Replica 0 crashes once between publishing and deleting (its bus throws while the batch is
    // being sent: the transaction rolls back after four were published) and loses one ack (the
    // bus took the event, the relay heard a failure).
    let calls = 0;
    // The other replica joins once both faults happened: on a loaded machine it could otherwise
    // relay everything first, and the faults under test never occur.
    let faultsDone!: () => void;
    const afterFaults = new Promise<void>((r) => (faultsDone = r));
    const crashing = {
      publish: (m: BusMessage) => {
        calls++;
        if (calls === 15) faultsDone();
        if (calls === 5) throw new Error("crashed after publishing four");
        const sent = buses[0].publish(m);
        return calls === 15 ? sent.then(() => Promise.reject(new Error("ack lost"))) : sent;
      },
    } as unknown as EventBus;
    const relays = [
      new OutboxRelay({ pool: replicas[0], schema: "payment", bus: crashing, logger, batchSize: 10 }),
      new OutboxRelay({ pool: replicas[1], schema: "payment", bus: buses[1], logger, batchSize: 10 }),
    ];
    const drain = async (relay: OutboxRelay) => {
      for (let i = 0; i < 100; i++) await relay.flush().catch(() => 0);
    };
    // Should the faults never happen, the other replica joins once the first is done: the test fails below, naming
    // that, rather than waiting for ever.
    const first = drain(relays[0]);
    await Promise.all([first, Promise.race([afterFaults, first]).then(() => drain(relays[1]))]);
    await eventually("the outbox emptied", async () => {
      for (const relay of relays) await relay.flush();
      return (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.outbox WHERE published_at IS NULL")).rows[0].n === 0;
    });
    const nc = await connect({ servers: testEnv().natsUrl });
    try {
      const info = await (await nc.jetstreamManager()).streams.info(stream);
      assert.equal(info.state.messages, ids.length, "each event once on the stream");
    } finally {
      await nc.close();
    }
    assert.ok(calls >= 15, "the crash and the lost ack happened");
  } finally {
    for (const bus of buses) await bus.close();
  }
});
