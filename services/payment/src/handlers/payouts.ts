import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { asConnectError, clockOf, CONSOLE_READERS, decodeTimeIdToken, DependencyUnavailableError, fieldError, emitEvent, IdempotencyConflictError, InvalidStateError, keysetPage, maskPhone, type MoneyAmount, mpesaAmount, normalisePhone, NotFoundError, optionalTimestamp, pageSize, PermissionDeniedError, RateLimitedError, refusalOfField, requireCaller, requireKenyanMobile, withTransaction } from "@ttip/runtime";
import { PayoutNumberChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PayoutSettingsSchema } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { PAYOUT_STATUS_CODE, payoutMessage } from "../convert.js";
import { B2C_MIN_KES, B2C_MIN_MINOR } from "../daraja/client.js";
import { defaultPhone } from "../methods.js";
import { kes } from "../money.js";
import { automaticPayoutsFrom, PAYOUT_NUMBER_COOLING_OFF_MS } from "../payout-number-cooling.js";
import { payoutChangeKey, requirePayoutsConfigured, startPayout } from "../payouts.js";
import { payoutSettingsOf, putPayoutSettings, type PayoutSettings } from "../stores/payout-settings.js";
import { loadPayout, payoutByIdempotencyKey, workerPayouts } from "../stores/payouts.js";
import { nextChange, type PaymentHandlerContext } from "./context.js";

/** An amount a B2C can pay out, or INVALID_ARGUMENT naming `field`: M-Pesa's limits, and B2C's minimum (KES 10). */
function payoutAmount(money: MoneyAmount | undefined, field: string): bigint {
  const amountMinor = mpesaAmount(money, field);
  if (amountMinor < B2C_MIN_MINOR) throw fieldError(field, `M-Pesa pays out at least KES ${B2C_MIN_KES}`);
  return amountMinor;
}

/**
 * The automatic payout minimum that applies (autoPayout never pays under B2C's least): the stored one, or KES 10
 * when none is stored or one under it is (the table's default, KES 1, or one set before KES 10 was enforced).
 */
function minimumInForce(stored: bigint | undefined): bigint {
  return stored !== undefined && stored > B2C_MIN_MINOR ? stored : B2C_MIN_MINOR;
}

function settingsMessage(h: PaymentHandlerContext, s: PayoutSettings | undefined) {
  const { config, ctx } = h.deps;
  const from = automaticPayoutsFrom(s, config().payoutNumberCoolingOffMs ?? PAYOUT_NUMBER_COOLING_OFF_MS, clockOf(ctx).now());
  return create(PayoutSettingsSchema, {
    autoPayout: s?.auto_payout ?? false,
    autoPayoutMinimum: kes(minimumInForce(s?.auto_payout_minimum_minor)),
    payoutPhoneMasked: s?.payout_phone ? maskPhone(s.payout_phone) : "",
    automaticPayoutsFrom: optionalTimestamp(from),
  });
}

type Impl = ServiceImpl<typeof PaymentService>;

/**
 * How long auth has to verify a withdrawal's step-up token (one short statement there): past it the
 * withdrawal is refused UNAVAILABLE naming the call, nothing stored, rather than held for as long as
 * auth is stuck. (Auth may spend the token after that: it spends it on the withdrawal's idempotency
 * key, so the worker's retry of the same withdrawal is accepted with the same token.)
 */
const VERIFY_STEP_UP_TIMEOUT_MS = 5_000;

/** This call's field for each VerifyStepUpTokenRequest field auth's message may name (spend_amount, spend_phone: a spent token's terms). */
const STEP_UP_TERMS: Record<string, string> = { step_up_token: "step_up_token", spend_key: "idempotency_key", spend_amount: "amount", spend_phone: "mpesa_phone" };

/** The same for UpdatePayoutSettings: the number a payout_number step-up was spent on is its payout_phone. */
const NUMBER_STEP_UP_TERMS: Record<string, string> = { step_up_token: "step_up_token", spend_phone: "payout_phone" };

/** Auth's message said of this call's field: the one auth named (spend_amount, spend_phone) as this call names it, else step_up_token. */
function inOurTerms(message: string, terms: Record<string, string>): { field: string; message: string } {
  const [named, ...rest] = message.split(": ");
  const ours = terms[named];
  return ours ? { field: ours, message: `${ours}: ${rest.join(": ")}` } : { field: "step_up_token", message: `step_up_token: ${message}` };
}

/**
 * VerifyStepUpToken's failure as this call tells it, each code for what it says: auth's refusal of the
 * proof is PERMISSION_DENIED naming the field; a caller's mistake auth names (INVALID_ARGUMENT,
 * NOT_FOUND, FAILED_PRECONDITION) keeps its code, and a rate limit stays RESOURCE_EXHAUSTED. Anything
 * else says auth could not judge the proof now (it is down, slow, failing, or refused this service's
 * own credentials): UNAVAILABLE, to retry, never a refusal the worker would read as a bad proof.
 */
