// The headers of a Connect unary call served from its HTTP request (runtime connect-unary.ts):
// the request's made from HTTP/2's raw list and read as a call reads them (timeout, encodings,
// request id, internal signature, identity), the answer's header and trailer set, then both
// written into the record the exchange takes. In LightHeaders with trailerMuxed (now) and in
// node's Headers with connect-es's trailerMux (before, the yardstick), alternated in one process.
// Prints CPU nanoseconds and heap bytes per call, and the ratios.
//   node --import tsx bench/connect-unary-headers.ts [rounds=5] [calls per round=100000]
import { trailerMux } from "@connectrpc/connect/protocol-connect";
import { LightHeaders } from "@ttip/runtime";
import { requestHeaders, trailerMuxed } from "../services/runtime/src/connect-unary.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 100_000);

/** What a forwarded CreateTip carries (gateway -> payment), as node hands HTTP/2's headers over. */
const RAW = [
  ":method", "POST", ":path", "/ttip.payment.v1.PaymentService/CreateTip", ":scheme", "http", ":authority", "127.0.0.1:50051",
  "content-type", "application/proto", "connect-protocol-version", "1", "connect-timeout-ms", "14999",
  "accept-encoding", "gzip, br", "user-agent", "connect-es/2.1.0", "x-request-id", "0b6f4c1e-8d3a-4f7e-9c2b-5a1d2e3f4a5b",
  "x-ttip-internal", "v1.1764570000.c2lnbmF0dXJlLW9mLXRoZS1jYWxs", "x-ttip-subject", "user-1", "idempotency-key", "tip-1234567890",
];

type Way = { header: (raw: string[]) => Headers; response: () => Headers; trailer: () => Headers; mux: (h: Headers, t: Headers) => Record<string, string> };

const light: Way = {
  header: requestHeaders,
  response: () => {
    const h = new LightHeaders();
    h.set("content-type", "application/proto");
    return h;
  },
  trailer: () => new LightHeaders(),
  mux: trailerMuxed,
};

const node: Way = {
  header: (raw) => {
    const h = new Headers();
    for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") h.append(raw[i], raw[i + 1]);
    return h;
  },
  response: () => new Headers({ "content-type": "application/proto" }),
  trailer: () => new Headers(),
  mux: (h, t) => {
    const out: Record<string, string> = {};
    trailerMux(h, t).forEach((value, key) => (out[key] = value));
    return out;
  },
};

/** CPU ns and heap bytes (collected ones too: a scavenge between is noticed and the round measured again) per call. */
function perCall(way: Way): { ns: number; bytes: number } {
  for (;;) {
    const heap0 = process.memoryUsage().heapUsed;
    const start = process.cpuUsage();
    let seen = 0;
    for (let i = 0; i < perRound; i++) {
      const h = way.header(RAW);
      seen += (h.get("connect-timeout-ms")?.length ?? 0) + (h.get("content-encoding") === null ? 0 : 1) + (h.get("accept-encoding")?.length ?? 0);
      seen += (h.get("x-request-id")?.length ?? 0) + (h.get("x-ttip-internal") ? 1 : 0) + (h.has("x-ttip-subject") ? 1 : 0);
      const response = way.response();
      const trailer = way.trailer();
      response.set("x-request-id", "0b6f4c1e-8d3a-4f7e-9c2b-5a1d2e3f4a5b");
      const out = way.mux(response, trailer);
      out["content-length"] = "212";
      seen += Object.keys(out).length;
    }
    const used = process.cpuUsage(start);
    const heap1 = process.memoryUsage().heapUsed;
    if (seen !== perRound * (5 + 8 + 36 + 1 + 1 + 3)) throw new Error(`the headers did not answer as set (${seen / perRound})`);
    // A scavenge during the round shrinks the heap: measure again (the semi-space flag below makes it rare).
    if (heap1 > heap0) return { ns: ((used.user + used.system) * 1000) / perRound, bytes: (heap1 - heap0) / perRound };
  }
}

if (!process.execArgv.some((a) => a.startsWith("--max-semi-space-size"))) console.log("(run with --max-semi-space-size=256 for the bytes: a round's garbage must fit the young generation)");
for (let round = 1; round <= rounds; round++) {
  const before = perCall(node);
  const after = perCall(light);
  console.log(
    `round ${round}: node's Headers + trailerMux ${before.ns.toFixed(0)} ns ${before.bytes.toFixed(0)} B, LightHeaders + trailerMuxed ${after.ns.toFixed(0)} ns ${after.bytes.toFixed(0)} B per call` +
      ` (ratio CPU ${(after.ns / before.ns).toFixed(2)}, bytes ${(after.bytes / before.bytes).toFixed(2)})`,
  );
}
