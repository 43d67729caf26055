import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@ttip/proto/grpc/reflection/v1/reflection_pb.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetQrCodeRequestSchema, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger, eventually, sourceLoaderFlags } from "../src/testing/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, "../../../proto");

/** A stock @grpc/grpc-js health client, built from the .proto at run time. */
function grpcJsHealthClient(port: number) {
  const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [protoRoot], enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
  };
  return new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & {
    check(req: { service: string }, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
  };
}

describe("runtime server: health, reflection, metrics", () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [ServerReflection],
      routes: () => undefined,
    });
  });
  after(() => server.close());

  test("a stock grpc-js client gets SERVING, and NOT_FOUND for an unknown service", async () => {
    const client = grpcJsHealthClient(server.port);
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) => client.check({ service }, (err, res) => (err ? reject(err) : resolve(res))));
    assert.equal((await check("")).status, "SERVING");
    assert.equal((await check("grpc.reflection.v1.ServerReflection")).status, "SERVING");
    await assert.rejects(check("no.such.Service"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    client.close();
  });

  test("reflection lists the services and returns their descriptors", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.url }));
    async function* requests() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "grpc.health.v1.Health" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "no.such.Symbol" } };
    }
    const answers = [];
    for await (const res of client.serverReflectionInfo(requests())) answers.push(res);
    assert.equal(answers.length, 3);
    const [list, file, missing] = answers;
    assert.equal(list.messageResponse.case, "listServicesResponse");
    const names = list.messageResponse.case === "listServicesResponse" ? list.messageResponse.value.service.map((s) => s.name) : [];
    assert.ok(names.includes("grpc.health.v1.Health"), names.join());
    assert.ok(names.includes("grpc.reflection.v1.ServerReflection"));
    assert.equal(file.messageResponse.case, "fileDescriptorResponse");
    if (file.messageResponse.case === "fileDescriptorResponse") {
      const first = fromBinary(FileDescriptorProtoSchema, file.messageResponse.value.fileDescriptorProto[0]);
      assert.equal(first.name, "grpc/health/v1/health.proto");
      assert.equal(first.service[0].name, "Health");
    }
    assert.equal(missing.messageResponse.case, "errorResponse");
  });

  test("/metrics counts handled calls by service, method and code", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    await client.check({ service: "" });
    await assert.rejects(client.check({ service: "nope" }));
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /grpc_server_handled_total\{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"\} [1-9]/);
    assert.match(text, /grpc_server_handled_total\{[^}]*grpc_method="Check",grpc_code="NotFound"\} [1-9]/);
    assert.match(text, /grpc_server_handling_seconds_bucket\{[^}]*grpc_method="Check"/);
  });

  test("a Host that is no host (a port past 65535, a bad address) or none at all is answered 400, on every path; the server goes on", async () => {
    /** One raw HTTP/1.x request to `port`; the status line's code, or "no answer" within 5 s. */
    const rawTo = (port: number, request: string) => new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
      let answer = "";
      socket.setTimeout(5_000, () => socket.destroy());
      socket.on("data", (c: Buffer) => (answer += c.toString()));
      socket.on("close", () => resolve(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? "no answer"));
      socket.on("error", reject);
    });
    const raw = (request: string) => rawTo(server.port, request);
    const check = "/grpc.health.v1.Health/Check";
    const body = '{"service":""}';
    // Before, each threw out of the request handler (URL parsing, or no authority) and ended the process.
    for (const host of ["a:99999", "1.2.3.999", "xn--", "[:::]"]) {
      assert.equal(await raw(`GET ${check}?encoding=json&message=%7B%7D HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), "400", host);
      assert.equal(await raw(`POST ${check} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/grpc-web+json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`), "400", host);
    }
    assert.equal(await raw(`GET ${check} HTTP/1.0\r\n\r\n`), "400", "no Host");
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    assert.equal((await client.check({ service: "" })).status, Status.SERVING);
    // A service's own HTTP paths (webhooks) read the request line as a URL too: one no URL holds is answered 400.
    const withFilter = await startServer({
      name: "filtered", logger: captureLogger("silent").logger, metrics: new Metrics(), services: [], routes: () => undefined,
      httpFilter: (req) => new URL(req.url ?? "/", "http://local").pathname === "/webhooks/never",
    });
    try {
      assert.equal(await rawTo(withFilter.port, "GET //a:99999/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), "400");
      assert.equal((await createClient(Health, createGrpcTransport({ baseUrl: withFilter.url })).check({ service: "" })).status, Status.SERVING);
    } finally {
      await withFilter.close();
    }
  });
});

describe("graceful shutdown on SIGTERM", () => {
  test("an in-flight call finishes, new connections are refused, the process exits 0", async () => {
    const child = spawn(process.execPath, [...sourceLoaderFlags(), path.join(here, "fixtures/slow-server.ts")], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      const lines = readline.createInterface({ input: child.stdout! });
      const logs: string[] = [];
      lines.on("line", (line) => logs.push(line));
      let stderr = "";
      child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      const closed = once(child, "close");
      /** The first stdout line containing `text`, printed already or to come: the fixture's events. */
      const lineWith = (text: string) =>
        Promise.race([
          new Promise<string>((resolve) => {
            const look = (line: string) => {
              if (!line.includes(text)) return;
              lines.off("line", look);
              resolve(line);
            };
            const found = logs.find((line) => line.includes(text));
            if (found === undefined) lines.on("line", look);
            else resolve(found);
          }),
          closed.then(() => assert.fail(`the server exited before printing ${text}:\n${logs.join("\n")}`)),
        ]);
      const { port } = JSON.parse(await lineWith('"port"'));
      const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));

      // Held in the server until the test lets it go: in flight for as long as the test needs.
      const inFlight = client.check({ service: "" }, { headers: { "x-test-hold": "1" } });
      await lineWith('"held"');
      child.kill("SIGTERM");

      // Stopped accepting: a new connection is refused while the call is still held.
      await eventually("a new connection refused", () => connectionRefused(port));
      assert.equal(child.exitCode, null, "still running: the held call keeps it draining");

      child.stdin!.end("release\n");
      const res = await inFlight.catch((err: Error) => assert.fail(`the held call failed (${err.message}); exit ${child.exitCode}, the server said:\n${logs.join("\n")}\n${stderr}`));
      // It completed; the server had already turned NOT_SERVING for balancers.
      assert.equal(res.status, Status.NOT_SERVING);
      // "close": the process has exited and its stdout has been read to the end.
      const [code] = await closed;
      assert.equal(code, 0);
      assert.ok(logs.some((l) => l.includes("shutdown complete")), logs.join("\n"));
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});

test("a drain does not cut a connection while the answer of its last call is still being sent", async () => {
  let release = () => {};
  let started = () => {};
  const inHandler = new Promise<void>((resolve) => (started = resolve));
  const big = "u".repeat(8 << 20); // past loopback's socket buffers: the tail waits in the server's process
  const server = await startServer({
    name: "flushing",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    drainTimeoutMs: 60_000,
    routes: (router) =>
      router.service(QrService, {
        getQrCode: async () => {
          started();
          await new Promise<void>((resolve) => (release = resolve));
          return { qrCode: { url: big } };
        },
      }),
  });
  // Between client and server: the server's bytes stop reaching the client while the test says so.
  let toClient: net.Socket | undefined;
  const tap = net.createServer((client) => {
    const upstream = net.connect(server.port, "127.0.0.1");
    toClient = upstream;
    client.pipe(upstream).on("error", () => undefined);
    upstream.pipe(client).on("error", () => undefined);
  });
  tap.listen(0, "127.0.0.1");
  await once(tap, "listening");
  // A window that never stops the server: all of the answer is written before the client reads any.
  const session = http2.connect(`http://127.0.0.1:${(tap.address() as net.AddressInfo).port}`, { settings: { initialWindowSize: 2 ** 31 - 1 } });
  session.on("error", () => undefined);
  try {
    await once(session, "connect");
    session.setLocalWindowSize(2 ** 31 - 1);
    const request = toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: "00000000-0000-4000-8000-000000000000" }));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(request.length, 1);
    const stream = session.request({ ":method": "POST", ":path": "/ttip.qr.v1.QrService/GetQrCode", "content-type": "application/grpc", te: "trailers" });
    stream.end(Buffer.concat([prefix, request]));
    let received = 0;
    stream.on("data", (chunk: Buffer) => (received += chunk.length));
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      stream.once("trailers", resolve);
      stream.once("close", () => reject(new Error(`closed without trailers, rst ${stream.rstCode}, ${received} bytes read`)));
    });
    await inHandler;
    toClient!.pause();
    const closed = server.close();
    release();
    // The call has ended in the server (its stream closed) well before this; the tail of its answer has not left.
    await new Promise((resolve) => setTimeout(resolve, 300));
    toClient!.resume();
    assert.equal((await trailers)["grpc-status"], "0");
    assert.ok(received > big.length, `${received} bytes read`);
    await closed;
  } finally {
    session.destroy();
    tap.close();
    await server.close();
  }
});

