// A USSD menu for feature phones and customers without data, served over
// Africa's Talking's USSD callback: a form POST with sessionId, serviceCode,
// phoneNumber and text (every answer so far, joined by "*"), answered with
// plain text starting "CON " (the menu goes on) or "END " (the session ends).
//
// The screen is a pure function of the session's whole text, replayed from
// the start on each request, so a repeated or re-sent request gets the same
// screen; the only effect, the STK push, is a tip created under the key
// ussd:<sessionId>, so a session charges at most once.
import { Code } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import type { TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { asConnectError, clockOf, formatMoney, MPESA_LIMITS, parseKenyanMobile } from "@ttip/runtime";
import { gsm7Text } from "@ttip/runtime/sms-size";
import type { UssdConfig } from "./config.js";
import { resultMessage } from "./messages.js";
import { qrClient } from "./peer-clients.js";
import { createTip, type Deps } from "./tips.js";

export interface UssdRequest {
  sessionId: string;
  serviceCode: string;
  phoneNumber: string;
  text: string;
}

type Lang = "en" | "sw";

const T = {
  welcome: { en: "Welcome to TTIP tips / Karibu TTIP\n1. English\n2. Kiswahili", sw: "" },
  askCode: { en: "Enter the worker's code (on their card):", sw: "Weka namba ya mhudumu (iko kwenye kadi yake):" },
  badCode: { en: "Code {code} was not found.", sw: "Namba {code} haikupatikana." },
  inactiveCode: { en: "Code {code} is no longer in use.", sw: "Namba {code} haitumiki tena." },
  venueCode: { en: "Code {code} is a venue's code; enter a worker's code.", sw: "Namba {code} ni ya mahali; weka namba ya mhudumu." },
  notKes: {
    en: "Code {code} is for {amount}. M-Pesa here pays in KES only: scan its QR code to pay by card.",
    sw: "Namba {code} ni ya {amount}. M-Pesa hapa inalipa kwa KES tu: skani msimbo wake wa QR ulipe kwa kadi.",
  },
  notMpesa: {
    en: "Code {code} is for {amount}; M-Pesa pays whole shillings from KES 1 to 250,000 only: scan its QR code to pay by card.",
    sw: "Namba {code} ni ya {amount}; M-Pesa hulipa shilingi kamili za KES 1 hadi 250,000 tu: skani msimbo wa QR ulipe kwa kadi.",
  },
  lookupDown: { en: "We cannot check codes right now. Please try again later.", sw: "Hatuwezi kuthibitisha namba sasa. Tafadhali jaribu tena baadaye." },
  pickAmount: { en: "Tip {name}:", sw: "Mpe {name} tip:" },
  other: { en: "Other amount", sw: "Kiasi kingine" },
  askAmount: { en: "Enter the amount in KES (1 - 250,000):", sw: "Weka kiasi kwa KES (1 - 250,000):" },
  badChoice: { en: "Invalid choice.", sw: "Chaguo si sahihi." },
  changed: { en: "This changed since your last screen; check it again.", sw: "Hili limebadilika tangu skrini iliyopita; liangalie tena." },
  amountCents: { en: "Whole shillings only, no cents.", sw: "Shilingi kamili tu, bila senti." },
  amountRange: { en: "The amount must be from KES 1 to 250,000.", sw: "Kiasi kiwe kati ya KES 1 na 250,000." },
  back: { en: "0. Back", sw: "0. Rudi" },
  confirm: { en: "Tip {name} KES {amount} by M-Pesa?\n1. Yes, pay\n2. Cancel", sw: "Mpe {name} tip ya KES {amount} kwa M-Pesa?\n1. Ndiyo, lipa\n2. Ghairi" },
  paying: {
    en: "You will get an M-Pesa prompt for KES {amount} to tip {name}. Enter your PIN to pay. An SMS receipt follows.",
    sw: "Utapokea ombi la M-Pesa la KES {amount} kumpa {name} tip. Weka PIN yako kulipa. Utapata risiti kwa SMS.",
  },
  cancelled: { en: "Cancelled. Nothing was charged.", sw: "Umeghairi. Hakuna pesa iliyotozwa." },
  expired: { en: "This session has expired. Please dial again.", sw: "Muda wa kipindi hiki umeisha. Tafadhali piga tena." },
  tooManySteps: { en: "Too many steps in one session. Nothing was charged; please dial again.", sw: "Hatua nyingi mno katika kipindi kimoja. Hakuna pesa iliyotozwa; tafadhali piga tena." },
  notPaid: { en: "The tip could not be started: {why}", sw: "Tip haikuweza kuanzishwa: {why}" },
  // No tip stored, so no push went out: our own failure (the database, a peer), not M-Pesa's.
  notStarted: { en: "We could not start your tip just now. Nothing was charged; please try again.", sw: "Hatukuweza kuanzisha tip yako kwa sasa. Hakuna pesa iliyotozwa; tafadhali jaribu tena." },
  // The tip may have been pushed (or we cannot tell): never "nothing was charged", which would have the customer pay again.
  unsure: {
    en: "We could not confirm your tip. If an M-Pesa prompt for KES {amount} comes, it is this tip. Check your M-Pesa SMS before tipping again.",
    sw: "Hatukuweza kuthibitisha tip yako. Ombi la M-Pesa la KES {amount} likija, ni la tip hii. Angalia SMS za M-Pesa kabla ya kutoa tip tena.",
  },
  // The fraud rules' refusals (payment's fraud.ts): no tip stored, so nothing was charged; a retry meets the same rule.
  numberBlocked: {
    en: "This number cannot be used for tips. Nothing was charged. Please contact TTIP support.",
    sw: "Nambari hii haiwezi kutumika kutoa tip. Hakuna pesa iliyotozwa. Tafadhali wasiliana na huduma kwa wateja ya TTIP.",
  },
  pinLimited: {
    en: "Too many wrong M-Pesa PIN attempts from this number. Nothing was charged; please try again in an hour.",
    sw: "PIN ya M-Pesa imekosewa mara nyingi mno kutoka nambari hii. Hakuna pesa iliyotozwa; tafadhali jaribu tena baada ya saa moja.",
  },
  phoneLimited: {
    en: "Too many tips from this number for now. Nothing was charged; please try again later.",
    sw: "Tip nyingi mno kutoka nambari hii kwa sasa. Hakuna pesa iliyotozwa; tafadhali jaribu tena baadaye.",
  },
  ruleLimited: {
    en: "M-Pesa refuses the same amount from your number within 2 minutes. Nothing was charged: try again in {seconds} seconds, or tip another amount.",
    sw: "M-Pesa inakataa kiasi kilekile kutoka nambari yako ndani ya dakika 2. Hakuna pesa iliyotozwa: jaribu tena baada ya sekunde {seconds}, au toa kiasi kingine.",
  },
} satisfies Record<string, { en: string; sw: string }>;

/** What the customer is told for each fraud rule that refuses a tip; any other rule falls through to the message. */
const FRAUD_REFUSALS: Record<string, keyof typeof T> = { BLOCKED_NUMBER: "numberBlocked", PIN_FAILURES: "pinLimited", VELOCITY_PHONE: "phoneLimited" };

function say(key: keyof typeof T, lang: Lang, vars: Record<string, string> = {}): string {
  const text = T[key][lang] || T[key].en;
  return text.replace(/\{(\w+)\}/g, (_, k: string) => vars[k] ?? "");
}

/** USSD screens are short (182 characters on Safaricom); never send more. */
const MAX_SCREEN = 182;
const con = (s: string) => `CON ${s}`.slice(0, MAX_SCREEN);
const end = (s: string) => `END ${s}`.slice(0, MAX_SCREEN);

/** Bounds on what a session may carry: a dialogue is a handful of steps, and a few more going back (0) and correcting. */
const MAX_TEXT = 200;
const MAX_STEPS = 24;

/** Answers one USSD request. Throws nothing for a customer's input; every error is a screen. */
export async function answerUssd(deps: Deps, config: UssdConfig, r: UssdRequest): Promise<string> {
  const { pool } = deps.ctx;
  if (!/^[A-Za-z0-9_.:-]{1,100}$/.test(r.sessionId)) return end("Invalid request.");
  if (r.text.length > MAX_TEXT) return end(say("tooManySteps", langOfText(r.text)));
  const phone = parseKenyanMobile(r.phoneNumber);
  if (!phone) return end("This service needs a Kenyan mobile number.");
  // The session row: created on the first request, then only touched. A session
  // idle past the timeout is over, as the network would have ended it. Idle time is
  // read on the service's clock (a test moves it past the timeout).
  const now = new Date(clockOf(deps.ctx).now());
  const { rows } = await pool.query<{ phone: string; idle_ms: number; last_text: string; last_answer: string; locale: string }>(
    `INSERT INTO payment.ussd_sessions (session_id, service_code, phone, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (session_id) DO UPDATE SET session_id = EXCLUDED.session_id
     RETURNING phone, (EXTRACT(EPOCH FROM ($4::timestamptz - ussd_sessions.updated_at)) * 1000)::float8 AS idle_ms, last_text, last_answer, locale`,
    [r.sessionId, r.serviceCode.slice(0, 40), phone, now],
  );
  const session = rows[0];
  if (session.phone !== phone) return end("Invalid session.");
  const expired = session.idle_ms > config.sessionTimeoutMs;
  // The same request again (the gateway re-sent it): the same screen. Past the timeout, only a last one (END): a
  // confirm whose answer was lost and came again late was told "expired, dial again" while its prompt was on the
  // way; a screen that goes on is not revived.
  if (session.last_answer && session.last_text === r.text && (!expired || session.last_answer.startsWith("END "))) {
    if (!expired) await recordScreen(deps, r.sessionId, "UPDATE payment.ussd_sessions SET updated_at = $2 WHERE session_id = $1", [r.sessionId, new Date(clockOf(deps.ctx).now())]);
    return session.last_answer;
  }
  if (expired) return end(say("expired", session.locale as Lang));
  // The screen this request answers: the one recorded for the text without its last answer.
  const shown = session.last_answer && session.last_text === r.text.slice(0, Math.max(0, r.text.lastIndexOf("*"))) ? session.last_answer : undefined;
  const { answer, lang } = await screen(deps, config, r, phone, shown);
  await recordScreen(deps, r.sessionId, "UPDATE payment.ussd_sessions SET last_text = $2, last_answer = $3, locale = $4, updated_at = $5 WHERE session_id = $1", [
    r.sessionId, r.text, answer, lang, new Date(clockOf(deps.ctx).now()),
  ]);
  return answer;
}

/**
 * The session's record of the screen, best effort: the screen is the truth the customer must read (a prompt may
 * be on its way). Unrecorded, a repeat of the request works it out again, and the tip's key (the session's) charges once.
 */
async function recordScreen(deps: Deps, sessionId: string, sql: string, values: unknown[]): Promise<void> {
  await deps.ctx.pool.query(sql, values).catch((err: unknown) => deps.ctx.logger.warn({ err, sessionId }, "USSD screen not recorded"));
}

type State =
  | { at: "lang" }
  | { at: "code"; note?: string }
  | { at: "amount"; target: TipTarget; note?: string }
  | { at: "other"; target: TipTarget; note?: string }
  | { at: "confirm"; target: TipTarget; amountKes: number; note?: string };

/** One dialogue being replayed: who, where, and the language chosen so far. */
interface Dialogue {
  deps: Deps;
  config: UssdConfig;
  r: UssdRequest;
  phone: string;
  lang: Lang;
  /** Codes looked up in this replay: a code typed twice is asked for once. */
  lookups: Map<string, Promise<TipTarget | string>>;
  /** The screen the customer answers now, as recorded when it was shown; undefined when not recorded. */
  shown?: string;
}

/** Where one answer leads: the next state (replay: the same answer is read again there), the screen before, or the session's last screen. */
type Advance = { state: State; replay?: true } | { back: true } | { answer: string };

/** The answer that goes back one screen, offered on every screen after the code is known. */
const BACK = "0";

/** The language a session's text chose at its first step, for a screen drawn without replaying it. */
const langOfText = (text: string): Lang => (text.split("*", 1)[0].trim() === "2" ? "sw" : "en");

/** Replays the whole dialogue from its text and draws the screen it leads to. */
async function screen(deps: Deps, config: UssdConfig, r: UssdRequest, phone: string, shown?: string): Promise<{ answer: string; lang: Lang }> {
  const steps = r.text === "" ? [] : r.text.split("*").map((s) => s.trim());
  const d: Dialogue = { deps, config, r, phone, lang: "en", lookups: new Map(), shown };
  if (steps.length > MAX_STEPS) return { answer: end(say("tooManySteps", langOfText(r.text))), lang: d.lang };
  let state: State = { at: "lang" };
  // The screens passed on the way, to go back to (each without the note it had then).
  const passed: State[] = [];
  for (let i = 0; i < steps.length; i++) {
    const next = await advance(d, state, steps[i]);
    if ("answer" in next) return { answer: next.answer, lang: d.lang };
    if ("back" in next) {
      const before = passed.pop() ?? { at: "code" };
      state = "note" in before ? { ...before, note: undefined } : before;
      continue;
    }
    if (next.replay) i--;
    else if (next.state.at !== state.at) passed.push(state);
    state = next.state;
  }
  return { answer: draw(d, state), lang: d.lang };
}

async function advance(d: Dialogue, state: State, step: string): Promise<Advance> {
  if (step === BACK && state.at !== "lang" && state.at !== "code") return { back: true };
  switch (state.at) {
    case "lang":
      if (step !== "1" && step !== "2") return { state: { at: "code" }, replay: true }; // dialled with the code in the string (*483*123*<the code's digits>#, as cards print it): English, and this step is the code
      d.lang = step === "2" ? "sw" : "en";
      return { state: { at: "code" } };
    case "code":
      return codeEntered(d, step);
    case "amount":
      return { state: amountChosen(d, state.target, step) };
    case "other":
      return { state: otherAmountEntered(d, state.target, step) };
    case "confirm":
      if (step === "2") return { answer: end(say("cancelled", d.lang)) };
      if (step !== "1") return { state: { at: "confirm", target: state.target, amountKes: state.amountKes, note: say("badChoice", d.lang) } };
      // Each request works the dialogue out again: the amount list (qr's suggestions, this replica's amounts) may
      // have changed since the customer read "KES 100?", and "1. Yes" would have charged the other amount.
      if (d.shown !== undefined && d.shown !== draw(d, state)) return { state: { ...state, note: say("changed", d.lang) } };
      return { answer: end(await payInTime(d, state.target, state.amountKes)) };
  }
}

/**
 * pay(), or the screen that says a prompt may come if it is not done within answerWithinMs (a slow Daraja, a token
 * refresh): the push goes on, and a repeat of the request finds its tip. Answered later, Africa's Talking would have
 * shown a network error, and the customer, told nothing, would dial again and tip twice.
 */
async function payInTime(d: Dialogue, target: TipTarget, amountKes: number): Promise<string> {
  const paying = pay(d.deps, d.r, d.phone, target, amountKes, d.lang);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const due = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), d.config.answerWithinMs)));
  const answer = await Promise.race([paying, due]).finally(() => clearTimeout(timer));
  if (answer !== undefined) return answer;
  paying.catch((err: unknown) => d.deps.ctx.logger.warn({ err, sessionId: d.r.sessionId }, "USSD tip failed after its answer"));
  d.deps.ctx.logger.warn({ sessionId: d.r.sessionId, answerWithinMs: d.config.answerWithinMs }, "USSD tip still starting when its answer was due");
  return say("unsure", d.lang, { name: nameOf(target, d.lang), amount: amountKes.toLocaleString("en-KE") });
}

