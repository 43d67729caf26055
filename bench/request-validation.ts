// What request validation costs a call: payment's CreateTip (string lengths, a
// pattern on the phone and the currency, a required oneof, two CEL rules on the
// message) validated by itself with protovalidate's default validator (RE2, the
// yardstick) and with the runtime's (requestValidator), and called in process
// through every server interceptor with validation on and off (same process,
// paths alternated each round). Prints ns per validation and the validated
// call's extra CPU as a ratio to the unvalidated call.
//   node --import tsx bench/request-validation.ts [seconds per path and round=2] [rounds=3] [concurrency=16]
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { createClient } from "@connectrpc/connect";
import { CreateTipRequestSchema, CreateTipResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createLogger, createPeers, Metrics, requestValidator, serviceInterceptors, startServer } from "@ttip/runtime";
import { closedLoop } from "./load.js";

const seconds = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 3);
const concurrency = Number(process.argv[4] ?? 16);

const request = () => ({
  idempotencyKey: randomUUID(),
  recipient: { case: "qrCode" as const, value: "QR-7KD2-PX9A" },
  amount: { currency: "KES", amountMinor: 15_000n },
  payment: { case: "mpesaPhone" as const, value: "+254712345678" },
  rating: 5,
  message: "asante sana",
});

const logger = createLogger({ level: "silent" });
const startPayment = (validate: boolean) =>
  startServer({
    name: "payment",
    logger,
    metrics: new Metrics(),
    services: [PaymentService],
    routes: (router) => router.service(PaymentService, { createTip: async () => create(CreateTipResponseSchema, {}) }),
    interceptors: serviceInterceptors(),
    validate,
  });
const validated = await startPayment(true);
const unvalidated = await startPayment(false);
const validatedPeers = createPeers(() => undefined, () => validated.local);
const unvalidatedPeers = createPeers(() => undefined, () => unvalidated.local);
const calls = new Map<string, () => Promise<unknown>>([
  ["in process, validated", () => createClient(PaymentService, validatedPeers("payment")).createTip(request(), { timeoutMs: 5_000 })],
  ["in process, not validated", () => createClient(PaymentService, unvalidatedPeers("payment")).createTip(request(), { timeoutMs: 5_000 })],
]);
const validators = new Map([
  ["protovalidate default (RE2)", createValidator()],
  ["runtime's requestValidator", requestValidator()],
]);
const message = create(CreateTipRequestSchema, request());

/** CPU ns per validation of `message`, over `seconds`. */
function validationNs(validate: () => unknown): number {
  const before = process.cpuUsage();
  const until = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 1000; i++) validate();
    n += 1000;
  }
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / n;
}

try {
  for (const call of calls.values()) for (let i = 0; i < 3_000; i++) await call();
  for (const v of validators.values()) for (let i = 0; i < 20_000; i++) v.validate(CreateTipRequestSchema, message);
  const results = new Map<string, number[]>();
  const note = (name: string, value: number) => results.set(name, [...(results.get(name) ?? []), value]);
  for (let round = 1; round <= rounds; round++) {
    for (const [name, v] of validators) {
      const ns = validationNs(() => v.validate(CreateTipRequestSchema, message));
      note(name, ns);
      console.log(`round ${round}  validate CreateTipRequest, ${name.padEnd(28)} ${ns.toFixed(0).padStart(7)} ns CPU`);
    }
    for (const [name, call] of calls) {
      const before = process.cpuUsage();
      const r = await closedLoop(concurrency, seconds, call);
      const used = process.cpuUsage(before);
      const ns = ((used.user + used.system) * 1000) / r.calls;
      note(name, ns);
      console.log(`round ${round}  CreateTip ${name.padEnd(38)} ${ns.toFixed(0).padStart(7)} ns CPU per call`);
    }
  }
  const median = (name: string) => {
    const list = [...results.get(name)!].sort((a, b) => a - b);
    return list[Math.floor(list.length / 2)];
  };
  const [yardstick, ours] = [...validators.keys()].map(median);
  const withValidation = median("in process, validated");
  const without = median("in process, not validated");
  console.log(`validate CreateTipRequest, median of ${rounds}: default ${yardstick.toFixed(0)} ns, runtime's ${ours.toFixed(0)} ns (${(ours / yardstick).toFixed(2)}x)`);
  console.log(
    `in-process CreateTip, median: validated ${withValidation.toFixed(0)} ns, not validated ${without.toFixed(0)} ns; validation adds ${(withValidation - without).toFixed(0)} ns = ${((withValidation - without) / without).toFixed(2)} of an unvalidated call`,
  );
} finally {
  validatedPeers.close();
  unvalidatedPeers.close();
  await validated.close();
  await unvalidated.close();
}