export function stepUpVerifyFailure(err: unknown, terms = STEP_UP_TERMS): Error {
  const e = asConnectError(err, Code.Unavailable);
  const ours = inOurTerms(e.rawMessage, terms);
  if (e.code === Code.PermissionDenied) return new PermissionDeniedError(ours.message);
  if (e.code === Code.ResourceExhausted) return new RateLimitedError(ours.message);
  const said = refusalOfField(new ConnectError(ours.message, e.code), ours.field);
  if (said) return said;
  const why = e.code === Code.DeadlineExceeded ? `auth did not answer VerifyStepUpToken within ${VERIFY_STEP_UP_TIMEOUT_MS} ms` : e.rawMessage;
  return new DependencyUnavailableError(`step_up_token: cannot be verified now (${why}); try again`);
}

/** A worker's payouts: requests, reads and settings. */
export function payoutHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    requestPayout: requestPayoutHandler(h),
    getPayout: getPayoutHandler(h),
    watchPayout: watchPayoutHandler(h),
    listPayouts: listPayoutsHandler(h),
    getPayoutSettings: getPayoutSettingsHandler(h),
    updatePayoutSettings: updatePayoutSettingsHandler(h),
  };
}

function requestPayoutHandler(h: PaymentHandlerContext): Impl["requestPayout"] {
  return async (req, ctx) => {
    const { deps, pool } = h;
    const caller = requireCaller(ctx);
    // A tip's automatic payout is keyed auto-<tip id>: a withdrawal under such a key would be taken for it.
    if (req.idempotencyKey.startsWith("auto-")) throw fieldError("idempotency_key", "keys starting with \"auto-\" are the platform's own (automatic payouts); use another");
    const amountMinor = payoutAmount(req.amount, "amount");
    const given = req.mpesaPhone ? requireKenyanMobile(req.mpesaPhone, "mpesa_phone") : "";
    // A retry of a request already verified (the step-up token was spent on the first try) is answered
    // with its payout, whatever changed since: a retry without a number asked for the payout number of
    // then, and one refused for a number changed or a hold placed since reads as nothing sent.
    const existing = await payoutByIdempotencyKey(pool, caller.subject, req.idempotencyKey);
    if (existing) {
      if (existing.amount.amountMinor !== amountMinor || (given && existing.phone !== given)) throw new IdempotencyConflictError(req.idempotencyKey, "payout");
      return { payout: payoutMessage(existing), replayed: true };
    }
    // Before the step-up token is spent on a withdrawal that cannot be stored.
    requirePayoutsConfigured(deps);
    const settings = await payoutSettingsOf(pool, caller.subject);
    const phone = given || settings?.payout_phone || (await defaultPhone(pool, caller.subject));
    if (!phone) throw new InvalidStateError("mpesa_phone: no payout number registered; pass one or set it in payout settings");
    if (settings?.payouts_on_hold) throw new InvalidStateError("payouts are on hold for this account; contact support");
    // The device's biometric unlock, proved to the auth service.
    try {
      // Spent on this withdrawal's key, amount and number: a retry under the key (nothing stored yet) verifies only for the same ones.
      await createClient(AuthInternalService, deps.ctx.peers("auth")).verifyStepUpToken(
        { stepUpToken: req.stepUpToken, userId: caller.subject, purpose: "payout", spendKey: req.idempotencyKey, spendAmount: kes(amountMinor), spendPhone: phone },
        { timeoutMs: VERIFY_STEP_UP_TIMEOUT_MS });
    } catch (err) {
      throw stepUpVerifyFailure(err);
    }
    const payout = await startPayout(deps, { workerId: caller.subject, amountMinor, phone, idempotencyKey: req.idempotencyKey, automatic: false });
    return { payout: payoutMessage(payout) };
  };
}

function watchPayoutHandler(h: PaymentHandlerContext): Impl["watchPayout"] {
  return async function* (req, ctx) {
    const { deps, pool } = h;
    const caller = requireCaller(ctx);
    let last = "";
    // As long as a payout may take to resolve (Daraja's queue, then status queries), and no longer.
    const until = Date.now() + 15 * 60_000;
    while (!ctx.signal.aborted && Date.now() < until) {
      // Woken at once by a change on any replica; polls in case a wake-up was lost.
      const change = nextChange(deps, payoutChangeKey(req.payoutId), ctx.signal);
      try {
        const p = await loadPayout(pool, req.payoutId);
        if (!p || p.workerId !== caller.subject) throw new NotFoundError("payout_id: no such payout");
        const key = `${p.status}|${p.resultCode ?? ""}|${p.mpesaReceipt ?? ""}`;
        if (key !== last) {
          last = key;
          yield { payout: payoutMessage(p) };
        }
        if (p.status === "succeeded" || p.status === "failed") return;
        await change.wait;
      } finally {
        change.cancel();
      }
    }
  };
}

function getPayoutHandler(h: PaymentHandlerContext): Impl["getPayout"] {
  return async (req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    const p = await loadPayout(pool, req.payoutId);
    if (!p || (p.workerId !== caller.subject && !CONSOLE_READERS.some((r) => caller.roles.includes(r)))) throw new NotFoundError("payout_id: no such payout");
    return { payout: payoutMessage(p) };
  };
}

