// The Daraja simulator's STK push (Lipa na M-Pesa Online) endpoints: the push,
// its scripted callback, and the query that tells what became of it.
import http from "node:http";
import { sendJson } from "../simulator-http.js";
import { darajaTimestamp, stkPassword } from "./client.js";
import { badRequest, darajaError, mpesaReceipt, randomIdBytes } from "./simulator-replies.js";
import { newTransaction, type DarajaSimState, type Script, type SimTransaction } from "./simulator-state.js";

const STK_RESULTS: Record<string, { code: number; desc: string }> = {
  cancelled: { code: 1032, desc: "Request cancelled by user" },
  timeout: { code: 1037, desc: "DS timeout user cannot be reached" },
  insufficient_funds: { code: 1, desc: "The balance is insufficient for the transaction" },
  wrong_pin: { code: 2001, desc: "The initiator information is invalid." },
  // Safaricom's portal: the same amount from the same customer within 2 minutes.
  rule_limited: { code: 17, desc: "Rule limited." },
};

const PROCESSED = "The service request is processed successfully.";

/** The field Daraja refuses in an STK push, or undefined when the push is well formed. */
function invalidStkField(sim: DarajaSimState, b: Record<string, unknown>): string | undefined {
  const phone = String(b.PhoneNumber ?? "");
  const amount = Number(b.Amount);
  if (String(b.BusinessShortCode) !== sim.o.shortcode) return "BusinessShortCode";
  if (b.Password !== stkPassword(sim.o.shortcode, sim.o.passkey, String(b.Timestamp)) || !/^\d{14}$/.test(String(b.Timestamp))) return "Password";
  if (!Number.isInteger(amount) || amount < 1 || amount > 250_000) return "Amount";
  if (!/^254[17]\d{8}$/.test(phone) || b.PartyA !== phone) return "PhoneNumber";
  if (typeof b.CallBackURL !== "string" || !/^https?:\/\//.test(b.CallBackURL)) return "CallBackURL";
  return undefined;
}

function newStkTransaction(b: Record<string, unknown>, outcome: string): SimTransaction {
  const failure = STK_RESULTS[outcome];
  return newTransaction({
    kind: "stk",
    phone: String(b.PhoneNumber ?? ""),
    amount: Number(b.Amount),
    outcome,
    resultCode: failure ? failure.code : 0,
    receipt: failure ? null : mpesaReceipt("S"),
    checkoutRequestId: `ws_CO_${darajaTimestamp()}${randomIdBytes(6).toString("hex")}`,
    merchantRequestId: `${randomIdBytes(3).toString("hex")}-${randomIdBytes(4).toString("hex")}-1`,
    callbackUrl: String(b.CallBackURL),
    accountReference: String(b.AccountReference ?? ""),
  });
}

function stkCallbackBody(tx: SimTransaction, code: number, desc: string, amount = tx.amount) {
  const metadata = {
    Item: [
      { Name: "Amount", Value: amount },
      { Name: "MpesaReceiptNumber", Value: tx.receipt },
      { Name: "Balance" },
      { Name: "TransactionDate", Value: Number(darajaTimestamp()) },
      { Name: "PhoneNumber", Value: Number(tx.phone) },
    ],
  };
  return {
    Body: {
      stkCallback: {
        MerchantRequestID: tx.merchantRequestId,
        CheckoutRequestID: tx.checkoutRequestId,
        ResultCode: code,
        ResultDesc: desc,
        ...(code === 0 ? { CallbackMetadata: metadata } : {}),
      },
    },
  };
}

/** Sends the push's callback, and its C2B echo before or after it when scripted. */
function callbackSender(sim: DarajaSimState, tx: SimTransaction, script: Script): () => Promise<void> {
  const failure = STK_RESULTS[tx.outcome];
  const body = failure ? stkCallbackBody(tx, failure.code, failure.desc) : stkCallbackBody(tx, 0, PROCESSED);
  const echo = failure ? undefined : script.c2bEcho;
  const confirmByC2b = () => sim.c2b.confirmStk({ receipt: tx.receipt!, amount: tx.amount, phone: tx.phone, accountReference: tx.accountReference ?? "" });
  return async () => {
    if (echo === "before" || echo === "only") await confirmByC2b();
    if (echo !== "only") await sim.deliver(tx.callbackUrl!, body, tx);
    if (echo === "after") await confirmByC2b();
  };
}

/**
 * Schedules what the customer's phone and M-Pesa do after the push, by outcome.
 * Answers "now" when the callback must overtake the synchronous answer ("early").
 */
function scheduleStkCallback(sim: DarajaSimState, tx: SimTransaction, script: Script, send: () => Promise<void>): "now" | undefined {
  const delay = script.delayMs ?? sim.o.callbackDelayMs;
  const checkout = tx.checkoutRequestId!;
  switch (tx.outcome) {
    case "lost":
      return undefined;
    case "duplicate":
      sim.later(delay, async () => {
        for (let i = 0; i < 3; i++) await send();
      });
      return undefined;
    case "late":
      // Processing until the callback goes out (deliver ends it): a held callback keeps it so.
      sim.notYetFinal.add(checkout);
      sim.later(script.delayMs ?? sim.o.lateDelayMs, send);
      return undefined;
    case "query_first":
      sim.parked.set(checkout, () => sim.later(delay, send));
      return undefined;
    case "amount_mismatch":
      sim.later(delay, () => sim.deliver(tx.callbackUrl!, stkCallbackBody(tx, 0, PROCESSED, tx.amount - 1), tx));
      return undefined;
    case "early":
      return "now";
    default:
      sim.later(delay, send);
      return undefined;
  }
}

/** POST /mpesa/stkpush/v1/processrequest */
export function stkPush(sim: DarajaSimState, b: Record<string, unknown>, res: http.ServerResponse): void {
  const invalid = invalidStkField(sim, b);
  if (invalid) return badRequest(res, invalid);
  const script = sim.scriptFor(String(b.PhoneNumber), Number(b.Amount));
  const tx = newStkTransaction(b, script.stk ?? "success");
  sim.txs.push(tx);
  const send = callbackSender(sim, tx, script);
  const accepted = () =>
    sendJson(res, 200, {
      MerchantRequestID: tx.merchantRequestId,
      CheckoutRequestID: tx.checkoutRequestId,
      ResponseCode: "0",
      ResponseDescription: "Success. Request accepted for processing",
      CustomerMessage: "Success. Request accepted for processing",
    });
  // "early": the callback overtakes the synchronous answer.
  if (scheduleStkCallback(sim, tx, script, send) === "now") return void send().then(accepted);
  if (script.answerDelayMs) return void setTimeout(accepted, script.answerDelayMs);
  accepted();
}

/** POST /mpesa/stkpushquery/v1/query: answering it releases a query_first callback. */
export function stkQuery(sim: DarajaSimState, b: Record<string, unknown>, res: http.ServerResponse): void {
  if (b.Password !== stkPassword(sim.o.shortcode, sim.o.passkey, String(b.Timestamp))) return badRequest(res, "Password");
  const tx = sim.txs.find((t) => t.kind === "stk" && t.checkoutRequestId === b.CheckoutRequestID);
  if (!tx) return badRequest(res, "CheckoutRequestID");
  tx.queries++;
  if (sim.notYetFinal.has(tx.checkoutRequestId!)) return darajaError(res, 500, "500.001.1001", "The transaction is being processed");
  const failure = STK_RESULTS[tx.outcome];
  sendJson(res, 200, {
    ResponseCode: "0",
    ResponseDescription: "The service request has been accepted successsfully",
    MerchantRequestID: tx.merchantRequestId,
    CheckoutRequestID: tx.checkoutRequestId,
    ResultCode: sim.scriptFor(tx.phone, tx.amount).blankQueryResult ? "" : String(failure ? failure.code : 0),
    ResultDesc: failure ? failure.desc : PROCESSED,
  });
  const release = sim.parked.get(tx.checkoutRequestId!);
  if (release) {
    sim.parked.delete(tx.checkoutRequestId!);
    release();
  }
}
