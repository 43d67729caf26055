// What checking a receipt costs notification: each request of a SendNotifications batch is
// validated by the handler against SendNotificationRequest's rules (a map of variables with a
// key pattern, a unique list of channels, a required oneof with a phone pattern). Measured with
// protovalidate's default validator (RE2, the yardstick) and with the runtime's
// (requestValidator: its quick check first), alternated in one process. Prints CPU ns per
// validation and the runtime's as a ratio to the yardstick.
//   node --import tsx bench/receipt-validation.ts [seconds per validator and round=1] [rounds=5]
import { create } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { SendNotificationRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { requestValidator } from "@ttip/runtime";

const seconds = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 5);

// As payment's receipts.ts makes it.
const receipt = create(SendNotificationRequestSchema, {
  idempotencyKey: "receipt:0192f3a1-7c2e-7b4d-9e8f-0a1b2c3d4e5f",
  recipient: { case: "phone", value: "254712345678" },
  templateKey: TemplateKey.RECEIPT,
  variables: { amount: "KES 150.00", worker: "Jane W.", reference: "QWE123RTY0" },
  channels: [Channel.SMS],
});
const validators = new Map([
  ["protovalidate default (RE2)", createValidator()],
  ["runtime's requestValidator", requestValidator()],
]);

/** CPU ns per validation over `seconds`. */
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

for (const v of validators.values()) {
  const r = v.validate(SendNotificationRequestSchema, receipt);
  if (r.kind !== "valid") throw new Error(`the receipt is not valid: ${r.error?.message}`);
  for (let i = 0; i < 20_000; i++) v.validate(SendNotificationRequestSchema, receipt);
}
const results = new Map<string, number[]>();
for (let round = 1; round <= rounds; round++) {
  for (const [name, v] of validators) {
    const ns = validationNs(() => v.validate(SendNotificationRequestSchema, receipt));
    results.set(name, [...(results.get(name) ?? []), ns]);
    console.log(`round ${round}  validate a receipt, ${name.padEnd(28)} ${ns.toFixed(0).padStart(7)} ns CPU`);
  }
}
const median = (name: string) => [...results.get(name)!].sort((a, b) => a - b)[Math.floor(rounds / 2)];
const [yardstick, ours] = [...validators.keys()].map(median);
console.log(`validate a receipt, median of ${rounds}: default ${yardstick.toFixed(0)} ns, runtime's ${ours.toFixed(0)} ns (${(ours / yardstick).toFixed(3)}x)`);
