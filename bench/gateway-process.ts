// The gateway of bench/gateway-overhead.ts in a process of its own, as it
// runs in a cluster: the bench forks this with the qr service's address, the
// bench's Redis and the token keys in its environment, and reads this
// process's CPU per call from /proc. Prints nothing; sends its URL, stops on SIGTERM.
// GATEWAY_STREAM_API=0: calls go through node's HTTP/2 compatibility layer (before).
import { startGateway } from "@ttip/gateway";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { Metrics, RedisCache } from "@ttip/runtime";
import { captureLogger } from "@ttip/runtime/testing";

const env = (name: string) => process.env[name] ?? (() => { throw new Error(`${name} is not set`); })();
const cache = new RedisCache(env("REDIS_URL"));
const gateway = await startGateway({
  logger: captureLogger("silent").logger,
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
