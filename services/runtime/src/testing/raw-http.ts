// Requests written by hand, for what clients do that connect-node's own do not
// (a body in chunks over HTTP/1.1), answered as bytes, a reset as its code.
import http from "node:http";
import http2 from "node:http2";

export type RawAnswer = { status: number | string; body: Buffer };

/** A POST over HTTP/1.1 sent in 16 KiB chunks (Transfer-Encoding: chunked), as a browser streams a body; a reset is its error code. */
export function postChunkedHttp1(url: string, type: string, body: Uint8Array): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: "POST", headers: { "content-type": type, "connect-protocol-version": "1" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve({ status: err.code ?? err.message, body: Buffer.alloc(0) }));
    let at = 0;
    const next = () => {
      if (req.destroyed) return;
      if (at >= body.byteLength) return void req.end();
      req.write(body.subarray(at, (at += 16_384)), next);
    };
    next();
  });
}

/** The same POST over HTTP/2 (a stream's body has no content-length either). */
export function postHttp2(url: string, type: string, body: Uint8Array): Promise<RawAnswer> {
  const session = http2.connect(url);
  return new Promise<RawAnswer>((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": new URL(url).pathname, "content-type": type, "connect-protocol-version": "1" });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ status, body: Buffer.concat(chunks) }));
    stream.on("error", (err: NodeJS.ErrnoException) => resolve({ status: err.code ?? err.message, body: Buffer.alloc(0) }));
    stream.end(body);
  }).finally(() => session.close());
}

/** An answer's status and code, as "429 resource_exhausted" (Connect's error JSON) or "200 8" (a gRPC-web answer's grpc-status). */
export function answeredCode(answer: RawAnswer): string {
  const text = answer.body.toString("latin1");
  const code = /grpc-status: ?(\d+)/.exec(text)?.[1] ?? /"code":"(\w+)"/.exec(text)?.[1];
  return `${answer.status} ${code}`;
}
