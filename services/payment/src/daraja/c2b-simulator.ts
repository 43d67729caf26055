// The C2B half of the Daraja simulator: URL registration (v1 and v2) and the
// payments a customer makes from their own M-Pesa menu or a banking app,
// delivered to the registered URLs in Daraja's JSON: validation (when the
// short code has it), then confirmation. It also reports STK payments as C2B
// confirmations, before or after their STK callback, as M-Pesa does for a
// short code that has C2B URLs too.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { postJson, sendJson } from "../simulator-http.js";
import { bannedUrlWord, darajaTimestamp } from "./client.js";
import { badRequest, mpesaReceipt } from "./simulator-replies.js";

export interface C2bRegistration {
  shortCode: string;
  version: "v1" | "v2";
  responseType: "Completed" | "Cancelled";
  confirmationUrl: string;
  validationUrl: string;
  registeredAt: string;
}

export interface C2bPayRequest {
  /** Default: the simulator's short code. */
  shortCode?: string;
  /** The account reference the customer typed. */
  billRefNumber: string;
  /** Whole shillings. */
  amount: number;
  /** Default: DEFAULT_C2B_PAYER. Masked (v2) or hashed (v1) before it is sent. */
  msisdn?: string;
  /** Default: a new receipt. Give an old one to replay a payment. */
  transId?: string;
  transactionType?: "Pay Bill" | "Buy Goods" | "CustomerPayBillOnline";
  /** Confirmations sent (default 1; 2 or more = M-Pesa's duplicates). */
  confirmations?: number;
  /** Skip validation even when the short code has it. */
  skipValidation?: boolean;
}

export interface C2bPayResult {
  transId: string;
  /** What validation answered ("0" accepted), or why it was skipped. */
  validation: { resultCode: string; resultDesc: string; ms: number } | { skipped: string };
  /** Whether M-Pesa completed the payment (the customer was charged). */
  completed: boolean;
  confirmationsSent: number;
}

export interface C2bSimOptions {
  shortcode: string;
  sourceAddress: string;
  /** Does the short code have external validation (Safaricom enables it on request)? Default true. */
  validation?: boolean;
  /** Safaricom waits about 8 s for the validation answer. */
  validationTimeoutMs?: number;
  /** Told of each completed paybill payment (the short code's balance grows by it). */
  onPaid?: (p: { transId: string; amount: number }) => void;
}

export interface C2bSim {
  /** Serves /mpesa/c2b/{v1,v2}/registerurl; false when the path is not C2B's. */
  handle(path: string, body: Record<string, unknown>, res: http.ServerResponse): boolean;
  pay(req: C2bPayRequest): Promise<C2bPayResult>;
  /** An STK payment reported as a C2B confirmation too (no validation: the customer already paid). */
  confirmStk(p: { receipt: string; amount: number; phone: string; accountReference: string }): Promise<boolean>;
  registrations(): C2bRegistration[];
}

type Registered = Map<string, C2bRegistration>;

interface C2bParty {
  transId: string;
  type: string;
  amount: number;
  shortCode: string;
  billRef: string;
  msisdn: string;
  version: "v1" | "v2";
}

/** What Daraja POSTs to the validation and confirmation URLs. */
function c2bBody(p: C2bParty) {
  return {
    TransactionType: p.type,
    TransID: p.transId,
    TransTime: darajaTimestamp(),
    // A string, as Daraja sends it.
    TransAmount: p.amount.toFixed(2),
    BusinessShortCode: p.shortCode,
    BillRefNumber: p.billRef,
    InvoiceNumber: "",
    OrgAccountBalance: "",
    ThirdPartyTransID: "",
    MSISDN: p.version === "v2" ? `${p.msisdn.slice(0, 4)} ***** ${p.msisdn.slice(-3)}` : createHash("sha256").update(p.msisdn).digest("hex"),
    FirstName: "SIMULATED",
    MiddleName: "",
    LastName: "CUSTOMER",
  };
}

/** POST /mpesa/c2b/{v1,v2}/registerurl; false when the path is not C2B's. */
function registerUrls(o: C2bSimOptions, registered: Registered, path: string, b: Record<string, unknown>, res: http.ServerResponse): boolean {
  const m = /^\/mpesa\/c2b\/(v1|v2)\/registerurl$/.exec(path);
  if (!m) return false;
  const shortCode = String(b.ShortCode ?? "");
  if (shortCode !== o.shortcode) return badRequest(res, "ShortCode"), true;
  if (b.ResponseType !== "Completed" && b.ResponseType !== "Cancelled") return badRequest(res, "ResponseType"), true;
  for (const key of ["ConfirmationURL", "ValidationURL"] as const) {
    const url = b[key];
    if (typeof url !== "string" || !/^https?:\/\/[^/]+/.test(url) || bannedUrlWord(url)) return badRequest(res, key), true;
  }
  registered.set(shortCode, {
    shortCode,
    version: m[1] as "v1" | "v2",
    responseType: b.ResponseType,
    confirmationUrl: String(b.ConfirmationURL),
    validationUrl: String(b.ValidationURL),
    registeredAt: new Date().toISOString(),
  });
  sendJson(res, 200, { OriginatorCoversationID: `${randomBytes(4).toString("hex")}-sim`, ResponseCode: "0", ResponseDescription: "Success" });
  return true;
}

