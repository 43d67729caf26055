// A typed client for Safaricom's Daraja API. The same code talks to the
// simulator in this folder and to Safaricom; only the base URL and
// credentials change.
import { X509Certificate, constants, publicEncrypt } from "node:crypto";
import { HTTP_NOT_SENT, httpRequest, systemClock, type Clock, type HttpCall, type HttpReply } from "@ttip/runtime";
import { MPESA_LIMITS } from "@ttip/runtime/mpesa-limits";

export interface DarajaConfig {
  /** e.g. https://api.safaricom.co.ke, or the simulator's URL. */
  baseUrl: string;
  consumerKey: string;
  consumerSecret: string;
  /** Paybill or till that receives STK payments. */
  shortcode: string;
  passkey: string;
  /** CustomerPayBillOnline (paybill) or CustomerBuyGoodsOnline (till). */
  transactionType?: "CustomerPayBillOnline" | "CustomerBuyGoodsOnline";
  /** B2C: the shortcode that pays out, the initiator and its password. */
  b2cShortcode?: string;
  initiatorName?: string;
  initiatorPassword?: string;
  /** Safaricom's public certificate (PEM) that encrypts the initiator password. */
  certificatePem?: string;
  /** Per request. */
  timeoutMs?: number;
  /** How requests are sent; tests put a counter or a fake provider in between. */
  request?: (url: URL, call: HttpCall) => Promise<HttpReply>;
}

/**
 * Why a Daraja call did not succeed:
 * - "rejected": Daraja answered with an error; nothing was started.
 * - "processing": STK query only; the customer has not answered yet.
 * - "unknown": no answer (timeout, connection lost) or none that says (a 2xx not
 *   Daraja's JSON, without a ResponseCode, or accepted but incomplete); the request
 *   may or may not have been acted on, so it must be resolved by a query, never re-sent.
 * - "unavailable": the request never left (no token, Daraja asked us to slow down, no
 *   connection made before the request was written): safe to try later.
 */
export type DarajaErrorKind = "rejected" | "processing" | "unknown" | "unavailable";

export class DarajaError extends Error {
  constructor(
    readonly kind: DarajaErrorKind,
    message: string,
    readonly details: { httpStatus?: number; errorCode?: string; requestId?: string; path?: string } = {},
  ) {
    super(message);
    this.name = "DarajaError";
  }
}

export interface StkPushRequest {
  /** 254XXXXXXXXX */
  phone: string;
  /** Whole shillings. */
  amount: number;
  callbackUrl: string;
  /** Up to 12 characters. */
  accountReference: string;
  /** Up to 13 characters. */
  description: string;
}
export interface StkPushResponse {
  MerchantRequestID: string;
  CheckoutRequestID: string;
  ResponseCode: string;
  ResponseDescription: string;
  CustomerMessage: string;
}
export interface StkQueryResponse {
  ResponseCode: string;
  ResponseDescription: string;
  MerchantRequestID: string;
  CheckoutRequestID: string;
  ResultCode: string;
  ResultDesc: string;
}
export interface B2cRequest {
  /** Our id for the payout; Daraja echoes it in the result (v3 path semantics). */
  originatorConversationId: string;
  phone: string;
  amount: number;
  remarks: string;
  occasion?: string;
  resultUrl: string;
  queueTimeoutUrl: string;
  commandId?: "BusinessPayment" | "SalaryPayment" | "PromotionPayment";
}
export interface B2cResponse {
  ConversationID: string;
  OriginatorConversationID: string;
  ResponseCode: string;
  ResponseDescription: string;
}
export interface TransactionStatusRequest {
  /** The M-Pesa receipt, when known. */
  transactionId?: string;
  /** Or the OriginatorConversationID of the request being looked up. */
  originalConversationId?: string;
  resultUrl: string;
  queueTimeoutUrl: string;
  remarks?: string;
}
export interface AccountBalanceRequest {
  resultUrl: string;
  queueTimeoutUrl: string;
  remarks?: string;
}

