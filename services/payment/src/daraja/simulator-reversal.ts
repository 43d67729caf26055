// The Daraja simulator's reversal endpoint: a payment to the short code (an STK
// push or a paybill payment) given back to its payer, accepted at once and
// answered later by a POST to the caller's ResultURL in Daraja's Result envelope.
import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import { sendJson } from "../simulator-http.js";
import { darajaTimestamp } from "./client.js";
import { badRequest, mpesaReceipt } from "./simulator-replies.js";
import { newTransaction, type DarajaSimState, type SimTransaction } from "./simulator-state.js";

type Body = Record<string, unknown>;

/** Daraja's result codes for a reversal it refuses. */
const ALREADY_REVERSED = { code: "R000001", desc: "The transaction has already been reversed." };
const NOT_FOUND = { code: "R000002", desc: "The OriginalTransactionID is invalid." };
const REFUSED = { code: "1", desc: "The balance is insufficient for the transaction." };
const QUEUE_TIMEOUT = { code: "1", desc: "The request timed out in the queue." };

/** The field Daraja refuses in a reversal request, or undefined when it is well formed. */
function invalidReversalField(sim: DarajaSimState, b: Body): string | undefined {
  if (b.Initiator !== sim.o.initiatorName) return "Initiator";
  if (b.CommandID !== "TransactionReversal") return "CommandID";
  if (typeof b.TransactionID !== "string" || !/^[A-Z0-9]{10}$/.test(b.TransactionID)) return "TransactionID";
  if (!/^\d{1,6}$/.test(String(b.Amount ?? ""))) return "Amount";
  if (String(b.ReceiverParty ?? "") !== sim.o.shortcode) return "ReceiverParty";
  if (typeof b.ResultURL !== "string" || typeof b.QueueTimeOutURL !== "string") return "ResultURL";
  return undefined;
}

/** The payment M-Pesa took under `receipt`: an STK push's or a paybill payment's. */
function paymentOf(sim: DarajaSimState, receipt: string): { phone: string; amount: number } | undefined {
  const stk = sim.txs.find((t) => t.kind === "stk" && t.receipt === receipt);
  if (stk) return { phone: stk.phone, amount: stk.outcome === "amount_mismatch" ? stk.amount - 1 : stk.amount };
  const paybill = sim.paybillPaid.get(receipt);
  return paybill === undefined ? undefined : { phone: "", amount: paybill };
}

/** Why M-Pesa refuses to reverse `receipt`, or undefined when it reverses it. */
function refusal(sim: DarajaSimState, receipt: string, credentialOk: boolean) {
  if (!credentialOk) return { code: "2001", desc: "The initiator information is invalid." };
  const payment = paymentOf(sim, receipt);
  if (!payment) return NOT_FOUND;
  if (sim.txs.some((t) => t.kind === "reversal" && t.reversal === receipt && t.receipt)) return ALREADY_REVERSED;
  if (sim.scriptFor(payment.phone, payment.amount).reversal === "refused") return REFUSED;
  return undefined;
}

function reversalResult(tx: SimTransaction, outcome: { code: string; desc: string } | undefined) {
  const done = !outcome;
  const parameters = [
    { Key: "DebitAccountBalance", Value: "Utility Account|KES|0.00|0.00|0.00|0.00" },
    { Key: "Amount", Value: tx.amount },
    { Key: "TransCompletedTime", Value: Number(darajaTimestamp()) },
    { Key: "OriginalTransactionID", Value: tx.reversal },
    { Key: "Charge", Value: 0 },
    { Key: "CreditPartyPublicName", Value: `${tx.phone || "254700000000"} - SIMULATED CUSTOMER` },
    { Key: "DebitPartyPublicName", Value: "600000 - TTIP SIMULATED" },
  ];
  return {
    Result: {
      ResultType: 0,
      ResultCode: done ? 0 : outcome.code,
      ResultDesc: done ? "The service request is processed successfully." : outcome.desc,
      OriginatorConversationID: tx.originatorConversationId,
      ConversationID: tx.conversationId,
      TransactionID: tx.receipt ?? mpesaReceipt("S"),
      ...(done ? { ResultParameters: { ResultParameter: parameters } } : {}),
      ReferenceData: { ReferenceItem: { Key: "QueueTimeoutURL", Value: "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit" } },
    },
  };
}

/** POST /mpesa/reversal/v1/request */
export function reversal(sim: DarajaSimState, b: Body, res: http.ServerResponse): void {
  const invalid = invalidReversalField(sim, b);
  if (invalid) return badRequest(res, invalid);
  const receipt = String(b.TransactionID);
  const payment = paymentOf(sim, receipt);
  if (payment && Number(b.Amount) !== payment.amount) return badRequest(res, "Amount");
  const queueTimeout = !!payment && sim.scriptFor(payment.phone, payment.amount).reversal === "queue_timeout";
  const refused = queueTimeout ? QUEUE_TIMEOUT : refusal(sim, receipt, sim.validCredential(b.SecurityCredential));
  const tx = newTransaction({
    kind: "reversal",
    phone: payment?.phone ?? "",
    amount: Number(b.Amount),
    outcome: queueTimeout ? "queue_timeout" : refused ? "refused" : "success",
    resultCode: refused ? 1 : 0,
    receipt: refused ? null : mpesaReceipt("S"),
    reversal: receipt,
    originatorConversationId: randomUUID(),
    conversationId: `AG_${darajaTimestamp()}_${randomBytes(8).toString("hex")}`,
  });
  sim.txs.push(tx);
  const url = String(queueTimeout ? b.QueueTimeOutURL : b.ResultURL);
  sim.later(sim.o.callbackDelayMs, () => sim.deliver(url, reversalResult(tx, refused), tx));
  sendJson(res, 200, { OriginatorConversationID: tx.originatorConversationId, ConversationID: tx.conversationId, ResponseCode: "0", ResponseDescription: "Accept the service request successfully." });
}