/** Asks the validation URL (when the short code has validation): did the integrator accept the payment? */
async function validate(o: C2bSimOptions, reg: C2bRegistration, payload: unknown, skip: boolean): Promise<Pick<C2bPayResult, "validation" | "completed">> {
  if (o.validation === false || skip) return { validation: { skipped: "the short code has no external validation" }, completed: true };
  const timeoutMs = o.validationTimeoutMs ?? 8_000;
  const started = performance.now();
  const answer = await postJson(reg.validationUrl, payload, { localAddress: o.sourceAddress, timeoutMs });
  const ms = Math.round(performance.now() - started);
  if (!answer) {
    // No answer in time: the registered ResponseType decides.
    return { validation: { skipped: `no answer within ${timeoutMs} ms; ResponseType ${reg.responseType}` }, completed: reg.responseType === "Completed" };
  }
  const reply = answer.body as { ResultCode?: unknown; ResultDesc?: unknown } | undefined;
  const code = String(reply?.ResultCode ?? "");
  return { validation: { resultCode: code, resultDesc: String(reply?.ResultDesc ?? ""), ms }, completed: code === "0" };
}

/** POSTs a confirmation; true when the integrator answered 2xx. */
async function confirm(o: C2bSimOptions, reg: C2bRegistration, payload: unknown): Promise<boolean> {
  const answer = await postJson(reg.confirmationUrl, payload, { localAddress: o.sourceAddress, timeoutMs: 10_000 });
  return Boolean(answer && answer.status < 300);
}

/**
 * Who pays when a request names no payer: one number, and none a tip can have (a tip's is a Kenyan mobile, 2547 or
 * 2541), masked "2540 ***** 000" or hashed. A payment naming nothing is tied to a tip an STK query reported paid when
 * the payer fits the tip's number (receiptless.ts): a random Safaricom number fitted some earlier test's tip by its
 * last three digits now and then, and that test's payment was taken as the tip's instead of parked.
 */
export const DEFAULT_C2B_PAYER = "254000000000";

/** A customer pays the paybill: validation, then (when completed) the confirmations. */
async function pay(o: C2bSimOptions, registered: Registered, req: C2bPayRequest): Promise<C2bPayResult> {
  // Read from a JSON body typed by hand: say which field is wrong, not a TypeError from inside.
  if (typeof req.amount !== "number" || !Number.isFinite(req.amount) || req.amount < 0) {
    throw new Error(`amount: a number of shillings, e.g. "amount": 100 (got ${JSON.stringify(req.amount) ?? "nothing"})`);
  }
  if (req.billRefNumber !== undefined && typeof req.billRefNumber !== "string") {
    throw new Error(`billRefNumber: the account reference as text, e.g. "billRefNumber": "AB12CD" (got ${JSON.stringify(req.billRefNumber)})`);
  }
  const shortCode = req.shortCode ?? o.shortcode;
  const reg = registered.get(shortCode);
  if (!reg) throw new Error(`no C2B URLs registered for short code ${shortCode}`);
  const transId = req.transId ?? mpesaReceipt("T");
  const payload = c2bBody({
    transId, type: req.transactionType ?? "Pay Bill", amount: req.amount, shortCode, billRef: req.billRefNumber,
    msisdn: req.msisdn ?? DEFAULT_C2B_PAYER, version: reg.version,
  });
  const { validation, completed } = await validate(o, reg, payload, Boolean(req.skipValidation));
  let sent = 0;
  if (completed) {
    o.onPaid?.({ transId, amount: req.amount });
    for (let i = 0; i < (req.confirmations ?? 1); i++) if (await confirm(o, reg, payload)) sent++;
  }
  return { transId, validation, completed, confirmationsSent: sent };
}

export function createC2bSim(o: C2bSimOptions): C2bSim {
  const registered: Registered = new Map();
  return {
    handle: (path, b, res) => registerUrls(o, registered, path, b, res),
    pay: (req) => pay(o, registered, req),
    async confirmStk(p) {
      const reg = registered.get(o.shortcode);
      if (!reg) return false;
      return confirm(o, reg, c2bBody({ transId: p.receipt, type: "CustomerPayBillOnline", amount: p.amount, shortCode: o.shortcode, billRef: p.accountReference, msisdn: p.phone, version: reg.version }));
    },
    registrations: () => [...registered.values()],
  };
}