async function codeEntered(d: Dialogue, step: string): Promise<Advance> {
  const code = step.toUpperCase().replace(/[\s-]/g, "");
  if (!d.lookups.has(code)) d.lookups.set(code, resolveCode(d.deps, code));
  const found = await d.lookups.get(code)!;
  if (found === "lookupDown") return { answer: end(say("lookupDown", d.lang)) };
  if (typeof found === "string") return { state: { at: "code", note: say(found as keyof typeof T, d.lang, { code: step.slice(0, 12) }) } };
  const fixed = found.fixedAmount?.amountMinor ?? 0n;
  if (fixed === 0n) return { state: { at: "amount", target: found } };
  const currency = found.fixedAmount!.currency;
  const vars = { code: code.slice(0, 12), amount: formatMoney(fixed, currency) };
  // A fixed amount in another currency (a guide's USD 10) is not a shilling amount: refused here, not read as KES 10.
  if (currency !== "KES") return { state: { at: "code", note: say("notKes", d.lang, vars) } };
  // Charged as the code says or not at all: KES 150.50 is not KES 150.
  if (fixed % 100n !== 0n || fixed > MPESA_LIMITS.perTransactionMinor) return { state: { at: "code", note: say("notMpesa", d.lang, vars) } };
  return { state: { at: "confirm", target: found, amountKes: Number(fixed / 100n) } };
}