export interface ReversalRequest {
  /** The M-Pesa receipt of the payment to give back. */
  transactionId: string;
  /** Whole shillings: the payment's amount (M-Pesa reverses a payment whole). */
  amount: number;
  resultUrl: string;
  queueTimeoutUrl: string;
  remarks: string;
}

export interface TransactionStatusResponse {
  ConversationID: string;
  OriginatorConversationID: string;
  ResponseCode: string;
  ResponseDescription: string;
}

export interface C2bRegisterRequest {
  version: "v1" | "v2";
  shortCode: string;
  /** What M-Pesa does when the validation URL does not answer in time. */
  responseType: "Completed" | "Cancelled";
  confirmationUrl: string;
  validationUrl: string;
}
export interface C2bRegisterResponse {
  /** Spelled so by Daraja. */
  OriginatorCoversationID?: string;
  ResponseCode: string;
  ResponseDescription: string;
}

/**
 * Transaction Status's answer "transaction not found": the one ResultCode that says M-Pesa has no
 * record of what was asked about. Any other failure is the query's own (an invalid initiator or
 * party, a system error) and says nothing of the transaction.
 */
export const TRANSACTION_NOT_FOUND = "2032";

/** The least a B2C may pay (the runtime's MPESA_LIMITS.payoutMinMinor says why), and in whole shillings. */
export const B2C_MIN_MINOR = MPESA_LIMITS.payoutMinMinor;
export const B2C_MIN_KES = Number(B2C_MIN_MINOR / 100n);

/**
 * Words Safaricom refuses anywhere in a registered URL, in any case (its
 * portal; "mpesa" without the dash is refused by integrators' reports too).
 */
export const BANNED_URL_WORDS = ["m-pesa", "mpesa", "safaricom", "exec", "exe", "cmd", "sql", "query"];

/** The first banned word in `url`, or undefined. */
export function bannedUrlWord(url: string): string | undefined {
  const lower = url.toLowerCase();
  return BANNED_URL_WORDS.find((w) => lower.includes(w));
}

