// One unary request over an HTTP/2 session and its whole answer, without a
// client library's streams in between: the gateway forwards calls as bytes
// with it, and the peers' transport sends the Connect protocol's unary calls
// with it (peers.ts).
import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";

export type Http2Answer = { status: number; header: http2.IncomingHttpHeaders; body: Uint8Array };

/** The server did not process the call (RST_STREAM REFUSED_STREAM, RFC 9113 8.7): it may be sent again. */
export const REFUSED_STREAM = Symbol("refused unprocessed");

/**
 * One request and its whole answer on the session (the gateway's forwarded
 * calls, the peers' unary calls); a reset, a socket error or `signal` fails it
 * as connect-es would, UNAVAILABLE, and a refused stream resolves as REFUSED_STREAM.
 */
export function http2Exchange(session: Http2SessionManager, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal) {
  return new Promise<Http2Answer | typeof REFUSED_STREAM>((resolve, reject) => {
    if (signal.aborted) return reject(ConnectError.from(signal.reason));
    let stream: http2.ClientHttp2Stream | undefined;
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      fn();
    };
    const onAbort = () =>
      settle(() => {
        stream?.close(http2Constants.NGHTTP2_CANCEL);
        reject(ConnectError.from(signal.reason));
      });
    signal.addEventListener("abort", onAbort, { once: true });
    session.request("POST", path, headers, {}).then(
      (s) => {
        stream = s;
        if (signal.aborted) return onAbort();
        let status = 0; // 0: no answer yet
        let header: http2.IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        s.once("response", (h) => {
          status = Number(h[":status"]);
          header = h;
        });
        s.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          session.notifyResponseByteRead(s);
        });
        // A stream reset before its answer ends too: "close" settles that one, by its code.
        s.once("end", () => status !== 0 && settle(() => resolve({ status, header, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) })));
        s.once("error", (err) =>
          settle(() => (s.rstCode === http2Constants.NGHTTP2_REFUSED_STREAM ? resolve(REFUSED_STREAM) : reject(new ConnectError(`the call failed: ${err.message}`, Code.Unavailable, undefined, undefined, err)))),
        );
        s.once("close", () =>
          settle(() => {
            if (s.rstCode === http2Constants.NGHTTP2_REFUSED_STREAM) resolve(REFUSED_STREAM);
            else reject(new ConnectError(`the server closed the call unanswered (HTTP/2 code ${s.rstCode})`, Code.Unavailable));
          }),
        );
        s.end(body);
      },
      (err: unknown) => settle(() => reject(new ConnectError(`cannot reach the server: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err))),
    );
  });
}

const http2Constants = { NGHTTP2_NO_ERROR: 0, NGHTTP2_REFUSED_STREAM: 7, NGHTTP2_CANCEL: 8 } as const;