function amountChosen(d: Dialogue, target: TipTarget, step: string): State {
  const options = amountOptions(d.config, target);
  const n = Number(step);
  if (Number.isInteger(n) && n >= 1 && n <= options.length) return { at: "confirm", target, amountKes: options[n - 1] };
  if (n === options.length + 1) return { at: "other", target };
  // Whole shillings typed instead of an option's number ("100" for "2. KES 100"): read as the amount typed, which
  // the confirmation shows before anything is charged. Numbers up to the options' own stay options.
  if (/^\d{1,6}$/.test(step) && n > options.length + 1) return otherAmountEntered(d, target, step);
  return { at: "amount", target, note: say("badChoice", d.lang) };
}

/**
 * Whole shillings as people type them: "1000", "1,000" (grouped in thousands: told "no cents" before), "1000.00" or
 * "1,000.00"; NaN for anything else. "100,50" is cents, as a comma before two digits is in Swahili and much of Europe.
 */
function typedShillings(step: string): number {
  const whole = step.replace(/[.,]00?$/, "");
  const plain = /^\d{1,3}(,\d{3})+$/.test(whole) ? whole.replaceAll(",", "") : whole;
  return /^\d{1,6}$/.test(plain) ? Number(plain) : NaN;
}

/** A typed amount: whole shillings within M-Pesa's limits, or a note saying what is wrong with it. */
function otherAmountEntered(d: Dialogue, target: TipTarget, step: string): State {
  const n = typedShillings(step);
  if (n >= 1 && BigInt(n) * 100n <= MPESA_LIMITS.perTransactionMinor) return { at: "confirm", target, amountKes: n };
  const cents = Number.isNaN(n) && /^\d+[.,]\d+$/.test(step);
  return { at: "other", target, note: say(cents ? "amountCents" : "amountRange", d.lang) };
}

