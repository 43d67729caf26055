// notification's "opted out" event, made for every SMS delivery planned (the planning statement uses it
// only when the number texted STOP), against its yardstick in the same process: a second event built
// with buildEvent (status "failed"), as planning made it before, and optedOutEventOf (the queued event's
// bytes with a meta id and status appended). Both are checked to decode to the same event but for the
// id. Prints CPU nanoseconds per SMS planned and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/opted-out-event.ts [events per round=200000] [rounds=6]
import { deepStrictEqual, notStrictEqual } from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { DeliveryUpdatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, type BusMessage } from "@ttip/runtime";
import { optedOutEventOf } from "../services/notification/src/delivery.js";
import { compareAlternated } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 6);

const init = (status: string) => ({ deliveryId: "0190c2a4-7e1f-7a8b-9c0d-112233445566", userId: "0190c2a4-0000-7000-8000-000000000001", channel: "sms", status, templateKey: "tip_received", attempt: 0 });
const at = new Date();
const queued = buildEvent("notification", DeliveryUpdatedSchema, init("queued"), "corr", at);
const built = buildEvent("notification", DeliveryUpdatedSchema, init("failed"), "corr", at);
const appended = optedOutEventOf(queued);
const decoded = (e: BusMessage) => {
  const m = fromBinary(DeliveryUpdatedSchema, e.data);
  deepStrictEqual(m.meta?.id, e.id, "the payload's id is the message's");
  return { ...m, meta: { ...m.meta!, id: "" } };
};
deepStrictEqual(decoded(appended), decoded(built), "the same event but for its id");
notStrictEqual(appended.id, queued.id);

await compareAlternated(
  [
    ["buildEvent(failed) (before)", () => buildEvent("notification", DeliveryUpdatedSchema, init("failed"), "corr")],
    ["optedOutEventOf(queued)", () => optedOutEventOf(queued)],
  ],
  perRound,
  rounds,
  "SMS planned",
);
