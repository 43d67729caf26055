// A server stream to a peer whose reader stops early (a `break` out of its for-await) through
// connect-es's client, which drops the reader's return(): the call is cancelled once the stream is
// let go, not left open until its deadline; the handler hears CANCELED. In process, over HTTP/2
// and in frames.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import v8 from "node:v8";
import vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { internalTransport, localTransport, Metrics, startServer, UpstreamSession, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

describe("a server stream its reader stops reading (connect-es's client)", () => {
  let server: RunningServer;
  /** Each stream's end as its handler saw it: the code its signal aborted with. */
  const ended = new Map<string, Code | undefined>();
  before(async () => {
    server = await startServer({
      name: "streams",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [PaymentService],
      routes: (router) =>
        router.service(PaymentService, {
          watchTip: async function* (req, ctx) {
            try {
              yield { tip: { tipId: "1" } };
              yield { tip: { tipId: "2" } };
              // Then nothing until the call is over: a tip that does not change.
              await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
            } finally {
              ended.set(req.tipId, ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined);
            }
          },
        }),
    });
  });
  after(() => server.close());

  const transports: Record<string, () => { transport: Transport; close(): void }> = {
    "in process": () => ({ transport: localTransport(server.local), close: () => undefined }),
    "peers over HTTP/2": () => {
      const session = new UpstreamSession(server.url);
      return { transport: internalTransport(server.url, session, []), close: () => session.close() };
    },
    "peers in frames": () => {
      const session = new UpstreamSession(server.url, {}, undefined, true);
      return { transport: internalTransport(server.url, session, []), close: () => session.close() };
    },
  };

  /** Reads the stream's first message and stops; nothing of it is kept once this returns. */
  async function readOneAndStop(transport: Transport, tipId: string): Promise<string> {
    const payment = createClient(PaymentService, transport);
    for await (const m of payment.watchTip({ tipId }, { timeoutMs: 120_000 })) return m.tip!.tipId;
    return "";
  }

  for (const [how, make] of Object.entries(transports)) {
    test(`${how}: the handler hears CANCELED once the reader let the stream go, not at the deadline`, async () => {
      const { transport, close } = make();
      try {
        const tipId = randomUUID();
        assert.equal(await readOneAndStop(transport, tipId), "1");
        // Garbage collections, each followed by turns of the event loop for what they found to be run.
        for (let round = 0; round < 20 && !ended.has(tipId); round++) {
          gc();
          for (let turn = 0; turn < 5 && !ended.has(tipId); turn++) await new Promise((resolve) => setImmediate(resolve));
        }
        assert.ok(ended.has(tipId), "the stream's handler still runs after its reader let it go");
        assert.equal(ended.get(tipId), Code.Canceled);
      } finally {
        close();
      }
    });
  }
});
