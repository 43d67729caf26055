// A pass-through proxy in front of the gateway that records what it received:
// the app under test is pointed at it, so a test can check how the app speaks
// to the gateway (binary protobuf, not JSON) without a hook in the platform.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedCall {
  method: string;
  path: string;
  contentType: string;
}

export async function startGatewayRecorder(gateway: string): Promise<{ url: string; calls: ReceivedCall[]; rpcs(): ReceivedCall[]; close(): Promise<void> }> {
  const target = new URL(gateway);
  const calls: ReceivedCall[] = [];
  const server = http.createServer((req, res) => {
    calls.push({ method: req.method ?? "", path: req.url ?? "", contentType: req.headers["content-type"] ?? "" });
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", (err) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    /** The RPCs (POST /<package>.<Service>/<Method>), not CORS preflights. */
    rpcs: () => calls.filter((c) => c.method === "POST" && /^\/ttip\.[\w.]+\/\w+$/.test(c.path)),
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
