// A Daraja simulator: Safaricom's paths and JSON (OAuth, STK push and query,
// B2C, transaction status) and the callbacks they cause, with outcomes
// scripted per phone number or amount. Tests and `make run` start it on a
// loopback port; GET /__sim/transactions tells what "really" happened.
import { constants, privateDecrypt, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createC2bSim, type C2bPayRequest, type C2bSim } from "./c2b-simulator.js";
import { darajaTimestamp, stkPassword, type DarajaConfig } from "./client.js";

/** The simulator's "Safaricom public certificate" (test only; its private key is beside it). */
export const SIMULATOR_CERTIFICATE_FILE = fileURLToPath(new URL("./testdata/simulator-cert.pem", import.meta.url));
export const SIMULATOR_CERTIFICATE_PEM = readFileSync(SIMULATOR_CERTIFICATE_FILE, "utf8");
const SIMULATOR_PRIVATE_KEY_PEM = readFileSync(new URL("./testdata/simulator-key.pem", import.meta.url), "utf8");

/** What the customer (STK) or M-Pesa (B2C) does with a request. */
export type StkOutcome =
  | "success"
  | "cancelled" // 1032
  | "timeout" // 1037
  | "rule_limited" // 17: the same amount from the same number within 2 minutes
  | "insufficient_funds" // 1
  | "wrong_pin" // 2001
  | "duplicate" // success, callback sent three times
  | "lost" // success, callback never sent (only a query tells)
  | "late" // success; the query says "processing" until the callback comes, late
  | "query_first" // success; the callback is held until a query has answered it
  | "early" // success; the callback is sent before the push is even answered
  | "amount_mismatch"; // success, but the callback reports one shilling less

export type B2cOutcome =
  | "success"
  | "failed" // ResultCode 2001, initiator information invalid
  | "insufficient_funds" // ResultCode 1, our B2C account is short
  | "queue_timeout" // never executed; QueueTimeOutURL is called
  | "slow_ack" // executed, result sent, but the synchronous answer comes too late for the caller
  | "lost_result"; // executed, result never sent (only a status query tells)

export interface Script {
  stk?: StkOutcome;
  b2c?: B2cOutcome;
  /** Overrides the default callback delay. */
  delayMs?: number;
  /** STK: the push is taken (and the customer charged) at once, but its answer comes this late. */
  answerDelayMs?: number;
  /**
   * STK success also reported as a C2B confirmation (when C2B URLs are registered):
   * "before" or "after" the STK callback, or "only" (the callback is lost).
   */
  c2bEcho?: "before" | "after" | "only";
}

const STK_RESULTS: Record<string, { code: number; desc: string }> = {
  cancelled: { code: 1032, desc: "Request cancelled by user" },
  timeout: { code: 1037, desc: "DS timeout user cannot be reached" },
  insufficient_funds: { code: 1, desc: "The balance is insufficient for the transaction" },
  wrong_pin: { code: 2001, desc: "The initiator information is invalid." },
  // Safaricom's portal: the same amount from the same customer within 2 minutes.
  rule_limited: { code: 17, desc: "Rule limited." },
};

export interface SimTransaction {
  kind: "stk" | "b2c";
  id: string;
  phone: string;
  amount: number;
  outcome: string;
  resultCode: number | null;
  receipt: string | null;
  /** STK */
  checkoutRequestId?: string;
  merchantRequestId?: string;
  callbackUrl?: string;
  accountReference?: string;
  /** B2C */
  originatorConversationId?: string;
  conversationId?: string;
  /** Callbacks actually delivered to the integrator. */
  callbacksSent: number;
  /** When the last callback was sent (epoch ms, fractional): benchmarks measure from here to the tip's credit. */
  callbackSentAt?: number;
  queries: number;
  createdAt: string;
}

export interface SimulatorOptions {
  host?: string;
  port?: number;
  consumerKey?: string;
  consumerSecret?: string;
  shortcode?: string;
  passkey?: string;
  initiatorName?: string;
  initiatorPassword?: string;
  /** Delay before a callback (default 200 ms). */
  callbackDelayMs?: number;
  /** For "late" STK and "slow_ack" B2C (default 1500 ms). */
  lateDelayMs?: number;
  tokenTtlSeconds?: number;
  /** Where callbacks come from (default 127.0.0.1). */
  callbackSourceAddress?: string;
  /** The short code's utility account before any simulated payment, whole shillings (default 0). */
  openingBalance?: number;
}

