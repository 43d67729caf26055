import type http from "node:http";
import type http2 from "node:http2";
import { cors } from "@connectrpc/connect";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const ALLOW_HEADERS = [...cors.allowedHeaders, "Authorization", "X-Request-Id", "Idempotency-Key", "X-Ttip-Step-Up"].join(", ");
const EXPOSE_HEADERS = [...cors.exposedHeaders, "X-Request-Id", "Retry-After"].join(", ");

/**
 * CORS for browser clients (Connect and gRPC-web). Only listed origins get
 * the headers; "*" allows any origin (no credentials are used: tokens travel
 * in the Authorization header, not cookies). Returns true for an answered preflight.
 */
export function corsFilter(allowedOrigins: string[]) {
  const any = allowedOrigins.includes("*");
  return (req: Req, res: Res): boolean => {
    const origin = req.headers.origin;
    if (!origin || !(any || allowedOrigins.includes(origin))) return false;
    res.setHeader("access-control-allow-origin", any ? "*" : origin);
    res.setHeader("vary", "Origin");
    res.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
    if (req.method !== "OPTIONS") return false;
    res.setHeader("access-control-allow-methods", cors.allowedMethods.join(", "));
    res.setHeader("access-control-allow-headers", ALLOW_HEADERS);
    res.setHeader("access-control-max-age", "7200");
    res.writeHead(204);
    res.end();
    return true;
  };
}