/** YYYYMMDDHHmmss in East Africa Time (UTC+3, no daylight saving), as Daraja wants. */
export function darajaTimestamp(at = new Date()): string {
  const eat = new Date(at.getTime() + 3 * 3600_000);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${eat.getUTCFullYear()}${p(eat.getUTCMonth() + 1)}${p(eat.getUTCDate())}${p(eat.getUTCHours())}${p(eat.getUTCMinutes())}${p(eat.getUTCSeconds())}`;
}

/** base64(shortcode + passkey + timestamp): the STK push and query password. */
export function stkPassword(shortcode: string, passkey: string, timestamp: string): string {
  return Buffer.from(`${shortcode}${passkey}${timestamp}`).toString("base64");
}

/** The initiator password encrypted with Safaricom's certificate: RSA PKCS#1 v1.5, base64. */
export function securityCredential(initiatorPassword: string, certificatePem: string): string {
  const key = new X509Certificate(certificatePem).publicKey;
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(initiatorPassword)).toString("base64");
}

const INVALID_TOKEN = new Set(["404.001.03", "404.001.01"]);
const STILL_PROCESSING = "500.001.1001";
/** Spike arrest (too many requests a second) and quota violation: Daraja ran nothing and wants us slower. */
const SLOW_DOWN = new Set(["500.003.02", "500.003.03"]);
const MAX_BACKOFF_MS = 60_000;

/** Daraja's refusal with a server error (5xx) of a request that moves money: it does not say that none moved, so it is in doubt. */
function serverErrorInDoubt(err: unknown): never {
  if (err instanceof DarajaError && err.kind === "rejected" && (err.details.httpStatus ?? 0) >= 500) throw new DarajaError("unknown", err.message, err.details);
  throw err;
}

export class DarajaClient {
  private token: { value: string; refreshAt: number; expiresAt: number } | undefined;
  private tokenRequest: Promise<string> | undefined;
  private readonly timeoutMs: number;
  /** Backoff after Daraja's spike arrest or quota errors: no call before backoffUntil. */
  private backoffMs = 0;
  private backoffUntil = 0;
  private readonly request: (url: URL, call: HttpCall) => Promise<HttpReply>;
  /** Each API path's URL, parsed once (a handful of paths; the client only reads them). */
  private readonly urls = new Map<string, URL>();

  /** `clock` times the token's refresh and the slow-down pause (a test moves it instead of sleeping). */
  constructor(
    private readonly config: DarajaConfig,
    private readonly clock: Clock = systemClock,
  ) {
    this.timeoutMs = config.timeoutMs ?? 15_000;
    this.request = config.request ?? httpRequest;
  }

  get shortcode(): string {
    return this.config.shortcode;
  }

  /** A cached OAuth token, refreshed well before it expires; concurrent callers share one request. */
  async accessToken(): Promise<string> {
    const now = this.clock.now();
    if (this.token && now < this.token.refreshAt) return this.token.value;
    if (!this.tokenRequest) {
      this.tokenRequest = this.fetchToken().finally(() => (this.tokenRequest = undefined));
    }
    try {
      return await this.tokenRequest;
    } catch (err) {
      // A token that has not yet expired is still good while Daraja's OAuth is down.
      if (this.token && now < this.token.expiresAt) return this.token.value;
      throw err;
    }
  }

  private async fetchToken(): Promise<string> {
    const basic = Buffer.from(`${this.config.consumerKey}:${this.config.consumerSecret}`).toString("base64");
    let lastError: unknown;
    // Fetching a token moves no money: safe to retry.
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt) await sleep(200 * 2 ** attempt);
      try {
        const body = await this.send("GET", "/oauth/v1/generate?grant_type=client_credentials", undefined, `Basic ${basic}`);
        const value = String(body.access_token ?? "");
        const seconds = Number(body.expires_in);
        if (!value || !Number.isFinite(seconds) || seconds <= 0) {
          throw new DarajaError("rejected", "Daraja OAuth answered without access_token/expires_in");
        }
        const now = this.clock.now();
        // Refresh at 90% of the lifetime, and at least a minute early when it is long.
        const margin = Math.max(seconds * 100, Math.min(60_000, seconds * 500));
        this.token = { value, expiresAt: now + seconds * 1000, refreshAt: now + seconds * 1000 - margin };
        return value;
      } catch (err) {
        lastError = err;
        if (err instanceof DarajaError && err.kind === "rejected" && err.details.httpStatus && err.details.httpStatus < 500) break;
      }
    }
    const e = lastError instanceof DarajaError ? lastError : new DarajaError("unavailable", String(lastError));
    throw new DarajaError("unavailable", `Daraja OAuth failed: ${e.message}`, e.details);
  }

  /** The shortcode, password and time an STK push and an STK query are signed with (the password is good for that time). */
  private stkSignature() {
    const timestamp = darajaTimestamp();
    return {
      BusinessShortCode: this.config.shortcode,
      Password: stkPassword(this.config.shortcode, this.config.passkey, timestamp),
      Timestamp: timestamp,
    };
  }

  /** Starts an STK push. Never retried: a second push could charge the customer twice. */
  async stkPush(req: StkPushRequest): Promise<StkPushResponse> {
    const body = await this.call("/mpesa/stkpush/v1/processrequest", {
      ...this.stkSignature(),
      TransactionType: this.config.transactionType ?? "CustomerPayBillOnline",
      Amount: req.amount,
      PartyA: req.phone,
      PartyB: this.config.shortcode,
      PhoneNumber: req.phone,
      CallBackURL: req.callbackUrl,
      AccountReference: req.accountReference.slice(0, 12),
      TransactionDesc: req.description.slice(0, 13),
    }, { retries: 0 });
    return expectAccepted<StkPushResponse>(body, ["MerchantRequestID", "CheckoutRequestID"], "STK push");
  }

  /**
   * The outcome of an STK push. A push the customer has not answered yet
   * throws DarajaError "processing". Read-only, so retried on no answer.
   */
  async stkQuery(checkoutRequestId: string): Promise<StkQueryResponse> {
    const body = await this.call("/mpesa/stkpushquery/v1/query", {
      ...this.stkSignature(),
      CheckoutRequestID: checkoutRequestId,
    }, { retries: 2 });
    const r = expectAccepted<StkQueryResponse>(body, ["CheckoutRequestID"], "STK query");
    // No code, or a blank one (Daraja documents none): nothing final was said, so the push is asked about again later.
    // Read as a code, "" is not "0": the tip failed though the customer may have paid.
    if (r.ResultCode === undefined || r.ResultCode === null || String(r.ResultCode).trim() === "") throw new DarajaError("unknown", "STK query answered without ResultCode");
    return { ...r, ResultCode: String(r.ResultCode) };
  }

  /**
   * Sends money to a phone. Never retried: an unanswered request is settled by transactionStatus. Daraja's refusal
   * with a server error (5xx: "Duplicate OriginatorConversationID", a B2C under this id exists; a failure past its
   * gateway) does not say that no money moved: it is in doubt ("unknown"), settled by transactionStatus too.
   */
  async b2c(req: B2cRequest): Promise<B2cResponse> {
    const body = await this.b2cCall(req).catch(serverErrorInDoubt);
    return expectAccepted<B2cResponse>(body, ["ConversationID"], "B2C");
  }

  private b2cCall(req: B2cRequest): Promise<Record<string, unknown>> {
    return this.call("/mpesa/b2c/v3/paymentrequest", {
      OriginatorConversationID: req.originatorConversationId,
      InitiatorName: this.requireB2c("initiatorName"),
      SecurityCredential: this.credential(),
      CommandID: req.commandId ?? "BusinessPayment",
      Amount: req.amount,
      PartyA: this.config.b2cShortcode ?? this.config.shortcode,
      PartyB: req.phone,
      Remarks: req.remarks.slice(0, 100),
      QueueTimeOutURL: req.queueTimeoutUrl,
      ResultURL: req.resultUrl,
      // Spelled so in the B2C request (Transaction Status spells it Occasion).
      Occassion: (req.occasion ?? "").slice(0, 100),
    }, { retries: 0 });
  }

  /** Asks what became of a transaction; the answer arrives at resultUrl. Safe to repeat. */
  async transactionStatus(req: TransactionStatusRequest): Promise<TransactionStatusResponse> {
    if (!req.transactionId && !req.originalConversationId) throw new Error("transactionStatus needs a transaction id or a conversation id");
    const body = await this.call("/mpesa/transactionstatus/v1/query", {
      Initiator: this.requireB2c("initiatorName"),
      SecurityCredential: this.credential(),
      CommandID: "TransactionStatusQuery",
      TransactionID: req.transactionId ?? "",
      OriginalConversationID: req.originalConversationId ?? "",
      PartyA: this.config.b2cShortcode ?? this.config.shortcode,
      IdentifierType: "4",
      ResultURL: req.resultUrl,
      QueueTimeOutURL: req.queueTimeoutUrl,
      Remarks: (req.remarks ?? "status").slice(0, 100),
      Occasion: "",
    }, { retries: 2 });
    return expectAccepted<TransactionStatusResponse>(body, ["ConversationID"], "transaction status");
  }

  /**
   * Asks M-Pesa to give a payment to our short code back to its payer; the result arrives at resultUrl. Never
   * retried, as a B2C: a second request for the same payment is refused ("already reversed"), and that refusal,
   * read as the first's, would hide a reversal made. 5xx answers are in doubt ("unknown") as the B2C's are.
   */
  async reversal(req: ReversalRequest): Promise<TransactionStatusResponse> {
    const body = await this.call("/mpesa/reversal/v1/request", {
      Initiator: this.requireB2c("initiatorName"),
      SecurityCredential: this.credential(),
      CommandID: "TransactionReversal",
      TransactionID: req.transactionId,
      Amount: String(req.amount),
      ReceiverParty: this.config.shortcode,
      // Spelled so by Daraja; 11 names the receiving party as an organisation's short code.
      RecieverIdentifierType: "11",
      ResultURL: req.resultUrl,
      QueueTimeOutURL: req.queueTimeoutUrl,
      Remarks: req.remarks.slice(0, 100),
      Occasion: "",
    }, { retries: 0 }).catch(serverErrorInDoubt);
    return expectAccepted<TransactionStatusResponse>(body, ["ConversationID"], "reversal");
  }

  /** Asks for the short code's account balances; the answer arrives at resultUrl. Safe to repeat. */
  async accountBalance(req: AccountBalanceRequest): Promise<TransactionStatusResponse> {
    const body = await this.call("/mpesa/accountbalance/v1/query", {
      Initiator: this.requireB2c("initiatorName"),
      SecurityCredential: this.credential(),
      CommandID: "AccountBalance",
      PartyA: this.config.shortcode,
      IdentifierType: "4",
      Remarks: (req.remarks ?? "balance").slice(0, 100),
      QueueTimeOutURL: req.queueTimeoutUrl,
      ResultURL: req.resultUrl,
    }, { retries: 2 });
    return expectAccepted<TransactionStatusResponse>(body, ["ConversationID"], "account balance");
  }

  /**
   * Registers the paybill's or till's C2B validation and confirmation URLs
   * (v1 or v2; v2 confirmations carry a masked MSISDN, v1 a hashed one).
   * One-time in production; re-registering the same URLs is harmless.
   */
  async registerC2bUrls(req: C2bRegisterRequest): Promise<C2bRegisterResponse> {
    for (const url of [req.confirmationUrl, req.validationUrl]) {
      const banned = bannedUrlWord(url);
      if (banned) throw new DarajaError("rejected", `C2B URL ${url} contains "${banned}", which Safaricom refuses in registered URLs`);
    }
    const body = await this.call(`/mpesa/c2b/${req.version}/registerurl`, {
      ShortCode: req.shortCode,
      ResponseType: req.responseType,
      ConfirmationURL: req.confirmationUrl,
      ValidationURL: req.validationUrl,
    }, { retries: 2 });
    return expectAccepted<C2bRegisterResponse>(body, [], "C2B URL registration");
  }

  private requireB2c(key: "initiatorName" | "initiatorPassword" | "certificatePem"): string {
    const v = this.config[key];
    if (!v) throw new DarajaError("unavailable", `Daraja B2C is not configured (${key} missing)`);
    return v;
  }

  private credential(): string {
    return securityCredential(this.requireB2c("initiatorPassword"), this.requireB2c("certificatePem"));
  }

  /** An authenticated POST; an expired token is replaced once (Daraja refused it, so nothing ran). */
  private async call(path: string, payload: unknown, opts: { retries: number }): Promise<Record<string, unknown>> {
    let refreshedToken = false;
    for (let attempt = 0; ; attempt++) {
      // While Daraja asks us to slow down, nothing is sent: the caller hears "unavailable" (nothing ran).
      const wait = this.backoffUntil - this.clock.now();
      if (wait > 0) {
        throw new DarajaError("unavailable", `Daraja asked for fewer requests; not calling for another ${Math.ceil(wait / 1000)} s`, { path });
      }
      const token = await this.accessToken();
      try {
        const body = await this.send("POST", path, payload, `Bearer ${token}`);
        this.backoffMs = 0;
        return body;
      } catch (err) {
        if (!(err instanceof DarajaError)) throw err;
        if (SLOW_DOWN.has(err.details.errorCode ?? "")) {
          // Doubling pauses, shared by every call of this client, from 1 s up to a minute.
          this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(1_000, this.backoffMs * 2));
          this.backoffUntil = this.clock.now() + this.backoffMs;
          throw new DarajaError("unavailable", err.message, err.details);
        }
        if (err.kind === "rejected" && (err.details.httpStatus === 401 || INVALID_TOKEN.has(err.details.errorCode ?? "")) && !refreshedToken) {
          refreshedToken = true;
          this.token = undefined;
          attempt--;
          continue;
        }
        // A call that may be repeated (a query), unanswered or not sent: asked again after a pause.
        if ((err.kind === "unknown" || err.kind === "unavailable") && attempt < opts.retries) {
          await sleep(200 * 2 ** attempt);
          continue;
        }
        throw err;
      }
    }
  }

  private url(path: string): URL {
    let url = this.urls.get(path);
    if (!url) this.urls.set(path, (url = new URL(path, this.config.baseUrl)));
    return url;
  }

  private async send(method: "GET" | "POST", path: string, payload: unknown, authorization: string): Promise<Record<string, unknown>> {
    let res: HttpReply;
    try {
      // Never sent again on a new connection here: a reset kept connection may
      // still have carried an STK push or a B2C to Daraja. call() decides.
      res = await this.request(this.url(path), {
        method,
        headers: { authorization, ...(payload === undefined ? {} : { "content-type": "application/json" }) },
        body: payload === undefined ? undefined : JSON.stringify(payload),
        timeoutMs: this.timeoutMs,
      });
    } catch (err) {
      const { message, code } = err as Error & { code?: string };
      // Failed before a byte was written (refused, no route, no connection in time): Daraja has nothing, safe to try later.
      if (HTTP_NOT_SENT.has(code ?? "")) throw new DarajaError("unavailable", `Daraja ${path}: not sent (${code}: ${message})`, { path });
      // Otherwise the request may have reached Daraja: its outcome is unknown.
      throw new DarajaError("unknown", `Daraja ${path}: ${message}`, { path });
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new DarajaError("unknown", `Daraja ${path}: answer cut off (${(err as Error).message})`, { path, httpStatus: res.status });
    }
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = text ? JSON.parse(text) : {};
      // Daraja answers an object: JSON that is not one (null, a string, a list) is not its answer either.
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new TypeError("not a JSON object");
      body = parsed as Record<string, unknown>;
    } catch {
      // A 2xx that is not Daraja's JSON (cut short, a proxy's page) refuses nothing: the request may have run.
      if (res.ok) throw new DarajaError("unknown", `Daraja ${path}: answer is not a JSON object`, { path, httpStatus: res.status });
    }
    if (res.ok && body.errorCode === undefined) return body;
    const errorCode = body.errorCode === undefined ? undefined : String(body.errorCode);
    const requestId = body.requestId === undefined ? undefined : String(body.requestId);
    const details = { httpStatus: res.status, errorCode, requestId, path };
    const said = body.errorMessage ? String(body.errorMessage) : text.slice(0, 200) || res.statusText;
    if (errorCode === STILL_PROCESSING && path.includes("stkpushquery")) {
      throw new DarajaError("processing", `Daraja: ${said}`, details);
    }
    // 5xx without Daraja's error body (a proxy, an outage) says nothing about whether it ran.
    const kind: DarajaErrorKind = res.status >= 500 && !errorCode ? "unknown" : "rejected";
    throw new DarajaError(kind, `Daraja ${path} refused (HTTP ${res.status}${errorCode ? `, ${errorCode}` : ""}): ${said}`, details);
  }
}

/**
 * A 2xx answer's verdict. Only a ResponseCode other than "0" is a refusal; an answer with none, or accepted but
 * lacking what it should carry, is in doubt ("unknown"): a B2C or a push it names may have run, and a refusal
 * would release a payout's hold (payouts.ts) or end a tip whose customer is paying.
 */
function expectAccepted<T>(body: Record<string, unknown>, required: string[], what: string): T {
  const code = body.ResponseCode === undefined || body.ResponseCode === null ? undefined : String(body.ResponseCode);
  if (code === undefined) throw new DarajaError("unknown", `Daraja ${what} answered without a ResponseCode`);
  if (code !== "0") {
    throw new DarajaError("rejected", `Daraja ${what} not accepted (ResponseCode ${code}): ${String(body.ResponseDescription ?? "")}`, {
      errorCode: code,
    });
  }
  for (const k of required) {
    if (typeof body[k] !== "string" || !body[k]) throw new DarajaError("unknown", `Daraja ${what} accepted, but its answer lacks ${k}`);
  }
  return body as T;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
