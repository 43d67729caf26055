// What checking a receipt costs notification: each request of a SendNotifications batch is
// validated by the handler against SendNotificationRequest's rules (a map of variables with a
// key pattern, a unique list of channels, a required oneof with a phone pattern). Measured with
// protovalidate's default validator (RE2, the yardstick) and with the runtime's
// (requestValidator: its quick check first), alternated in one process (bench/alternated.ts). Prints
// CPU ns per validation and the runtime's as a ratio to the yardstick.
//   node --import tsx bench/receipt-validation.ts [validations per validator and round=200000] [rounds=5]
import { create } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { SendNotificationRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { requestValidator } from "@ttip/runtime";
import { compareAlternated } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 5);

// As payment's receipts.ts makes it.
const receipt = create(SendNotificationRequestSchema, {
  idempotencyKey: "receipt:0192f3a1-7c2e-7b4d-9e8f-0a1b2c3d4e5f",
  recipient: { case: "phone", value: "254712345678" },
  templateKey: TemplateKey.RECEIPT,
  variables: { amount: "KES 150.00", worker: "Jane W.", reference: "QWE123RTY0" },
  channels: [Channel.SMS],
});
const yardstick = createValidator();
const ours = requestValidator();
for (const v of [yardstick, ours]) {
  const r = v.validate(SendNotificationRequestSchema, receipt);
  if (r.kind !== "valid") throw new Error(`the receipt is not valid: ${r.error?.message}`);
}
await compareAlternated(
  [
    ["protovalidate default (RE2)", () => yardstick.validate(SendNotificationRequestSchema, receipt)],
    ["runtime's requestValidator", () => ours.validate(SendNotificationRequestSchema, receipt)],
  ],
  perRound,
  rounds,
  "receipt validated",
);
