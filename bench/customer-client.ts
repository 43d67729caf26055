// The customers' Connect client for bench/tip-customers.ts: CreateTip (unary)
// and WatchTip (server stream) in Connect's binary protocol over one HTTP/2
// connection, with the requests connect-node's client sends (content types,
// connect-protocol-version, its user agent, the encodings it accepts), the
// answers read as it reads them (status, content type, the end of the stream's
// error). Without its per-call streams, AbortControllers and async iterables:
// the customers share the machine's cores with the platform, and connect-node
// spent about twice the CPU per tip. Unary calls go through the runtime's
// connectUnaryCall (http2-exchange.ts) on a plain HTTP/2 session.
import { setMaxListeners } from "node:events";
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, endStreamFromJson } from "@connectrpc/connect/protocol-connect";
import {
  CreateTipRequestSchema,
  CreateTipResponseSchema,
  PaymentService,
  WatchTipRequestSchema,
  WatchTipResponseSchema,
  type CreateTipResponse,
  type WatchTipResponse,
} from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { connectUnaryCall, decompressMessage, envelopeFrames, envelopeOf, LightHeaders, type Http2Upstream } from "@ttip/runtime";

/** What connect-node 2.2's client says it is, and the encodings it accepts by default, as it writes them. */
const USER_AGENT = "connect-es/2.2.0";
const ACCEPT_ENCODING = "gzip,br";
const WATCH_TIP_PATH = `/${PaymentService.typeName}/WatchTip`;
/** An answer's message is read whole up to this size (a tip is a few hundred bytes). */
const MAX_MESSAGE_BYTES = 1 << 20;
const COMPRESSED = 0b01;
const END_STREAM = 0b10;
/**
 * No deadline on the calls (connect-node's default): the bench's run bounds them. One signal for every
 * call: each in flight listens on it until it settles, so more than 10 at once are not a leak.
 */
const NEVER = new AbortController().signal;
setMaxListeners(0, NEVER);

export class CustomerClient {
  private session: http2.ClientHttp2Session | undefined;

  constructor(private readonly baseUrl: string) {}

  /** The HTTP/2 connection, opened again after it was lost (its calls failed with it). */
  private connection(): http2.ClientHttp2Session {
    if (!this.session || this.session.closed || this.session.destroyed) {
      this.session = http2.connect(this.baseUrl);
      this.session.on("error", () => {}); // the calls on it fail with their streams
    }
    return this.session;
  }

  private readonly upstream: Http2Upstream = {
    request: async (method, path, headers, options) => this.connection().request({ ":method": method, ":path": path, ...headers }, options),
    notifyResponseByteRead: () => {},
  };

  async createTip(req: MessageInitShape<typeof CreateTipRequestSchema>, headers?: Record<string, string>): Promise<CreateTipResponse> {
    // The runtime's light Headers: node's validates and sorts on every walk (a few µs a call).
    const header = LightHeaders.of(headers);
    header.set("user-agent", USER_AGENT);
    const answer = await connectUnaryCall({
      session: this.upstream,
      service: PaymentService.typeName,
      method: "CreateTip",
      header,
      body: toBinary(CreateTipRequestSchema, create(CreateTipRequestSchema, req)),
      signal: NEVER,
      deadline: undefined,
      acceptEncoding: ACCEPT_ENCODING,
    });
    return fromBinary(CreateTipResponseSchema, decompressMessage(answer.encoding ?? null, answer.body, MAX_MESSAGE_BYTES));
  }

  /** The stream's messages once it has ended; its error (in the end of the stream, or the HTTP status) rejects. */
  watchTip(req: MessageInitShape<typeof WatchTipRequestSchema>, headers?: Record<string, string>): Promise<WatchTipResponse[]> {
    const body = envelopeOf(toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, req)));
    return new Promise((resolve, reject) => {
      const stream = this.connection().request({
        ":method": "POST",
        ":path": WATCH_TIP_PATH,
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
        "user-agent": USER_AGENT,
        "connect-accept-encoding": ACCEPT_ENCODING,
        ...headers,
      });
      let status = 0;
      let encoding: string | null = null;
      const chunks: Buffer[] = [];
      stream.once("response", (h) => {
        status = Number(h[":status"]);
        encoding = (h["connect-content-encoding"] as string | undefined) ?? null;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.once("error", reject);
      stream.once("close", () => {
        try {
          resolve(streamMessages(status, encoding, Buffer.concat(chunks), stream.rstCode));
        } catch (err) {
          reject(err);
        }
      });
      stream.end(body);
    });
  }

  close(): void {
    this.session?.close();
  }
}

/**
 * The error an end of stream carries, if any. The usual one, "{}" (no error, no trailers: what the
 * runtime's servers send when a stream ends well), is known by its two bytes: connect-es's parser
 * builds a ConnectError and its stack trace for every end of stream, in case it is malformed.
 */
function endStreamError(bytes: Uint8Array): ConnectError | undefined {
  if (bytes.length === 2 && bytes[0] === 0x7b && bytes[1] === 0x7d) return undefined;
  return endStreamFromJson(bytes).error;
}

/** A Connect server stream's answer as connect-es reads it: its messages, or its error. */
function streamMessages(status: number, encoding: string | null, body: Buffer, rstCode: number | undefined): WatchTipResponse[] {
  if (rstCode !== undefined && rstCode !== http2.constants.NGHTTP2_NO_ERROR) throw new ConnectError(`stream reset with code ${rstCode}`, Code.Internal);
  if (status !== 200) throw new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status));
  const messages: WatchTipResponse[] = [];
  let ended = false;
  for (const { flags, data } of envelopeFrames(body, () => new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument))) {
    const bytes = flags & COMPRESSED ? decompressMessage(encoding, data, MAX_MESSAGE_BYTES) : data;
    if (!(flags & END_STREAM)) {
      messages.push(fromBinary(WatchTipResponseSchema, bytes));
      continue;
    }
    const error = endStreamError(bytes);
    if (error) throw error;
    ended = true;
  }
  if (!ended) throw new ConnectError("protocol error: missing end of stream", Code.Internal);
  return messages;
}