export interface DarajaSimulator {
  url: string;
  options: Required<SimulatorOptions>;
  /** PEM file of the certificate B2C credentials are encrypted with. */
  certificateFile: string;
  /** What a Daraja client needs to talk to this simulator. */
  clientConfig(): DarajaConfig;
  transactions(): SimTransaction[];
  script(key: { phone?: string; amount?: number }, script: Script): void;
  /** Invalidates every token issued so far. */
  revokeTokens(): void;
  /** Waits until every scheduled callback has been sent. */
  idle(): Promise<void>;
  /** C2B: registered URLs and customer payments to the paybill (also over HTTP: POST /__sim/c2b/pay, GET /__sim/c2b/registrations). */
  c2b: C2bSim;
  close(): Promise<void>;
}

/** Scripts by phone suffix when none was set: handy for people trying `make run`. */
export const PHONE_SUFFIX_SCRIPTS: Record<string, Script> = {
  "1032": { stk: "cancelled" },
  "1037": { stk: "timeout" },
  "0001": { stk: "insufficient_funds", b2c: "insufficient_funds" },
  "2001": { stk: "wrong_pin", b2c: "failed" },
  "0002": { stk: "duplicate" },
  "0003": { stk: "lost", b2c: "lost_result" },
  "0004": { stk: "late", b2c: "slow_ack" },
  "0005": { stk: "early" },
  "0006": { b2c: "queue_timeout" },
  "0007": { stk: "success", c2bEcho: "before" },
  "0008": { stk: "success", c2bEcho: "after" },
  "0009": { stk: "success", c2bEcho: "only" },
  "0017": { stk: "rule_limited" },
};

const SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

