// tip-e2e's count of the NATS messages the platform sends, by kind (bench/nats-stats.ts' tokensKind, run
// in the platform's process for every message it publishes), against its yardstick in the same process:
// the subject split at every dot and its first tokens joined again, as it was. Both are checked to give
// the same kind for every subject. Subjects in tip-e2e's mix per tip: 9 acknowledgements, 3 notification
// and 2 payment events, a relay's notice, a wallet event, now and then a JetStream pull request.
// Prints CPU nanoseconds per message and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/nats-kinds.ts [messages per round=1000000] [rounds=6]
import { strictEqual } from "node:assert/strict";
import { compareAlternated } from "./alternated.js";
import { tokensKind } from "./nats-stats.js";

const perRound = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 6);

const splitKind = (subject: string) => subject.split(".").slice(0, subject.startsWith("$JS.API.") ? 4 : 2).join(".");
const subjects = [
  ...Array.from({ length: 9 }, (_, i) => `$JS.ACK.ttip_events.notification-tip-received.1.${48_213 + i}.${31_877 + i}.1764672021311946000.${i}`),
  "ttip.notification.delivery_updated",
  "ttip.notification.delivery_updated",
  "ttip.notification.delivery_updated",
  "ttip.payment.tip_created",
  "ttip.payment.tip_succeeded",
  "_notify.ttip",
  "ttip.wallet.entry_posted",
  "$JS.API.CONSUMER.MSG.NEXT.ttip_events.analytics",
  "ttip",
  "",
  "a.b",
];
for (const subject of subjects) strictEqual(tokensKind(subject), splitKind(subject), subject);

await compareAlternated(
  [
    ["split, slice, join (before)", (i) => splitKind(subjects[i % 16])],
    ["cut at the dot", (i) => tokensKind(subjects[i % 16])],
  ],
  perRound,
  rounds,
  "message",
);