function listPayoutsHandler(h: PaymentHandlerContext): Impl["listPayouts"] {
  return async (req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const status = req.status ? PAYOUT_STATUS_CODE[req.status] : null;
    const rows = await workerPayouts(pool, caller.subject, status, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.pageAt, r.payoutId]);
    return {
      payouts: items.map(payoutMessage),
      page: { nextPageToken },
    };
  };
}

function getPayoutSettingsHandler(h: PaymentHandlerContext): Impl["getPayoutSettings"] {
  return async (_req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    return { settings: settingsMessage(h, await payoutSettingsOf(pool, caller.subject)) };
  };
}

/** How long auth has to tell a worker's sign-in phone (one lookup by id), when a first payout number is set. */
const SIGN_IN_PHONE_TIMEOUT_MS = 5_000;

/**
 * The account's sign-in phone (verified by OTP), from auth; undefined when auth cannot tell it now. Then a first
 * payout number is cooled as any other would be: the worker's honest number waits a day, a thief's gets nothing.
 */
async function signInPhoneOf(h: PaymentHandlerContext, userId: string): Promise<string | undefined> {
  try {
    const { phone } = await createClient(AuthInternalService, h.deps.ctx.peers("auth")).getUserById({ userId }, { timeoutMs: SIGN_IN_PHONE_TIMEOUT_MS });
    return phone ? normalisePhone(phone) : undefined;
  } catch (err) {
    h.deps.ctx.logger.warn({ err, userId }, "sign-in phone not known; a first payout number is cooled off");
    return undefined;
  }
}

/** Whether `next` replaces a payout number money goes to now: the redirect a stolen session would make. */
const replacesNumber = (current: string, next: string) => current !== "" && next !== "" && next !== current;

/**
 * The device's step-up for replacing the payout number (purpose payout_number), spent on the new number: a retry
 * of the same change verifies again, another number needs a new proof. Returns the number it was proved for.
 */
async function verifyNumberStepUp(h: PaymentHandlerContext, userId: string, stepUpToken: string, phone: string): Promise<string> {
  if (!stepUpToken) {
    throw new InvalidStateError("step_up_token: replacing the payout number needs the device's step-up (purpose payout_number), as a withdrawal does");
  }
  try {
    await createClient(AuthInternalService, h.deps.ctx.peers("auth")).verifyStepUpToken(
      { stepUpToken, userId, purpose: "payout_number", spendKey: "payout_number", spendPhone: phone }, { timeoutMs: VERIFY_STEP_UP_TIMEOUT_MS });
  } catch (err) {
    throw stepUpVerifyFailure(err, NUMBER_STEP_UP_TERMS);
  }
  return phone;
}

function updatePayoutSettingsHandler(h: PaymentHandlerContext): Impl["updatePayoutSettings"] {
  return async (req, ctx) => {
    const caller = requireCaller(ctx);
    const asked = req.autoPayoutMinimum ? payoutAmount(req.autoPayoutMinimum, "auto_payout_minimum") : undefined;
    const newPhone = req.payoutPhone ? requireKenyanMobile(req.payoutPhone, "payout_phone") : "";
    // Asked before the row's lock, not under it: a first number is cooled unless it is the sign-in phone, and a
    // replacing one needs the device's step-up (verified again under the lock if the number changed meanwhile).
    const stored = newPhone ? (await payoutSettingsOf(h.pool, caller.subject))?.payout_phone ?? "" : "";
    const first = newPhone !== "" && !stored;
    const signInPhone = first ? await signInPhoneOf(h, caller.subject) : undefined;
    let provedFor = replacesNumber(stored, newPhone) ? await verifyNumberStepUp(h, caller.subject, req.stepUpToken, newPhone) : "";
    const settings = await withTransaction(h.pool, async (tx) => {
      const current = await payoutSettingsOf(tx, caller.subject, true);
      if (replacesNumber(current?.payout_phone ?? "", newPhone) && provedFor !== newPhone) {
        provedFor = await verifyNumberStepUp(h, caller.subject, req.stepUpToken, newPhone);
      }
      const minimum = asked ?? minimumInForce(current?.auto_payout_minimum_minor);
      const phone = newPhone || (current?.payout_phone ?? "");
      if (req.autoPayout && !phone) throw fieldError("payout_phone", "automatic payout needs a payout number");
      const saved = await putPayoutSettings(tx, caller.subject, req.autoPayout, minimum, phone, new Date(clockOf(h.deps.ctx).now()), phone !== signInPhone);
      // Told to the worker at the account's own number (notification): someone else holding the session could
      // otherwise send every later payout, automatic ones without a device proof, to their number unseen.
      const before = current?.payout_phone ?? "";
      if (saved.payout_phone && saved.payout_phone !== before) {
        await emitEvent(tx, "payment", PayoutNumberChangedSchema, {
          workerId: caller.subject, phoneMasked: maskPhone(saved.payout_phone), previousPhoneMasked: before ? maskPhone(before) : "",
        });
      }
      return saved;
    });
    return { settings: settingsMessage(h, settings) };
  };
}
