// The gateway's port is the one the ingress sends the public to, and every process answers
// GET /metrics on its port: the cluster's Prometheus scrapes it there, nobody else may read it.
import { inNetworks, networkList, PRIVATE_NETWORKS, type HttpFilter } from "@ttip/runtime";

const PRIVATE = networkList(PRIVATE_NETWORKS, "private network");

/**
 * Answers 404 (as to a path not served) to GET /metrics from a request a proxy forwarded (it names
 * a client: X-Forwarded-For or Forwarded) or from a caller outside the private networks; leaves
 * every other request to the next filter. Prometheus scrapes the pod directly, from inside.
 */
export function metricsGuard(): HttpFilter {
  return (req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?", 1)[0] !== "/metrics") return false;
    const forwarded = req.headers["x-forwarded-for"] !== undefined || req.headers.forwarded !== undefined;
    const peer = (req.socket as { remoteAddress?: string } | undefined)?.remoteAddress ?? "";
    if (!forwarded && inNetworks(PRIVATE, peer)) return false;
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("not found\n");
    return true;
  };
}