export async function startDarajaSimulator(options: SimulatorOptions = {}): Promise<DarajaSimulator> {
  const o: Required<SimulatorOptions> = {
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 0,
    consumerKey: options.consumerKey ?? "sim-consumer-key",
    consumerSecret: options.consumerSecret ?? "sim-consumer-secret",
    shortcode: options.shortcode ?? "174379",
    passkey: options.passkey ?? SANDBOX_PASSKEY,
    initiatorName: options.initiatorName ?? "testapi",
    initiatorPassword: options.initiatorPassword ?? "Safaricom999!*!",
    callbackDelayMs: options.callbackDelayMs ?? 200,
    lateDelayMs: options.lateDelayMs ?? 1500,
    tokenTtlSeconds: options.tokenTtlSeconds ?? 3599,
    callbackSourceAddress: options.callbackSourceAddress ?? "127.0.0.1",
    openingBalance: options.openingBalance ?? 0,
  };
  const tokens = new Map<string, number>();
  const txs: SimTransaction[] = [];
  const scripts = new Map<string, Script>();
  const pending = new Set<Promise<unknown>>();
  // query_first: callbacks parked until a query answers the push.
  const parked = new Map<string, () => void>();
  // late: the query keeps saying "processing" until the callback went out.
  const notYetFinal = new Set<string>();
  let closed = false;
  // Paybill payments by receipt: a replayed receipt is one payment.
  const paybillPaid = new Map<string, number>();
  const c2b = createC2bSim({ shortcode: o.shortcode, sourceAddress: o.callbackSourceAddress, onPaid: (p) => void paybillPaid.set(p.transId, p.amount) });

  /**
   * The short code's utility account as M-Pesa would report it: the opening
   * balance, plus every STK payment taken and every paybill payment, less every
   * B2C sent (whatever became of their callbacks). Whole shillings.
   */
  const utilityBalance = (): number => {
    let total = o.openingBalance;
    for (const t of txs) {
      // What the customer really paid: the mismatch callback's amount is the true one.
      if (t.kind === "stk" && t.receipt) total += t.outcome === "amount_mismatch" ? t.amount - 1 : t.amount;
      if (t.kind === "b2c" && t.receipt) total -= t.amount;
    }
    for (const amount of paybillPaid.values()) total += amount;
    return total;
  };

  // Account Balance: accepted at once, the answer POSTed to ResultURL in the Result envelope,
  // the balances in one string ("Account|Currency|Current|Available|Reserved|Uncleared&...").
  const handleAccountBalance = (b: Record<string, unknown>, res: http.ServerResponse) => {
    if (b.Initiator !== o.initiatorName) return error(res, 400, "400.002.02", "Bad Request - Invalid Initiator");
    if (b.CommandID !== "AccountBalance") return error(res, 400, "400.002.02", "Bad Request - Invalid CommandID");
    if (String(b.PartyA ?? "") !== o.shortcode) return error(res, 400, "400.002.02", "Bad Request - Invalid PartyA");
    if (String(b.IdentifierType ?? "") !== "4") return error(res, 400, "400.002.02", "Bad Request - Invalid IdentifierType");
    if (typeof b.ResultURL !== "string" || typeof b.QueueTimeOutURL !== "string") return error(res, 400, "400.002.02", "Bad Request - Invalid ResultURL");
    const credentialOk = validCredential(b.SecurityCredential);
    const conversationId = `AG_${darajaTimestamp()}_${randomBytes(8).toString("hex")}`;
    const originator = randomUUID();
    const amount = (n: number) => n.toFixed(2);
    const utility = utilityBalance();
    const resultUrl = b.ResultURL;
    later(o.callbackDelayMs, () =>
      deliver(resultUrl, {
        Result: {
          ResultType: 0,
          ResultCode: credentialOk ? 0 : 2001,
          ResultDesc: credentialOk ? "The service request is processed successfully." : "The initiator information is invalid.",
          OriginatorConversationID: originator,
          ConversationID: conversationId,
          TransactionID: receipt(),
          ...(credentialOk
            ? {
                ResultParameters: {
                  ResultParameter: [
                    {
                      Key: "AccountBalance",
                      Value: `Working Account|KES|${amount(0)}|${amount(0)}|0.00|0.00&Utility Account|KES|${amount(utility)}|${amount(utility)}|0.00|0.00&Charges Paid Account|KES|0.00|0.00|0.00|0.00&Organization Settlement Account|KES|0.00|0.00|0.00|0.00`,
                    },
                    { Key: "BOCompletedTime", Value: Number(darajaTimestamp()) },
                  ],
                },
              }
            : {}),
          ReferenceData: { ReferenceItem: { Key: "QueueTimeoutURL", Value: "https://internalsandbox.safaricom.co.ke/mpesa/abresults/v1/submit" } },
        },
      }),
    );
    json(res, 200, { OriginatorConversationID: originator, ConversationID: conversationId, ResponseCode: "0", ResponseDescription: "Accept the service request successfully." });
  };

  const scriptFor = (phone: string, amount: number): Script =>
    scripts.get(`phone:${phone}`) ?? scripts.get(`amount:${amount}`) ?? PHONE_SUFFIX_SCRIPTS[phone.slice(-4)] ?? {};

  const later = (ms: number, fn: () => Promise<void>) => {
    const p = new Promise<void>((resolve) => setTimeout(resolve, ms)).then(() => (closed ? undefined : fn())).catch(() => undefined);
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  const deliver = async (url: string, body: unknown, tx?: SimTransaction) => {
    if (tx) tx.callbackSentAt = performance.timeOrigin + performance.now();
    await new Promise<void>((resolve) => {
      const target = new URL(url);
      const data = Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          path: `${target.pathname}${target.search}`,
          method: "POST",
          localAddress: o.callbackSourceAddress,
          headers: { "content-type": "application/json", "content-length": data.length },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (tx && res.statusCode && res.statusCode < 300) tx.callbacksSent++;
            resolve();
          });
        },
      );
      req.on("error", () => resolve());
      req.on("timeout", () => req.destroy());
      req.end(data);
    });
  };

  const error = (res: http.ServerResponse, status: number, errorCode: string, errorMessage: string) =>
    json(res, status, { requestId: `${randomBytes(4).toString("hex")}-sim`, errorCode, errorMessage });

  const authorised = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const until = m ? tokens.get(m[1]) : undefined;
    if (!until || until < Date.now()) {
      error(res, 401, "404.001.03", "Invalid Access Token");
      return false;
    }
    return true;
  };

  const validCredential = (b64: unknown): boolean => {
    try {
      // PKCS#1 v1.5 unpadded by hand: Node no longer offers it for private decryption.
      const raw = privateDecrypt({ key: SIMULATOR_PRIVATE_KEY_PEM, padding: constants.RSA_NO_PADDING }, Buffer.from(String(b64), "base64"));
      if (raw[0] !== 0 || raw[1] !== 2) return false;
      const sep = raw.indexOf(0, 2);
      return sep > 9 && raw.subarray(sep + 1).toString() === o.initiatorPassword;
    } catch {
      return false;
    }
  };

  const stkCallbackBody = (tx: SimTransaction, code: number, desc: string, amount = tx.amount) => ({
    Body: {
      stkCallback: {
        MerchantRequestID: tx.merchantRequestId,
        CheckoutRequestID: tx.checkoutRequestId,
        ResultCode: code,
        ResultDesc: desc,
        ...(code === 0
          ? {
              CallbackMetadata: {
                Item: [
                  { Name: "Amount", Value: amount },
                  { Name: "MpesaReceiptNumber", Value: tx.receipt },
                  { Name: "Balance" },
                  { Name: "TransactionDate", Value: Number(darajaTimestamp()) },
                  { Name: "PhoneNumber", Value: Number(tx.phone) },
                ],
              },
            }
          : {}),
      },
    },
  });

  const handleStkPush = (b: Record<string, unknown>, res: http.ServerResponse, sendResponse: () => void) => {
    const phone = String(b.PhoneNumber ?? "");
    const amount = Number(b.Amount);
    if (String(b.BusinessShortCode) !== o.shortcode) return error(res, 400, "400.002.02", "Bad Request - Invalid BusinessShortCode");
    if (b.Password !== stkPassword(o.shortcode, o.passkey, String(b.Timestamp)) || !/^\d{14}$/.test(String(b.Timestamp))) {
      return error(res, 400, "400.002.02", "Bad Request - Invalid Password");
    }
    if (!Number.isInteger(amount) || amount < 1 || amount > 250_000) return error(res, 400, "400.002.02", "Bad Request - Invalid Amount");
    if (!/^254[17]\d{8}$/.test(phone) || b.PartyA !== phone) return error(res, 400, "400.002.02", "Bad Request - Invalid PhoneNumber");
    if (typeof b.CallBackURL !== "string" || !/^https?:\/\//.test(b.CallBackURL)) return error(res, 400, "400.002.02", "Bad Request - Invalid CallBackURL");
    const script = scriptFor(phone, amount);
    const outcome = script.stk ?? "success";
    const failure = STK_RESULTS[outcome];
    const tx: SimTransaction = {
      kind: "stk",
      id: randomUUID(),
      phone,
      amount,
      outcome,
      resultCode: failure ? failure.code : 0,
      receipt: failure ? null : receipt(),
      checkoutRequestId: `ws_CO_${darajaTimestamp()}${randomBytes(6).toString("hex")}`,
      merchantRequestId: `${randomBytes(3).toString("hex")}-${randomBytes(4).toString("hex")}-1`,
      callbackUrl: b.CallBackURL,
      accountReference: String(b.AccountReference ?? ""),
      callbacksSent: 0,
      queries: 0,
      createdAt: new Date().toISOString(),
    };
    txs.push(tx);
    const delay = script.delayMs ?? o.callbackDelayMs;
    const body = failure ? stkCallbackBody(tx, failure.code, failure.desc) : stkCallbackBody(tx, 0, "The service request is processed successfully.");
    const echo = failure ? undefined : script.c2bEcho;
    const confirmByC2b = () => c2b.confirmStk({ receipt: tx.receipt!, amount: tx.amount, phone: tx.phone, accountReference: tx.accountReference ?? "" }).then(() => undefined);
    const send = async () => {
      if (echo === "before" || echo === "only") await confirmByC2b();
      if (echo !== "only") await deliver(tx.callbackUrl!, body, tx);
      if (echo === "after") await confirmByC2b();
    };
    switch (outcome) {
      case "lost":
        break;
      case "duplicate":
        later(delay, async () => {
          for (let i = 0; i < 3; i++) await send();
        });
        break;
      case "late":
        notYetFinal.add(tx.checkoutRequestId!);
        later(script.delayMs ?? o.lateDelayMs, async () => {
          notYetFinal.delete(tx.checkoutRequestId!);
          await send();
        });
        break;
      case "query_first":
        parked.set(tx.checkoutRequestId!, () => later(delay, send));
        break;
      case "amount_mismatch":
        later(delay, () => deliver(tx.callbackUrl!, stkCallbackBody(tx, 0, "The service request is processed successfully.", amount - 1), tx));
        break;
      case "early":
        // The callback overtakes the synchronous answer.
        return void send().then(() => sendAccepted());
      default:
        later(delay, send);
    }
    if (script.answerDelayMs) return void setTimeout(sendAccepted, script.answerDelayMs);
    sendAccepted();
    function sendAccepted() {
      json(res, 200, {
        MerchantRequestID: tx.merchantRequestId,
        CheckoutRequestID: tx.checkoutRequestId,
        ResponseCode: "0",
        ResponseDescription: "Success. Request accepted for processing",
        CustomerMessage: "Success. Request accepted for processing",
      });
      sendResponse();
    }
  };

  const handleStkQuery = (b: Record<string, unknown>, res: http.ServerResponse) => {
    if (b.Password !== stkPassword(o.shortcode, o.passkey, String(b.Timestamp))) return error(res, 400, "400.002.02", "Bad Request - Invalid Password");
    const tx = txs.find((t) => t.kind === "stk" && t.checkoutRequestId === b.CheckoutRequestID);
    if (!tx) return error(res, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    tx.queries++;
    if (notYetFinal.has(tx.checkoutRequestId!)) return error(res, 500, "500.001.1001", "The transaction is being processed");
    const failure = STK_RESULTS[tx.outcome];
    json(res, 200, {
      ResponseCode: "0",
      ResponseDescription: "The service request has been accepted successsfully",
      MerchantRequestID: tx.merchantRequestId,
      CheckoutRequestID: tx.checkoutRequestId,
      ResultCode: String(failure ? failure.code : 0),
      ResultDesc: failure ? failure.desc : "The service request is processed successfully.",
    });
    const release = parked.get(tx.checkoutRequestId!);
    if (release) {
      parked.delete(tx.checkoutRequestId!);
      release();
    }
  };

  const b2cResult = (tx: SimTransaction, code: number, desc: string) => ({
    Result: {
      ResultType: 0,
      ResultCode: code,
      ResultDesc: desc,
      OriginatorConversationID: tx.originatorConversationId,
      ConversationID: tx.conversationId,
      TransactionID: tx.receipt ?? "",
      ...(code === 0
        ? {
            ResultParameters: {
              ResultParameter: [
                { Key: "TransactionAmount", Value: tx.amount },
                { Key: "TransactionReceipt", Value: tx.receipt },
                { Key: "ReceiverPartyPublicName", Value: `${tx.phone} - SIMULATED CUSTOMER` },
                { Key: "TransactionCompletedDateTime", Value: "01.01.2026 12:00:00" },
                { Key: "B2CUtilityAccountAvailableFunds", Value: 1000000 },
                { Key: "B2CWorkingAccountAvailableFunds", Value: 1000000 },
                { Key: "B2CRecipientIsRegisteredCustomer", Value: "Y" },
                { Key: "B2CChargesPaidAccountAvailableFunds", Value: 0 },
              ],
            },
          }
        : {}),
      ReferenceData: { ReferenceItem: { Key: "QueueTimeoutURL", Value: "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit" } },
    },
  });

  const handleB2c = (b: Record<string, unknown>, res: http.ServerResponse) => {
    const phone = String(b.PartyB ?? "");
    const amount = Number(b.Amount);
    if (b.InitiatorName !== o.initiatorName) return error(res, 400, "400.002.02", "Bad Request - Invalid InitiatorName");
    if (!Number.isInteger(amount) || amount < 10 || amount > 250_000) return error(res, 400, "400.002.02", "Bad Request - Invalid Amount");
    if (!/^254[17]\d{8}$/.test(phone)) return error(res, 400, "400.002.02", "Bad Request - Invalid PartyB");
    if (typeof b.ResultURL !== "string" || typeof b.QueueTimeOutURL !== "string") return error(res, 400, "400.002.02", "Bad Request - Invalid ResultURL");
    const script = scriptFor(phone, amount);
    const credentialOk = validCredential(b.SecurityCredential);
    const outcome = credentialOk ? script.b2c ?? "success" : "failed";
    const executed = outcome === "success" || outcome === "slow_ack" || outcome === "lost_result";
    const tx: SimTransaction = {
      kind: "b2c",
      id: randomUUID(),
      phone,
      amount,
      outcome,
      resultCode: outcome === "queue_timeout" ? null : executed ? 0 : outcome === "insufficient_funds" ? 1 : 2001,
      receipt: executed ? receipt() : null,
      originatorConversationId: String(b.OriginatorConversationID || randomUUID()),
      conversationId: `AG_${darajaTimestamp()}_${randomBytes(8).toString("hex")}`,
      callbacksSent: 0,
      queries: 0,
      createdAt: new Date().toISOString(),
    };
    txs.push(tx);
    const delay = script.delayMs ?? o.callbackDelayMs;
    const answer = () =>
      json(res, 200, {
        ConversationID: tx.conversationId,
        OriginatorConversationID: tx.originatorConversationId,
        ResponseCode: "0",
        ResponseDescription: "Accept the service request successfully.",
      });
    switch (outcome) {
      case "success":
        later(delay, () => deliver(String(b.ResultURL), b2cResult(tx, 0, "The service request is processed successfully."), tx));
        return answer();
      case "failed":
        later(delay, () => deliver(String(b.ResultURL), b2cResult(tx, 2001, "The initiator information is invalid."), tx));
        return answer();
      case "insufficient_funds":
        later(delay, () => deliver(String(b.ResultURL), b2cResult(tx, 1, "The balance is insufficient for the transaction."), tx));
        return answer();
      case "queue_timeout":
        later(delay, () => deliver(String(b.QueueTimeOutURL), b2cResult(tx, 1, "The request timed out in the queue."), tx));
        return answer();
      case "lost_result":
        return answer();
      case "slow_ack":
        // Executed at once; the answer comes after the caller has given up, and the result is lost.
        return void setTimeout(() => (closed ? res.destroy() : answer()), script.delayMs ?? o.lateDelayMs);
    }
  };

  const handleStatus = (b: Record<string, unknown>, res: http.ServerResponse) => {
    if (!validCredential(b.SecurityCredential)) return error(res, 400, "400.002.02", "Bad Request - Invalid SecurityCredential");
    if (typeof b.ResultURL !== "string") return error(res, 400, "400.002.02", "Bad Request - Invalid ResultURL");
    const tx = txs.find(
      (t) =>
        t.kind === "b2c" &&
        ((b.TransactionID && t.receipt === b.TransactionID) || (b.OriginalConversationID && t.originatorConversationId === b.OriginalConversationID)),
    );
    if (tx) tx.queries++;
    const conversationId = `AG_${darajaTimestamp()}_${randomBytes(8).toString("hex")}`;
    const originator = randomUUID();
    const resultUrl = b.ResultURL;
    later(o.callbackDelayMs, () =>
      deliver(resultUrl, {
        Result: {
          ResultType: 0,
          ResultCode: tx ? 0 : 2032,
          ResultDesc: tx ? "The service request is processed successfully." : "Request to the resource has failed: transaction not found.",
          OriginatorConversationID: originator,
          ConversationID: conversationId,
          TransactionID: tx?.receipt ?? "",
          ResultParameters: {
            ResultParameter: tx
              ? [
                  { Key: "ReceiptNo", Value: tx.receipt ?? "" },
                  { Key: "TransactionStatus", Value: tx.resultCode === 0 ? "Completed" : "Failed" },
                  { Key: "ResultCode", Value: tx.resultCode ?? "" },
                  { Key: "Amount", Value: tx.amount },
                  { Key: "OriginatorConversationID", Value: tx.originatorConversationId },
                  { Key: "ConversationID", Value: tx.conversationId },
                  { Key: "CreditPartyName", Value: `${tx.phone} - SIMULATED CUSTOMER` },
                ]
              : [],
          },
          ReferenceData: { ReferenceItem: { Key: "Occasion" } },
        },
      }),
    );
    json(res, 200, { ConversationID: conversationId, OriginatorConversationID: originator, ResponseCode: "0", ResponseDescription: "Accept the service request successfully." });
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://sim");
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: Record<string, unknown> = {};
      if (chunks.length) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          return error(res, 400, "400.002.05", "Invalid Request Payload");
        }
      }
      if (req.method === "GET" && url.pathname === "/oauth/v1/generate") {
        const expected = `Basic ${Buffer.from(`${o.consumerKey}:${o.consumerSecret}`).toString("base64")}`;
        if (url.searchParams.get("grant_type") !== "client_credentials") return error(res, 400, "400.008.02", "Invalid grant type passed");
        if (req.headers.authorization !== expected) return error(res, 400, "400.008.01", "Invalid Authentication passed");
        const token = randomBytes(18).toString("base64url");
        tokens.set(token, Date.now() + o.tokenTtlSeconds * 1000);
        return json(res, 200, { access_token: token, expires_in: String(o.tokenTtlSeconds) });
      }
      if (req.method === "GET" && url.pathname === "/__sim/transactions") return json(res, 200, { transactions: txs });
      if (req.method === "GET" && url.pathname === "/__sim/c2b/registrations") return json(res, 200, { registrations: c2b.registrations() });
      if (req.method === "POST" && url.pathname === "/__sim/c2b/pay") {
        // A customer paying the paybill from their own menu (or a banking app scanning KE-QR).
        return void c2b.pay(body as unknown as C2bPayRequest).then((r) => json(res, 200, r), (err: Error) => error(res, 400, "400.002.02", err.message));
      }
      if (req.method === "POST" && url.pathname.startsWith("/mpesa/c2b/")) {
        if (authorised(req, res) && !c2b.handle(url.pathname, body, res)) error(res, 404, "404.001.04", "Invalid Resource URL");
        return;
      }
      if (req.method === "POST" && url.pathname === "/__sim/revoke-tokens") {
        // As when Safaricom invalidates tokens early: callers must fetch a new one.
        tokens.clear();
        return json(res, 200, {});
      }
      if (req.method === "POST" && url.pathname === "/__sim/script") {
        const key = body.phone ? `phone:${body.phone}` : `amount:${Number(body.amount)}`;
        scripts.set(key, body.script as Script);
        return json(res, 200, {});
      }
      if (req.method !== "POST") return error(res, 404, "404.001.04", "Invalid Resource URL");
      switch (url.pathname) {
        case "/mpesa/stkpush/v1/processrequest":
          if (authorised(req, res)) handleStkPush(body, res, () => undefined);
          return;
        case "/mpesa/stkpushquery/v1/query":
          if (authorised(req, res)) handleStkQuery(body, res);
          return;
        case "/mpesa/b2c/v1/paymentrequest":
        case "/mpesa/b2c/v3/paymentrequest":
          if (authorised(req, res)) handleB2c(body, res);
          return;
        case "/mpesa/transactionstatus/v1/query":
          if (authorised(req, res)) handleStatus(body, res);
          return;
        case "/mpesa/accountbalance/v1/query":
          if (authorised(req, res)) handleAccountBalance(body, res);
          return;
        default:
          return error(res, 404, "404.001.04", "Invalid Resource URL");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(o.port, o.host, resolve));
  const { port } = server.address() as AddressInfo;
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    options: o,
    certificateFile: SIMULATOR_CERTIFICATE_FILE,
    clientConfig: () => ({
      baseUrl: `http://${host}:${port}`,
      consumerKey: o.consumerKey,
      consumerSecret: o.consumerSecret,
      shortcode: o.shortcode,
      passkey: o.passkey,
      initiatorName: o.initiatorName,
      initiatorPassword: o.initiatorPassword,
      certificatePem: SIMULATOR_CERTIFICATE_PEM,
    }),
    transactions: () => structuredClone(txs),
    script: (key, script) => scripts.set(key.phone ? `phone:${key.phone}` : `amount:${key.amount}`, script),
    revokeTokens: () => tokens.clear(),
    c2b,
    idle: async () => {
      while (pending.size) await Promise.allSettled([...pending]);
    },
    close: async () => {
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...pending]);
    },
  };
}

function json(res: http.ServerResponse, status: number, body: unknown) {
  if (res.headersSent || res.destroyed) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

/** Looks like an M-Pesa receipt: 10 upper-case letters and digits. */
function receipt(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const bytes = randomBytes(9);
  return `S${[...bytes].map((b) => alphabet[b % alphabet.length]).join("")}`;
}
