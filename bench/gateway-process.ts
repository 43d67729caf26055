// The gateway of bench/gateway-overhead.ts in a process of its own, as it
// runs in a cluster: the bench forks this with the qr service's address, the
// bench's Redis and the token keys in its environment, and reads this
// process's CPU per call from /proc. Prints nothing; sends its URL, stops on SIGTERM.
// GATEWAY_STREAM_API=0: calls go through node's HTTP/2 compatibility layer (before).
// GATEWAY_CHECKS=0: the forwarding as bytes alone (the same server, stream API, connection to qr
// and signature), without a check or the server's interceptors: the floor the checks stand on.
import { createContextValues } from "@connectrpc/connect";
import { startGateway } from "@ttip/gateway";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { DEFAULT_READ_MAX_BYTES, Metrics, RedisCache, startServer, upstreamSessions, type RunningServer } from "@ttip/runtime";
import { captureLogger } from "@ttip/runtime/testing";
import { rawForwarding, rawRoutes } from "../gateway/src/raw-forward.js";

const env = (name: string) => process.env[name] ?? (() => { throw new Error(`${name} is not set`); })();
const logger = captureLogger("silent").logger;
const cache = new RedisCache(env("REDIS_URL"));
const gateway = process.env.GATEWAY_CHECKS === "0" ? await forwardingAlone(env("QR_URL")) : await startGateway({
  logger,
  metrics: new Metrics(),
  cache,
  backends: [{ service: QrService, url: env("QR_URL") }],
  rateLimit: { points: 1_000_000_000, durationSeconds: 60 },
  corsOrigins: ["*"],
  jwt: JSON.parse(env("GATEWAY_JWT")),
  // "0": every HTTP/2 call through node's compatibility layer (the bench's yardstick).
  streamApi: process.env.GATEWAY_STREAM_API !== "0",
});
process.send!(gateway.url);
process.once("SIGTERM", async () => {
  await gateway.close();
  await cache.close();
  process.exit(0);
});

/** qr's unary calls forwarded as bytes with no interceptor around them: what a call costs the gateway before any check. */
async function forwardingAlone(qrUrl: string): Promise<RunningServer> {
  const upstreams = upstreamSessions();
  const server = await startServer({
    name: "gateway",
    logger,
    metrics: new Metrics(),
    services: [QrService],
    routes: () => {},
    validate: false,
    rpcFilter: rawForwarding({
      routes: new Map(rawRoutes(QrService, upstreams.get(qrUrl))),
      interceptors: [],
      clientInterceptors: [],
      contextValues: () => createContextValues(),
      readMaxBytes: DEFAULT_READ_MAX_BYTES,
      logger,
    }),
  });
  return { ...server, close: async () => (await server.close(), upstreams.close()) };
}
