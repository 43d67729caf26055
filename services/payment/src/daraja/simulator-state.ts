// The Daraja simulator's state, created once per simulator: issued tokens, the
// transactions M-Pesa "really" made, scripted outcomes, callbacks waiting to
// go out, and the C2B half. Endpoint functions (simulator-stk.ts,
// simulator-b2c.ts) read and change it; nothing else does.
import { constants, privateDecrypt, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { postJson } from "../simulator-http.js";
import { createC2bSim, type C2bSim } from "./c2b-simulator.js";
import { darajaError } from "./simulator-replies.js";

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
  | "lost_result" // executed, result never sent (only a status query tells)
  | "amount_mismatch"; // executed for one shilling more than asked: the result and status queries report what was sent

/** What M-Pesa does with a request to reverse a payment from this number (default: it reverses it). */
export type ReversalOutcome =
  | "refused" // ResultCode 1: the short code's balance cannot cover it
  | "queue_timeout"; // never executed; QueueTimeOutURL is called

export interface Script {
  stk?: StkOutcome;
  b2c?: B2cOutcome;
  reversal?: ReversalOutcome;
  /** Overrides the default callback delay. */
  delayMs?: number;
  /** STK: the push is taken (and the customer charged) at once, but its answer comes this late. */
  answerDelayMs?: number;
  /**
   * STK success also reported as a C2B confirmation (when C2B URLs are registered):
   * "before" or "after" the STK callback, or "only" (the callback is lost).
   */
  c2bEcho?: "before" | "after" | "only";
  /** STK query: answered with an empty ResultCode, which Daraja does not document (what the service makes of it). */
  blankQueryResult?: boolean;
  /**
   * B2C: every Transaction Status about it fails with this ResultCode, an error of the query itself (seen
   * live: "SFC_IC0003", receiver party invalid; 2001, initiator invalid), which says nothing of the payout.
   */
  statusError?: string;
  /** B2C: every Transaction Status request about it is answered 503 with no Daraja body (an outage past its gateway). */
  statusOutage?: boolean;
  /** B2C: Transaction Status answers it with this TransactionStatus, instead of "Completed" or "Failed". */
  statusAnswer?: string;
}

export interface SimTransaction {
  kind: "stk" | "b2c" | "reversal";
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
  /** A payment (STK) reversed: the reversal's receipt. A reversal: the receipt of the payment it gave back. */
  reversal?: string;
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

/** A new transaction: what it is, whom and how much, and how it ended; nothing sent or asked yet. */
export function newTransaction(fields: Pick<SimTransaction, "kind" | "phone" | "amount" | "outcome" | "resultCode" | "receipt"> & Partial<SimTransaction>): SimTransaction {
  const { kind, ...rest } = fields;
  return { kind, id: randomUUID(), ...rest, callbacksSent: 0, queries: 0, createdAt: new Date().toISOString() };
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

export function simulatorDefaults(options: SimulatorOptions): Required<SimulatorOptions> {
  return {
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
}

export class DarajaSimState {
  /** Access tokens and when each expires (epoch ms). */
  readonly tokens = new Map<string, number>();
  readonly txs: SimTransaction[] = [];
  readonly scripts = new Map<string, Script>();
  /** Callbacks scheduled and not yet sent: idle() and close() wait for them. */
  readonly pending = new Set<Promise<unknown>>();
  /** query_first: callbacks parked until a query answers the push. */
  readonly parked = new Map<string, () => void>();
  /** late: the query keeps saying "processing" until the callback went out (a held one has not). */
  readonly notYetFinal = new Set<string>();
  /** Paybill payments by receipt: a replayed receipt is one payment. */
  readonly paybillPaid = new Map<string, number>();
  /** Callbacks (STK) and results (B2C) of a held kind, parked until the test releases them. */
  private readonly held = new Map<SimTransaction["kind"], (() => Promise<void>)[]>();
  readonly c2b: C2bSim;
  closed = false;

  constructor(readonly o: Required<SimulatorOptions>) {
    this.c2b = createC2bSim({ shortcode: o.shortcode, sourceAddress: o.callbackSourceAddress, onPaid: (p) => void this.paybillPaid.set(p.transId, p.amount) });
  }

  scriptFor(phone: string, amount: number): Script {
    return this.scripts.get(`phone:${phone}`) ?? this.scripts.get(`amount:${amount}`) ?? PHONE_SUFFIX_SCRIPTS[phone.slice(-4)] ?? {};
  }

  setScript(key: { phone?: unknown; amount?: unknown }, script: Script): void {
    this.scripts.set(key.phone ? `phone:${key.phone}` : `amount:${Number(key.amount)}`, script);
  }

  issueToken(): string {
    const token = randomBytes(18).toString("base64url");
    this.tokens.set(token, Date.now() + this.o.tokenTtlSeconds * 1000);
    return token;
  }

  /** Is the request's bearer token one we issued and still honour? Answers 401 when not. */
  authorised(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const until = m ? this.tokens.get(m[1]) : undefined;
    if (until && until >= Date.now()) return true;
    darajaError(res, 401, "404.001.03", "Invalid Access Token");
    return false;
  }

  /** Does the SecurityCredential decrypt to the initiator's password? */
  validCredential(b64: unknown): boolean {
    try {
      // PKCS#1 v1.5 unpadded by hand: Node no longer offers it for private decryption.
      const raw = privateDecrypt({ key: SIMULATOR_PRIVATE_KEY_PEM, padding: constants.RSA_NO_PADDING }, Buffer.from(String(b64), "base64"));
      if (raw[0] !== 0 || raw[1] !== 2) return false;
      const sep = raw.indexOf(0, 2);
      return sep > 9 && raw.subarray(sep + 1).toString() === this.o.initiatorPassword;
    } catch {
      return false;
    }
  }

  /** Runs `fn` after `ms` unless the simulator closed by then; idle() waits for it. */
  later(ms: number, fn: () => Promise<void>): void {
    const p = new Promise<void>((resolve) => setTimeout(resolve, ms)).then(() => (this.closed ? undefined : fn())).catch(() => undefined);
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** From now on, parks every callback of `kind` that falls due, until release(kind). */
  hold(kind: SimTransaction["kind"]): void {
    if (this.held.has(kind)) throw new Error(`${kind} callbacks are already held`);
    this.held.set(kind, []);
  }

  /** Ends the hold of `kind`: sends what it parked, in order, at once; resolves when each was tried. */
  async release(kind: SimTransaction["kind"]): Promise<void> {
    const parked = this.held.get(kind) ?? [];
    this.held.delete(kind);
    for (const send of parked) if (!this.closed) await send().catch(() => undefined);
  }

  /** POSTs a callback from the callback source address; a 2xx answer counts as delivered to `tx`. */
  async deliver(url: string, body: unknown, tx?: SimTransaction): Promise<void> {
    const held = tx && this.held.get(tx.kind);
    if (held) return void held.push(() => this.deliver(url, body, tx));
    if (tx?.checkoutRequestId) this.notYetFinal.delete(tx.checkoutRequestId);
    if (tx) tx.callbackSentAt = performance.timeOrigin + performance.now();
    const answer = await postJson(url, body, { localAddress: this.o.callbackSourceAddress, timeoutMs: 10_000 });
    if (tx && answer && answer.status > 0 && answer.status < 300) tx.callbacksSent++;
  }

  /**
   * The short code's utility account as M-Pesa would report it: the opening
   * balance, plus every STK payment taken and every paybill payment, less every
   * B2C sent and payment reversed (whatever became of their callbacks). Whole shillings.
   */
  utilityBalance(): number {
    let total = this.o.openingBalance;
    for (const t of this.txs) {
      // What the customer really paid: the mismatch callback's amount is the true one.
      if (t.kind === "stk" && t.receipt) total += t.outcome === "amount_mismatch" ? t.amount - 1 : t.amount;
      if ((t.kind === "b2c" || t.kind === "reversal") && t.receipt) total -= t.amount;
    }
    for (const amount of this.paybillPaid.values()) total += amount;
    return total;
  }
}
