// The Daraja simulator's initiator endpoints: B2C payments, transaction status
// and account balance. Each is accepted at once and answered later by a POST to
// the caller's ResultURL in Daraja's Result envelope.
import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import { sendJson } from "../simulator-http.js";
import { B2C_MIN_KES, darajaTimestamp, TRANSACTION_NOT_FOUND } from "./client.js";
import { badRequest, mpesaReceipt } from "./simulator-replies.js";
import { newTransaction, type B2cOutcome, type DarajaSimState, type SimTransaction } from "./simulator-state.js";

type Body = Record<string, unknown>;

const PROCESSED = "The service request is processed successfully.";
const ACCEPTED = "Accept the service request successfully.";

/** What each B2C outcome POSTs, and where (the ResultURL unless it is the queue's timeout). */
const B2C_RESULTS: Partial<Record<B2cOutcome, { code: number; desc: string; queueTimeout?: true }>> = {
  success: { code: 0, desc: PROCESSED },
  amount_mismatch: { code: 0, desc: PROCESSED },
  failed: { code: 2001, desc: "The initiator information is invalid." },
  insufficient_funds: { code: 1, desc: "The balance is insufficient for the transaction." },
  queue_timeout: { code: 1, desc: "The request timed out in the queue.", queueTimeout: true },
};

const conversationId = () => `AG_${darajaTimestamp()}_${randomBytes(8).toString("hex")}`;

function resultEnvelope(fields: Record<string, unknown>, referenceItem: Record<string, unknown>) {
  return { Result: { ResultType: 0, ...fields, ReferenceData: { ReferenceItem: referenceItem } } };
}

function b2cResult(tx: SimTransaction, code: number, desc: string) {
  const parameters = [
    { Key: "TransactionAmount", Value: tx.amount },
    { Key: "TransactionReceipt", Value: tx.receipt },
    { Key: "ReceiverPartyPublicName", Value: `${tx.phone} - SIMULATED CUSTOMER` },
    { Key: "TransactionCompletedDateTime", Value: "01.01.2026 12:00:00" },
    { Key: "B2CUtilityAccountAvailableFunds", Value: 1000000 },
    { Key: "B2CWorkingAccountAvailableFunds", Value: 1000000 },
    { Key: "B2CRecipientIsRegisteredCustomer", Value: "Y" },
    { Key: "B2CChargesPaidAccountAvailableFunds", Value: 0 },
  ];
  return resultEnvelope(
    {
      ResultCode: code,
      ResultDesc: desc,
      OriginatorConversationID: tx.originatorConversationId,
      ConversationID: tx.conversationId,
      TransactionID: tx.receipt ?? "",
      ...(code === 0 ? { ResultParameters: { ResultParameter: parameters } } : {}),
    },
    { Key: "QueueTimeoutURL", Value: "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit" },
  );
}

/** The field Daraja refuses in a B2C request, or undefined when it is well formed. */
function invalidB2cField(sim: DarajaSimState, b: Body): string | undefined {
  const amount = Number(b.Amount);
  if (b.InitiatorName !== sim.o.initiatorName) return "InitiatorName";
  if (!Number.isInteger(amount) || amount < B2C_MIN_KES || amount > 250_000) return "Amount";
  if (!/^254[17]\d{8}$/.test(String(b.PartyB ?? ""))) return "PartyB";
  if (typeof b.ResultURL !== "string" || typeof b.QueueTimeOutURL !== "string") return "ResultURL";
  return undefined;
}

function newB2cTransaction(b: Body, outcome: B2cOutcome): SimTransaction {
  const executed = outcome === "success" || outcome === "slow_ack" || outcome === "lost_result" || outcome === "amount_mismatch";
  return newTransaction({
    kind: "b2c",
    phone: String(b.PartyB ?? ""),
    // What was sent: the result, status queries and the utility balance all tell it.
    amount: Number(b.Amount) + (outcome === "amount_mismatch" ? 1 : 0),
    outcome,
    resultCode: outcome === "queue_timeout" ? null : executed ? 0 : outcome === "insufficient_funds" ? 1 : 2001,
    receipt: executed ? mpesaReceipt("S") : null,
    originatorConversationId: String(b.OriginatorConversationID || randomUUID()),
    conversationId: conversationId(),
  });
}

/** POST /mpesa/b2c/v1|v3/paymentrequest */
export function b2cPayment(sim: DarajaSimState, b: Body, res: http.ServerResponse): void {
  const invalid = invalidB2cField(sim, b);
  if (invalid) return badRequest(res, invalid);
  const script = sim.scriptFor(String(b.PartyB), Number(b.Amount));
  const outcome = sim.validCredential(b.SecurityCredential) ? script.b2c ?? "success" : "failed";
  const tx = newB2cTransaction(b, outcome);
  sim.txs.push(tx);
  const answer = () =>
    sendJson(res, 200, { ConversationID: tx.conversationId, OriginatorConversationID: tx.originatorConversationId, ResponseCode: "0", ResponseDescription: ACCEPTED });
  if (outcome === "slow_ack") {
    // Executed at once; the answer comes after the caller has given up, and the result is lost.
    return void setTimeout(() => (sim.closed ? res.destroy() : answer()), script.delayMs ?? sim.o.lateDelayMs);
  }
  const result = B2C_RESULTS[outcome];
  if (result) {
    const url = String(result.queueTimeout ? b.QueueTimeOutURL : b.ResultURL);
    sim.later(script.delayMs ?? sim.o.callbackDelayMs, () => sim.deliver(url, b2cResult(tx, result.code, result.desc), tx));
  }
  answer(); // lost_result: executed, and no result ever comes
}

