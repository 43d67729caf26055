// A push made while the test process is stalled (two busy cores: it may not run for a second or more)
// still reaches the Daraja simulator. With the harness's client timeout at 1 s, a push on a new
// connection (the simulator's server closes idle ones after 5 s) timed out before it was written,
// "not sent": its tip failed at once and no push ever came (c2b.test.ts's parkedPush waited 5 s for it).
// This file's Daraja client is made at its first call, the push: with the hook below.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import net from "node:net";
import { after, before, test } from "node:test";
import { httpRequest } from "@ttip/runtime";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

let h: Harness;
let relay: net.Server;
before(async () => {
  h = await startHarness();
  // A relay to the simulator: the push's origin has no kept connection, as after 5 s idle.
  const sim = new URL(h.sim.clientConfig().baseUrl);
  relay = net.createServer((c) => c.pipe(net.connect(Number(sim.port), sim.hostname)).pipe(c));
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
});
after(async () => {
  relay.close();
  await h.close();
});

/** Blocks this process as a descheduled one is: no timer, no socket event runs meanwhile. */
const stall = (ms: number) => {
  for (const until = Date.now() + ms; Date.now() < until; );
};

test("a push whose process stalls for 1.2 s right after starting to connect is still sent: the tip waits for its callback", async () => {
  const daraja = h.config.daraja!;
  const relayed = `http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
  h.config.daraja = {
    ...daraja,
    request: (url, call) => {
      if (!url.pathname.includes("/stkpush/")) return httpRequest(url, call);
      const reply = httpRequest(new URL(url.pathname, relayed), call);
      stall(1200);
      return reply;
    },
  };
  try {
    const p = phone("0003"); // the callback lost: the tip stays pending once pushed
    const { tip } = await h.t.client(PaymentService).createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: p } });
    assert.equal(tip!.status, TipStatus.PENDING, `not failed: ${tip!.resultMessage}`);
    await eventually(async () => h.sim.transactions().some((t) => t.checkoutRequestId && t.phone === `254${p.slice(1)}`), "the push");
  } finally {
    h.config.daraja = daraja;
  }
});