test("a drain ends at once a connection that never sent a byte: it holds no call, so neither the calls in flight nor the drain's grace wait on it", async () => {
  let release = () => {};
  let started = () => {};
  const inHandler = new Promise<void>((resolve) => (started = resolve));
  const { logger, records } = captureLogger("info");
  const server = await startServer({
    name: "silent",
    logger,
    metrics: new Metrics(),
    services: [QrService],
    drainTimeoutMs: 60_000,
    routes: (router) =>
      router.service(QrService, {
        getQrCode: async (req) => {
          started();
          await new Promise<void>((resolve) => (release = resolve));
          return { qrCode: { qrCodeId: req.qrCodeId } };
        },
      }),
  });
  // Connected before the call's connection, so accepted before its call runs; it sends nothing.
  const silent = net.connect(server.port, "127.0.0.1");
  silent.on("error", () => undefined);
  let silentClosed = false;
  silent.once("close", () => (silentClosed = true));
  await once(silent, "connect");
  const id = "00000000-0000-4000-8000-000000000000";
  try {
    const answer = createClient(QrService, createGrpcTransport({ baseUrl: server.url })).getQrCode({ qrCodeId: id });
    await inHandler;
    const closed = server.close();
    await eventually("the silent connection ended while the call is still in flight", () => silentClosed);
    release();
    assert.equal((await answer).qrCode?.qrCodeId, id);
    await closed;
    assert.deepEqual(records().filter((r) => /cutting connections/.test(String(r.msg))), [], "no connection was left to cut after the grace");
  } finally {
    release();
    silent.destroy();
    await server.close();
  }
});

/** Whether a TCP connection to `port` on loopback is refused (true) or accepted (false, and closed at once). */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}
