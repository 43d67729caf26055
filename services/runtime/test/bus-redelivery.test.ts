// A message its consumer keeps failing on comes back less and less often (redeliveryDelay), on
// both buses, and each failed delivery is counted: one event that always fails (a poison message,
// a peer down for hours) cost a transaction and a log line every second, and no metric said so.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { connect } from "nats";
import { type EventBus, InProcessBus, JetStreamBus, RedeliverSoon, redeliveryDelay } from "../src/bus.js";
import { Metrics } from "../src/metrics.js";
import { captureLogger, eventually, testEnv, uniqueName } from "../src/testing/index.js";

const FIRST_WAIT_MS = 50;
const DELIVERIES = 5;

test("the wait before a delivery again doubles with each failure, up to 30 times the first", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 1_000].map((n) => redeliveryDelay(1_000, n)),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000],
  );
  assert.equal(redeliveryDelay(1_000, 0), 1_000, "a count the bus could not read waits the first wait");
});

/**
 * Subscribes a handler that always fails to one subject of `bus`, publishing on another subject
 * the whole time (the in-process bus wakes its consumers on each publish); once it has failed
 * DELIVERIES times, checks each failure was counted and answers the gaps between deliveries.
 */
async function failingDeliveries(bus: EventBus, durable: string, thrown: () => Error = () => new Error("test: this event always fails")): Promise<number[]> {
  const metrics = new Metrics();
  const at: number[] = [];
  await bus.publish({ id: randomUUID(), subject: "ttip.redeliver.poison", data: new Uint8Array([1]) });
  const sub = await bus.subscribe({
    durable,
    subject: "ttip.redeliver.poison",
    metrics,
    handler: async () => {
      at.push(performance.now());
      throw thrown();
    },
  });
  let publishing = true;
  const traffic = (async () => {
    while (publishing) {
      await bus.publish({ id: randomUUID(), subject: "ttip.redeliver.other", data: new Uint8Array([2]) });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  try {
    await eventually(`${DELIVERIES} deliveries`, () => at.length >= DELIVERIES, { timeoutMs: 20_000 });
  } finally {
    publishing = false;
    await traffic;
    await sub.stop();
  }
  const text = await metrics.registry.metrics();
  const counted = Number(new RegExp(`ttip_bus_handler_failures_total\\{consumer="${durable}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  assert.equal(counted, thrown() instanceof RedeliverSoon ? 0 : at.length, "every failed delivery counted, none deferred on purpose");
  return at.slice(1).map((t, i) => t - at[i]);
}

/** Each gap at least the wait the failure before it was given (a slow machine only lengthens them). */
function assertBackedOff(gaps: number[]): void {
  for (const [i, gap] of gaps.slice(0, DELIVERIES - 1).entries()) {
    const wait = redeliveryDelay(FIRST_WAIT_MS, i + 1);
    // JetStream's timers and ours may each round a few milliseconds down.
    assert.ok(gap >= wait - 10, `delivery ${i + 2} came ${gap.toFixed(0)} ms after delivery ${i + 1}, before its wait of ${wait} ms`);
  }
}

test("in-process bus: a failing message waits longer each time, publishes meanwhile do not bring it early, and each failure is counted", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, FIRST_WAIT_MS);
  try {
    assertBackedOff(await failingDeliveries(bus, "in-process"));
  } finally {
    await bus.close();
  }
});

test("a handler deferring on purpose (RedeliverSoon: a send due again in a second) has its message back, and no failure counted", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, FIRST_WAIT_MS);
  try {
    // Counted, notification's retries and failovers to the next SMS provider paged as a consumer stuck (and, backed off, waited up to 30 s).
    await failingDeliveries(bus, "deferring", () => new RedeliverSoon("test: due again soon"));
  } finally {
    await bus.close();
  }
});

test("JetStream: a failing message waits longer each time, and each failure is counted", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("REDELIVER").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("rd").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger, redeliveryDelayMs: FIRST_WAIT_MS });
  try {
    assertBackedOff(await failingDeliveries(bus, "jetstream"));
  } finally {
    const nc = await connect({ servers: natsUrl });
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});
