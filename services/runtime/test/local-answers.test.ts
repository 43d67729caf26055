// Interceptors may copy a unary answer (`{ ...res }`) and build a new request
// from the parts of the one they were given, as connect-es's contract allows:
// a call to a server in the same process then keeps what the same call over
// the network keeps. The answer's trailers are its own field (a copy has
// them: the server answers, the caller's onTrailer hears them), and the
// call's deadline travels with its signal (the handler still has it).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient, type Interceptor, type Transport, type UnaryRequest } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { localTransport, Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

/** Copies a unary answer as an object spread does (own enumerable fields only). */
const copiesAnswers: Interceptor = (next) => async (req) => {
  const res = await next(req);
  return res.stream ? res : { ...res };
};

/** The server's interceptors copy the answers of calls with this header. */
const COPY_ANSWER = "x-test-copy-answer";
const asksForCopies: Interceptor = (next) => (req) => {
  req.header.set(COPY_ANSWER, "1");
  return next(req);
};

/** Hands on a new request made of the given one's parts (connect's UnaryRequest and StreamRequest fields, nothing else). */
const buildsNewRequests: Interceptor = (next) => (req) => {
  const { stream, service, method, requestMethod, url, signal, header, contextValues, message } = req;
  return next({ stream, service, method, requestMethod, url, signal, header, contextValues, message } as UnaryRequest);
};

describe("in-process answers and requests as interceptors copy them", () => {
  let server: RunningServer;
  /** The handlers' ctx.timeoutMs() of each call. */
  const deadlines: Array<number | undefined> = [];
  before(async () => {
    server = await startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService, PaymentService],
      // The server's own chain copies answers too when asked (after every runtime interceptor, before the handler's answer).
      interceptors: [(next) => (req) => (req.header.has(COPY_ANSWER) ? copiesAnswers(next)(req) : next(req))],
      routes: (router) =>
        router.service(QrService, {
          getQrCode: (req, ctx) => {
            deadlines.push(ctx.timeoutMs());
            ctx.responseTrailer.set("x-test-trailer", "kept");
            return { qrCode: { qrCodeId: req.qrCodeId } };
          },
        }).service(PaymentService, {
          watchTip: async function* (_req, ctx) {
            deadlines.push(ctx.timeoutMs());
            yield { tip: { tipId: "1" } };
          },
        }),
    });
  });
  after(() => server.close());

  const transports: Record<string, (interceptors: Interceptor[]) => Transport> = {
    "in process": (interceptors) => localTransport(server.local, interceptors),
    "over the network": (interceptors) => createGrpcTransport({ baseUrl: server.url, interceptors }),
  };

  for (const [how, transport] of Object.entries(transports)) {
    test(`${how}: a unary answer copied by the server's and the caller's interceptors keeps its trailers`, async () => {
      const id = randomUUID();
      let trailer: string | null | undefined = "not called";
      const client = createClient(QrService, transport([copiesAnswers, asksForCopies]));
      const res = await client.getQrCode({ qrCodeId: id }, { onTrailer: (t) => (trailer = t?.get("x-test-trailer")) });
      assert.equal(res.qrCode?.qrCodeId, id);
      assert.equal(trailer, "kept");
    });

    test(`${how}: a request rebuilt by the caller's interceptor keeps the call's deadline, unary and streaming`, async () => {
      deadlines.length = 0;
      const interceptors = [buildsNewRequests];
      await createClient(QrService, transport(interceptors)).getQrCode({ qrCodeId: randomUUID() }, { timeoutMs: 5_000 });
      for await (const m of createClient(PaymentService, transport(interceptors)).watchTip({ tipId: randomUUID() }, { timeoutMs: 5_000 })) assert.equal(m.tip?.tipId, "1");
      assert.equal(deadlines.length, 2);
      for (const left of deadlines) assert.ok(left !== undefined && left > 0 && left <= 5_000, `timeoutMs ${left}`);
    });
  }
});
