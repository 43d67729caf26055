// The C2B half of the Daraja simulator: URL registration (v1 and v2) and the
// payments a customer makes from their own M-Pesa menu or a banking app,
// delivered to the registered URLs in Daraja's JSON: validation (when the
// short code has it), then confirmation. It also reports STK payments as C2B
// confirmations, before or after their STK callback, as M-Pesa does for a
// short code that has C2B URLs too.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { bannedUrlWord, darajaTimestamp } from "./client.js";

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
  /** Default: a random Safaricom number. Masked (v2) or hashed (v1) before it is sent. */
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

export function createC2bSim(o: C2bSimOptions): C2bSim {
  const registered = new Map<string, C2bRegistration>();

  const body = (p: { transId: string; type: string; amount: number; shortCode: string; billRef: string; msisdn: string; version: "v1" | "v2" }) => ({
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
  });

  return {
    handle(path, b, res) {
      const m = /^\/mpesa\/c2b\/(v1|v2)\/registerurl$/.exec(path);
      if (!m) return false;
      const shortCode = String(b.ShortCode ?? "");
      const bad = (what: string) => json(res, 400, { requestId: `${randomBytes(4).toString("hex")}-sim`, errorCode: "400.002.02", errorMessage: `Bad Request - Invalid ${what}` });
      if (shortCode !== o.shortcode) return bad("ShortCode"), true;
      if (b.ResponseType !== "Completed" && b.ResponseType !== "Cancelled") return bad("ResponseType"), true;
      for (const key of ["ConfirmationURL", "ValidationURL"] as const) {
        const url = b[key];
        if (typeof url !== "string" || !/^https?:\/\/[^/]+/.test(url) || bannedUrlWord(url)) return bad(key), true;
      }
      registered.set(shortCode, {
        shortCode,
        version: m[1] as "v1" | "v2",
        responseType: b.ResponseType,
        confirmationUrl: String(b.ConfirmationURL),
        validationUrl: String(b.ValidationURL),
        registeredAt: new Date().toISOString(),
      });
      json(res, 200, { OriginatorCoversationID: `${randomBytes(4).toString("hex")}-sim`, ResponseCode: "0", ResponseDescription: "Success" });
      return true;
    },

    async pay(req) {
      const shortCode = req.shortCode ?? o.shortcode;
      const reg = registered.get(shortCode);
      if (!reg) throw new Error(`no C2B URLs registered for short code ${shortCode}`);
      const transId = req.transId ?? receipt();
      const payload = body({
        transId, type: req.transactionType ?? "Pay Bill", amount: req.amount, shortCode, billRef: req.billRefNumber,
        msisdn: req.msisdn ?? `2547${String(Math.floor(Math.random() * 1e8)).padStart(8, "0")}`, version: reg.version,
      });
      let validation: C2bPayResult["validation"] = { skipped: "the short code has no external validation" };
      let completed = true;
      if (o.validation !== false && !req.skipValidation) {
        const started = performance.now();
        const answer = await post(reg.validationUrl, payload, o.sourceAddress, o.validationTimeoutMs ?? 8_000);
        const ms = Math.round(performance.now() - started);
        if (!answer) {
          // No answer in time: the registered ResponseType decides.
          validation = { skipped: `no answer within ${o.validationTimeoutMs ?? 8_000} ms; ResponseType ${reg.responseType}` };
          completed = reg.responseType === "Completed";
        } else {
          const code = String((answer.body as { ResultCode?: unknown })?.ResultCode ?? "");
          validation = { resultCode: code, resultDesc: String((answer.body as { ResultDesc?: unknown })?.ResultDesc ?? ""), ms };
          completed = code === "0";
        }
      }
      let sent = 0;
      if (completed) o.onPaid?.({ transId, amount: req.amount });
      if (completed) {
        for (let i = 0; i < (req.confirmations ?? 1); i++) {
          const answer = await post(reg.confirmationUrl, payload, o.sourceAddress, 10_000);
          if (answer && answer.status < 300) sent++;
        }
      }
      return { transId, validation, completed, confirmationsSent: sent };
    },

    async confirmStk(p) {
      const reg = registered.get(o.shortcode);
      if (!reg) return false;
      const payload = body({ transId: p.receipt, type: "CustomerPayBillOnline", amount: p.amount, shortCode: o.shortcode, billRef: p.accountReference, msisdn: p.phone, version: reg.version });
      const answer = await post(reg.confirmationUrl, payload, o.sourceAddress, 10_000);
      return Boolean(answer && answer.status < 300);
    },

    registrations: () => [...registered.values()],
  };
}

/** POSTs JSON from `localAddress`; the answer, or undefined on no answer within `timeoutMs`. */
function post(url: string, payload: unknown, localAddress: string, timeoutMs: number): Promise<{ status: number; body: unknown } | undefined> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const data = Buffer.from(JSON.stringify(payload));
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname, method: "POST", localAddress, timeout: timeoutMs,
        headers: { "content-type": "application/json", "content-length": data.length } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: kept as text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end(data);
  });
}

function json(res: http.ServerResponse, status: number, body: unknown) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

/** Looks like an M-Pesa receipt: 10 upper-case letters and digits. */
function receipt(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return `T${[...randomBytes(9)].map((b) => alphabet[b % alphabet.length]).join("")}`;
}
