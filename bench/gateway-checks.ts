// The gateway's identity checks (auth's token, a partner's signature) on a call with neither,
// as a customer's tip comes: now (no async step of their own, the header lists made once)
// against the same checks as they were (async functions, the lists made per call), the
// yardstick, alternated in one process. Prints CPU ns and heap bytes per call, and the ratios.
//   node --min-semi-space-size=256 --max-semi-space-size=256 --import tsx bench/gateway-checks.ts [rounds=5] [calls per round=20000]
import type { Interceptor, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { GATEWAY_HEADERS, LightHeaders } from "@ttip/runtime";
import { authInterceptor } from "../gateway/src/auth.js";
import { PARTNER_HEADERS, partnerInterceptor } from "../gateway/src/partner.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 20_000);

type Next = (req: UnaryRequest) => Promise<UnaryResponse>;

/** The two checks' paths for such a call as they were. */
const authBefore: Interceptor = (next) => async (req) => {
  for (const name of Object.values(GATEWAY_HEADERS)) req.header.delete(name);
  const authorization = req.header.get("authorization");
  if (!authorization) return next(req);
  throw new Error("not this bench's call");
};
const partnerBefore: Interceptor = (next) => async (req) => {
  const given = Object.values(PARTNER_HEADERS).filter((h) => req.header.has(h));
  if (given.length === 0) return next(req);
  throw new Error("not this bench's call");
};

const answer = { stream: false, message: {} } as unknown as UnaryResponse;
const chain = (auth: Interceptor, partner: Interceptor): Next =>
  (auth as unknown as (n: Next) => Next)((partner as unknown as (n: Next) => Next)(() => Promise.resolve(answer)));
const request = () => ({ stream: false, header: LightHeaders.of({ "content-type": "application/proto", "x-request-id": "r-0001" }), url: "/x" }) as unknown as UnaryRequest;

async function perCall(call: Next): Promise<{ ns: number; bytes: number }> {
  for (;;) {
    const heap0 = process.memoryUsage().heapUsed;
    const start = process.cpuUsage();
    for (let i = 0; i < perRound; i++) await call(request());
    const used = process.cpuUsage(start);
    const heap1 = process.memoryUsage().heapUsed;
    // A scavenge during the round shrinks the heap: measured again.
    if (heap1 > heap0) return { ns: ((used.user + used.system) * 1000) / perRound, bytes: (heap1 - heap0) / perRound };
  }
}

const before = chain(authBefore, partnerBefore);
const after = chain(authInterceptor(undefined), partnerInterceptor(undefined));
for (let round = 1; round <= rounds; round++) {
  const b = await perCall(before);
  const a = await perCall(after);
  console.log(`round ${round}: auth + partner checks, as they were ${b.ns.toFixed(0)} ns ${b.bytes.toFixed(0)} B, now ${a.ns.toFixed(0)} ns ${a.bytes.toFixed(0)} B per call (ratio CPU ${(a.ns / b.ns).toFixed(2)}, bytes ${(a.bytes / b.bytes).toFixed(2)}; the request's headers included)`);
}