function statusParameters(tx: SimTransaction, answer: string | undefined) {
  return [
    { Key: "ReceiptNo", Value: tx.receipt ?? "" },
    { Key: "TransactionStatus", Value: answer ?? (tx.resultCode === 0 ? "Completed" : "Failed") },
    { Key: "ResultCode", Value: tx.resultCode ?? "" },
    { Key: "Amount", Value: tx.amount },
    { Key: "OriginatorConversationID", Value: tx.originatorConversationId },
    { Key: "ConversationID", Value: tx.conversationId },
    { Key: "CreditPartyName", Value: `${tx.phone} - SIMULATED CUSTOMER` },
  ];
}

/** POST /mpesa/transactionstatus/v1/query: finds a B2C by receipt or originator conversation id. */
export function transactionStatus(sim: DarajaSimState, b: Body, res: http.ServerResponse): void {
  if (!sim.validCredential(b.SecurityCredential)) return badRequest(res, "SecurityCredential");
  if (typeof b.ResultURL !== "string") return badRequest(res, "ResultURL");
  const tx = sim.txs.find(
    (t) => t.kind === "b2c" && ((b.TransactionID && t.receipt === b.TransactionID) || (b.OriginalConversationID && t.originatorConversationId === b.OriginalConversationID)),
  );
  if (tx && sim.scriptFor(tx.phone, tx.amount).statusOutage) return void res.writeHead(503, { "content-type": "text/plain" }).end("upstream unavailable");
  if (tx) tx.queries++;
  const statusError = tx && sim.scriptFor(tx.phone, tx.amount).statusError;
  const conversation = conversationId();
  const originator = randomUUID();
  const result = resultEnvelope(
    {
      ResultCode: statusError ? statusError : tx ? 0 : Number(TRANSACTION_NOT_FOUND),
      ResultDesc: statusError ? "The query failed." : tx ? PROCESSED : "Request to the resource has failed: transaction not found.",
      OriginatorConversationID: originator,
      ConversationID: conversation,
      TransactionID: tx?.receipt ?? "",
      ResultParameters: { ResultParameter: tx && !statusError ? statusParameters(tx, sim.scriptFor(tx.phone, tx.amount).statusAnswer) : [] },
    },
    { Key: "Occasion" },
  );
  const resultUrl = b.ResultURL;
  sim.later(sim.o.callbackDelayMs, () => sim.deliver(resultUrl, result));
  sendJson(res, 200, { ConversationID: conversation, OriginatorConversationID: originator, ResponseCode: "0", ResponseDescription: ACCEPTED });
}

/** The field Daraja refuses in an account balance query, or undefined when it is well formed. */
function invalidBalanceField(sim: DarajaSimState, b: Body): string | undefined {
  if (b.Initiator !== sim.o.initiatorName) return "Initiator";
  if (b.CommandID !== "AccountBalance") return "CommandID";
  if (String(b.PartyA ?? "") !== sim.o.shortcode) return "PartyA";
  if (String(b.IdentifierType ?? "") !== "4") return "IdentifierType";
  if (typeof b.ResultURL !== "string" || typeof b.QueueTimeOutURL !== "string") return "ResultURL";
  return undefined;
}

/** The balances in one string: "Account|Currency|Current|Available|Reserved|Uncleared&...". */
function balanceString(utility: number): string {
  const amount = (n: number) => n.toFixed(2);
  return [
    `Working Account|KES|${amount(0)}|${amount(0)}|0.00|0.00`,
    `Utility Account|KES|${amount(utility)}|${amount(utility)}|0.00|0.00`,
    "Charges Paid Account|KES|0.00|0.00|0.00|0.00",
    "Organization Settlement Account|KES|0.00|0.00|0.00|0.00",
  ].join("&");
}

/** POST /mpesa/accountbalance/v1/query: the short code's balances, POSTed to the ResultURL. */
export function accountBalance(sim: DarajaSimState, b: Body, res: http.ServerResponse): void {
  const invalid = invalidBalanceField(sim, b);
  if (invalid) return badRequest(res, invalid);
  const credentialOk = sim.validCredential(b.SecurityCredential);
  const conversation = conversationId();
  const originator = randomUUID();
  const parameters = [
    { Key: "AccountBalance", Value: balanceString(sim.utilityBalance()) },
    { Key: "BOCompletedTime", Value: Number(darajaTimestamp()) },
  ];
  const result = resultEnvelope(
    {
      ResultCode: credentialOk ? 0 : 2001,
      ResultDesc: credentialOk ? PROCESSED : "The initiator information is invalid.",
      OriginatorConversationID: originator,
      ConversationID: conversation,
      TransactionID: mpesaReceipt("S"),
      ...(credentialOk ? { ResultParameters: { ResultParameter: parameters } } : {}),
    },
    { Key: "QueueTimeoutURL", Value: "https://internalsandbox.safaricom.co.ke/mpesa/abresults/v1/submit" },
  );
  const resultUrl = String(b.ResultURL);
  sim.later(sim.o.callbackDelayMs, () => sim.deliver(resultUrl, result));
  sendJson(res, 200, { OriginatorConversationID: originator, ConversationID: conversation, ResponseCode: "0", ResponseDescription: ACCEPTED });
}
