// A Connect unary call served from its HTTP request (connect-unary.ts) carries its
// headers in LightHeaders: the request's as node's Headers would read them, the
// answer's headers and trailers written as connect-es's trailerMux writes them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { trailerMux } from "@connectrpc/connect/protocol-connect";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { requestHeaders, trailerMuxed } from "../src/connect-unary.js";
import { LightHeaders, Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

const QR_ID = "0b6f4c1e-8d3a-4f7e-9c2b-5a1d2e3f4a5b";
const sorted = (h: Headers | Record<string, string>) => (h instanceof Headers ? [...h] : Object.entries(h)).sort(([a], [b]) => (a < b ? -1 : 1));

/** node's Headers from the same raw list (what requestHeaders made before). */
function nodeHeaders(raw: string[]): Headers {
  const header = new Headers();
  for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") header.append(raw[i], raw[i + 1]);
  return header;
}

describe("connect-unary's headers", () => {
  test("a request's headers answer as node's Headers made from the same raw list", () => {
    const raws = [
      [":method", "POST", ":path", "/ttip.qr.v1.QrService/GetQrCode", "content-type", "application/proto", "connect-timeout-ms", "5000"],
      ["X-Request-Id", " r-1\t", "Accept-Encoding", "gzip", "accept-encoding", "br", "cookie", "a=1", "Cookie", "b=2", "x-empty", ""],
      ["Connect-Timeout-Ms", "100", "x-forwarded-for", "10.0.0.1", "X-Forwarded-For", "10.0.0.2", "user-agent", "connect-es/2 \u00e9"],
    ];
    const names = ["content-type", "Content-Type", "connect-timeout-ms", "x-request-id", "accept-encoding", "cookie", "x-empty", "x-forwarded-for", "user-agent", "x-absent"];
    for (const raw of raws) {
      const light = requestHeaders(raw);
      const node = nodeHeaders(raw);
      assert.ok(light instanceof LightHeaders, "made cheaply");
      assert.ok(light instanceof Headers, "still a Headers to connect-es and the interceptors");
      assert.deepEqual(sorted(light), sorted(node), JSON.stringify(raw));
      for (const name of names) {
        assert.equal(light.get(name), node.get(name), name);
        assert.equal(light.has(name), node.has(name), name);
      }
    }
    assert.throws(() => nodeHeaders(["bad name", "v"]), TypeError);
    assert.throws(() => requestHeaders(["bad name", "v"]), TypeError, "a name node's Headers refuses is refused");
  });

  test("an answer's headers and trailers are the record trailerMux gives, from node's Headers or LightHeaders", () => {
    const cases: Array<[Record<string, string>, Record<string, string>]> = [
      [{ "content-type": "application/proto" }, {}],
      [{ "content-type": "application/json", "x-request-id": "r-1" }, { "x-test-trailer": "kept", "grpc-status-details-bin": "AAA" }],
      // A header already named as a trailer's: trailerMux appends the trailer to it.
      [{ "content-type": "application/proto", "trailer-x-a": "1" }, { "x-a": "2" }],
    ];
    for (const [header, trailer] of cases) {
      const expected = sorted(Object.fromEntries(trailerMux(new Headers(header), new Headers(trailer))));
      assert.deepEqual(sorted(trailerMuxed(LightHeaders.of(header), LightHeaders.of(trailer))), expected, JSON.stringify([header, trailer]));
      assert.deepEqual(sorted(trailerMuxed(new Headers(header), new Headers(trailer))), expected);
    }
  });

  describe("over HTTP/2", () => {
    let server: RunningServer;
    const seen: Array<{ requestId: string | null; encoding: string | null; header: boolean; trailer: boolean }> = [];
    before(async () => {
      server = await startServer({
        name: "test",
        logger: captureLogger("silent").logger,
        metrics: new Metrics(),
        services: [QrService],
        routes: (router) =>
          router.service(QrService, {
            getQrCode: (req, ctx) => {
              seen.push({
                requestId: ctx.requestHeader.get("X-Test-Id"),
                encoding: ctx.requestHeader.get("x-test-joined"),
                header: ctx.responseHeader instanceof LightHeaders,
                trailer: ctx.responseTrailer instanceof LightHeaders,
              });
              ctx.responseHeader.set("x-test-header", "h");
              ctx.responseTrailer.set("x-test-trailer", "t");
              return { qrCode: { qrCodeId: req.qrCodeId } };
            },
          }),
      });
    });
    after(() => server.close());

    test("the handler reads the request's headers, and its header and trailer reach the caller", async () => {
      const client = createClient(QrService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const res = await client.getQrCode(
        { qrCodeId: QR_ID },
        { headers: [["x-test-id", "id-1"], ["x-test-joined", "a"], ["X-Test-Joined", "b"]], onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
      );
      assert.equal(res.qrCode?.qrCodeId, QR_ID);
      assert.deepEqual(seen, [{ requestId: "id-1", encoding: "a, b", header: true, trailer: true }]);
      assert.equal(header?.get("x-test-header"), "h");
      assert.equal(header?.get("content-type"), "application/proto");
      assert.equal(trailer?.get("x-test-trailer"), "t");
    });
  });
});