/** The screen a state shows, with its note (why the last answer was refused) first. */
function draw(d: Dialogue, state: State): string {
  const lang = d.lang;
  const note = "note" in state && state.note ? `${state.note}\n` : "";
  switch (state.at) {
    case "lang":
      return con(say("welcome", lang));
    case "code":
      return con(note + say("askCode", lang));
    case "amount": {
      const options = amountOptions(d.config, state.target);
      const lines = options.map((a, i) => `${i + 1}. KES ${a.toLocaleString("en-KE")}`);
      lines.push(`${options.length + 1}. ${say("other", lang)}`, say("back", lang));
      return con(`${note}${say("pickAmount", lang, { name: nameOf(state.target, lang) })}\n${lines.join("\n")}`);
    }
    case "other":
      return con(`${note}${say("askAmount", lang)}\n${say("back", lang)}`);
    case "confirm":
      return con(`${note}${say("confirm", lang, { name: nameOf(state.target, lang), amount: state.amountKes.toLocaleString("en-KE") })}\n${say("back", lang)}`);
  }
}

/** The name as a USSD screen can show it (GSM-7 only: see gsm7Text), or the worker in the customer's language. */
function nameOf(t: TipTarget, lang: Lang): string {
  return gsm7Text(t.displayName, 30) || (lang === "sw" ? "mhudumu" : "the worker");
}

