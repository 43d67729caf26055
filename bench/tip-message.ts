// payment's Tip answer (tipMessage: every CreateTip answer and WatchTip update builds one), against its
// yardstick in the same process: the same message through create(TipSchema, init) as tipMessage built
// it before (create() walks the 31 fields and converts each init value, Money and all). Both must give
// the same message and the same bytes (checked first). A pending and a succeeded M-Pesa tip, alternated.
// Prints CPU nanoseconds per message and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/tip-message.ts [messages per round=200000] [rounds=6]
import { deepStrictEqual } from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PaymentMethodKind, TipSchema, type Tip as TipMessage } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { TIP_STATUS, tipMessage } from "../services/payment/src/convert.js";
import { resultMessage } from "../services/payment/src/messages.js";
import type { Tip } from "../services/payment/src/stores/tips.js";
import { optionalTimestamp } from "@ttip/runtime";
import { compareAlternated } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 6);

/** tipMessage as it was (M-Pesa tips: the card fields are set after either way). */
function tipMessageBefore(t: Tip, locale = "en", paybill = ""): TipMessage {
  const messageKey = t.status === "held_for_review" ? "review" : t.resultCode;
  return create(TipSchema, {
    tipId: t.tipId,
    workerId: t.workerId ?? "",
    venueId: t.venueId,
    shared: t.workerId === null,
    qrCodeId: t.qrCodeId,
    amount: t.amount,
    fee: t.fee,
    charged: t.charged,
    method: t.method === "card" ? PaymentMethodKind.CARD : PaymentMethodKind.MPESA,
    status: TIP_STATUS[t.status],
    resultCode: t.resultCode,
    resultMessage: t.resultCode || t.status === "held_for_review" ? resultMessage(messageKey, locale) : "",
    mpesaReceipt: t.mpesaReceipt ?? "",
    customerPhoneMasked: t.phoneMasked,
    rating: t.rating,
    message: t.message,
    createdAt: timestampFromDate(t.createdAt),
    completedAt: optionalTimestamp(t.completedAt),
    paybillNumber: paybill && t.accountReference ? paybill : "",
    paybillAccountReference: paybill && t.accountReference ? t.accountReference : "",
    channel: t.channel,
  });
}

const kes = (minor: bigint) => ({ amountMinor: minor, currency: "KES" });
const pending: Tip = {
  tipId: "0190c2a4-7e1f-7a8b-9c0d-112233445566", workerId: "0190c2a4-0000-7000-8000-000000000001", venueId: "0190c2a4-0000-7000-8000-000000000002",
  qrCodeId: "0190c2a4-0000-7000-8000-000000000003", customerSubject: "", method: "mpesa", channel: "web",
  amount: kes(10_000n), fee: kes(0n), charged: kes(10_000n), workerReceives: kes(10_000n), received: null,
  phoneMasked: "2547******78", customerEmail: null, rating: 5, message: "asante", ratedAt: null, status: "pending",
  resultCode: "", resultMessage: "", checkoutRequestId: "ws_CO_011220252230001234", mpesaReceipt: null, accountReference: "T7K2M9",
  creditKind: null as never, creditEntryId: null, card: null, mpesaReversal: { state: "none", refunded: { currency: "KES", amountMinor: 0n } }, createdAt: new Date(), completedAt: null,
};
const succeeded: Tip = { ...pending, status: "succeeded", resultCode: "0", mpesaReceipt: "TLL1ABCDEF", completedAt: new Date(), creditEntryId: "e" };
const tips = [pending, succeeded];

for (const t of tips) {
  for (const paybill of ["", "174379"]) {
    const [before, after] = [tipMessageBefore(t, "sw", paybill), tipMessage(t, "sw", paybill)];
    deepStrictEqual(after, before);
    deepStrictEqual(toBinary(TipSchema, after), toBinary(TipSchema, before));
  }
}

await compareAlternated([
  ["create(TipSchema, init) (before)", (i) => tipMessageBefore(tips[i & 1], "en", "174379")],
  ["the literal (tipMessage)", (i) => tipMessage(tips[i & 1], "en", "174379")],
], perRound, rounds, "message");
