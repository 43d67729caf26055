// A unary call to a server in the same process (RunningServer.local through
// localTransport) gives what the same call over the network gives: the
// server's interceptors run, headers cross both ways, the deadline holds,
// errors keep their code, message, details and metadata.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { localTransport, Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

const REFUSED = randomUUID();

describe("a server's RPCs called in the same process", () => {
  let server: RunningServer;
  const serverSaw: string[] = [];
  const handlerSaw: Array<{ caller: string | null; timeoutMs: number | undefined }> = [];
  before(async () => {
    const recordCall: Interceptor = (next) => (req) => {
      serverSaw.push(req.method.name);
      return next(req);
    };
    server = await startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService],
      interceptors: [recordCall],
      routes: (router) =>
        router.service(QrService, {
          getQrCode: (req, ctx) => {
            handlerSaw.push({ caller: ctx.requestHeader.get("x-test-caller"), timeoutMs: ctx.timeoutMs() });
            ctx.responseHeader.set("x-test-answer", "seen");
            if (req.qrCodeId === REFUSED) throw new ConnectError("no such code", Code.NotFound, { "x-test-reason": "gone" });
            return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX" } };
          },
        }),
    });
  });
  after(() => server.close());

  const asCaller: Interceptor = (next) => (req) => {
    req.header.set("x-test-caller", "payment");
    return next(req);
  };
  const transports: Record<string, () => Transport> = {
    "in process": () => localTransport(server.local, [asCaller]),
    "over the network": () => createGrpcTransport({ baseUrl: server.url, interceptors: [asCaller] }),
  };

  for (const [how, transport] of Object.entries(transports)) {
    test(`${how}: the server's interceptors and the handler see the call, its headers and deadline; the answer and its headers come back`, async () => {
      serverSaw.length = 0;
      handlerSaw.length = 0;
      const id = randomUUID();
      let answer: string | null = null;
      const res = await createClient(QrService, transport()).getQrCode({ qrCodeId: id }, { timeoutMs: 5_000, onHeader: (h) => (answer = h.get("x-test-answer")) });
      assert.equal(res.qrCode?.qrCodeId, id);
      assert.equal(res.qrCode?.shortCode, "K7M4QX");
      assert.equal(answer, "seen");
      assert.deepEqual(serverSaw, ["GetQrCode"]);
      assert.equal(handlerSaw[0].caller, "payment");
      assert.ok(handlerSaw[0].timeoutMs !== undefined && handlerSaw[0].timeoutMs > 0 && handlerSaw[0].timeoutMs <= 5_000, `timeoutMs ${handlerSaw[0].timeoutMs}`);
    });

    test(`${how}: a refused request never reaches the handler; errors keep their code, message, details and metadata`, async () => {
      handlerSaw.length = 0;
      const client = createClient(QrService, transport());
      const invalid = await client.getQrCode({ qrCodeId: "not-a-uuid" }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(invalid?.code, Code.InvalidArgument);
      assert.equal(invalid?.findDetails(ViolationsSchema)[0]?.violations[0]?.field?.elements[0]?.fieldName, "qr_code_id");
      assert.equal(handlerSaw.length, 0);

      const refused = await client.getQrCode({ qrCodeId: REFUSED }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(refused?.code, Code.NotFound);
      assert.equal(refused?.rawMessage, "no such code");
      assert.equal(refused?.metadata.get("x-test-reason"), "gone");
      assert.equal(refused?.metadata.get("x-test-answer"), "seen");
    });

    test(`${how}: streaming and built-in services answer too`, async () => {
      const health = createClient(Health, transport());
      assert.equal((await health.check({ service: QrService.typeName })).status, Status.SERVING);
      for await (const update of health.watch({ service: QrService.typeName })) {
        assert.equal(update.status, Status.SERVING);
        break;
      }
    });
  }
});