function amountOptions(config: UssdConfig, t: TipTarget): number[] {
  const suggested = t.suggestedAmounts.filter((m) => m.currency === "KES" && m.amountMinor % 100n === 0n && m.amountMinor > 0n).map((m) => Number(m.amountMinor / 100n));
  return (suggested.length ? suggested : config.amountsKes).slice(0, 5);
}

/** A code's tip target, or the key of the screen that says why not. */
async function resolveCode(deps: Deps, code: string): Promise<TipTarget | string> {
  if (!/^[A-Z0-9]{4,12}$/.test(code)) return "badCode";
  const qr = qrClient(deps.ctx);
  try {
    const { target } = await qr.resolveQrCode({ code: { case: "shortCode", value: code } }, { timeoutMs: 3_000 });
    if (!target) return "badCode";
    if (!target.workerId) return "venueCode";
    return target;
  } catch (err) {
    const e = asConnectError(err);
    if (e.code === Code.NotFound || e.code === Code.InvalidArgument) return "badCode";
    if (e.code === Code.FailedPrecondition) return "inactiveCode";
    deps.ctx.logger.warn({ err: e.message }, "USSD code lookup failed");
    return "lookupDown";
  }
}

/** The push, once per session: a repeat finds the tip made under the session's key. */
async function pay(deps: Deps, r: UssdRequest, phone: string, target: TipTarget, amountKes: number, lang: Lang): Promise<string> {
  const vars = { name: nameOf(target, lang), amount: amountKes.toLocaleString("en-KE") };
  try {
    const tip = await createTip(deps, {
      idempotencyKey: `ussd:${r.sessionId}`,
      workerId: target.workerId,
      venueId: target.venueId,
      qrCodeId: target.qrCodeId,
      amountMinor: BigInt(amountKes) * 100n,
      phone,
      customerCoversFee: false,
      rating: 0,
      message: "",
      customerEmail: "",
      channel: "ussd",
    });
    await deps.ctx.pool.query("UPDATE payment.ussd_sessions SET tip_id = $2 WHERE session_id = $1", [r.sessionId, tip.tip_id]);
    if (tip.status === "failed") return say("notPaid", lang, { why: resultMessage(tip.result_code, lang) });
    return say("paying", lang, vars);
  } catch (err) {
    const e = asConnectError(err);
    // M-Pesa's own rule (result 17) on a repeat of this amount: not an outage; say when it can go.
    const info = e.findDetails(DomainErrorInfoSchema)[0]?.metadata ?? {};
    const wait = e.code === Code.FailedPrecondition ? info.wait_seconds : undefined;
    if (wait) return say("ruleLimited", lang, { seconds: wait });
    const refusedBy = info.fraud_rule ? FRAUD_REFUSALS[info.fraud_rule] : undefined;
    if (refusedBy) return say(refusedBy, lang);
    if (e.code === Code.Unavailable || e.code === Code.FailedPrecondition || e.code === Code.Internal || e.code === Code.Unknown) {
      deps.ctx.logger.warn({ err: e.message }, "USSD tip not started");
      return afterFailure(deps, r, lang, vars);
    }
    return say("notPaid", lang, { why: e.rawMessage.replace(/^[a-z_]+: /, "") });
  }
}

/**
 * What the customer is told when starting the tip failed part way: a push goes out only for a tip stored under the
 * session's key, so without one nothing was charged; one that failed says why; any other (or none readable) may have
 * pushed, and "nothing was charged" would have the customer pay again.
 */
async function afterFailure(deps: Deps, r: UssdRequest, lang: Lang, vars: { name: string; amount: string }): Promise<string> {
  const stored = await deps.ctx.pool.query<{ status: string; result_code: string | null }>(
    "SELECT status, result_code FROM payment.tips WHERE idempotency_key = $1", [`ussd:${r.sessionId}`],
  ).then((q) => ({ tip: q.rows[0] }), () => undefined);
  if (stored && !stored.tip) return say("notStarted", lang);
  if (stored?.tip.status === "failed") return say("notPaid", lang, { why: resultMessage(stored.tip.result_code ?? "", lang) });
  return say("unsure", lang, vars);
}
