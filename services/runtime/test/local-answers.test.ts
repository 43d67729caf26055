// Interceptors may copy a unary answer (`{ ...res }`) and build a new request
// from the parts of the one they were given, as connect-es's contract allows:
// a call to a server in the same process then keeps what the same call over
// the network keeps. The answer's trailers are its own field (a copy has
// them: the server answers, the caller's onTrailer hears them), and the
// call's deadline travels with its signal (the handler still has it).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient, createContextKey, createContextValues, type Interceptor, type Transport, type UnaryRequest } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
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

/** A value the server's interceptor puts in the new context values it hands on, for the handler to read. */
const setByInterceptor = createContextKey("not set", { description: "set by the test's interceptor" });
/** The server's interceptors replace the context values of calls with this header. */
const NEW_VALUES = "x-test-new-values";
/** The id whose answer is the value the handler read. */
const VALUES_ID = "00000000-0000-4000-8000-00000000000a";
const replacesValues: Interceptor = (next) => (req) =>
  req.header.has(NEW_VALUES) ? next({ ...req, contextValues: createContextValues().set(setByInterceptor, "new values") }) : next(req);

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
      interceptors: [(next) => (req) => (req.header.has(COPY_ANSWER) ? copiesAnswers(next)(req) : next(req)), replacesValues],
      routes: (router) =>
        router.service(QrService, {
          getQrCode: (req, ctx) => {
            deadlines.push(ctx.timeoutMs());
            if (req.qrCodeId === VALUES_ID) return { qrCode: { qrCodeId: ctx.values.get(setByInterceptor) } };
            ctx.responseTrailer.set("x-test-trailer", "kept");
            return { qrCode: { qrCodeId: req.qrCodeId } };
          },
        }).service(PaymentService, {
          watchTip: async function* (req, ctx) {
            deadlines.push(ctx.timeoutMs());
            ctx.responseHeader.set("x-test-header", "kept");
            yield { tip: { tipId: req.tipId === VALUES_ID ? ctx.values.get(setByInterceptor) : "1" } };
            ctx.responseTrailer.set("x-test-trailer", "kept");
          },
        }),
    });
  });
  after(() => server.close());

  const transports: Record<string, (interceptors: Interceptor[]) => Transport> = {
    "in process": (interceptors) => localTransport(server.local, interceptors),
    "over the network": (interceptors) => createGrpcTransport({ baseUrl: server.url, interceptors }),
    // The server's own Connect paths (connect-unary.ts, connect-stream.ts), not connect-node's.
    "in Connect over HTTP/2": (interceptors) => createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors }),
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

    test(`${how}: a server interceptor that hands on new context values: the handler reads them, unary and streaming, and the stream's headers and trailers arrive`, async () => {
      const asksForNewValues: Interceptor = (next) => (req) => (req.header.set(NEW_VALUES, "1"), next(req));
      const res = await createClient(QrService, transport([asksForNewValues])).getQrCode({ qrCodeId: VALUES_ID });
      assert.equal(res.qrCode?.qrCodeId, "new values");
      const seen: { header?: string | null; trailer?: string | null } = {};
      const tips: string[] = [];
      const stream = createClient(PaymentService, transport([asksForNewValues])).watchTip(
        { tipId: VALUES_ID },
        { onHeader: (h) => (seen.header = h.get("x-test-header")), onTrailer: (t) => (seen.trailer = t.get("x-test-trailer")) },
      );
      for await (const m of stream) tips.push(m.tip?.tipId ?? "");
      assert.deepEqual(tips, ["new values"]);
      assert.deepEqual(seen, { header: "kept", trailer: "kept" });
    });
  }
});
