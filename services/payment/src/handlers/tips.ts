import { Code, type ServiceImpl } from "@connectrpc/connect";
import { asConnectError, callerOf, decodeTimeIdToken, DependencyUnavailableError, fieldError, formatMoney, InvalidStateError, keysetPage, mpesaAmount, NotFoundError, pageSize, type Principal, refusalOfField, requireCaller, requireKenyanMobile } from "@ttip/runtime";
import type { TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { CardProvider } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TIP_STATUS_CODE, tipMessage } from "../convert.js";
import { createCardTip } from "../cards/tips.js";
import { isPartner, requirePartnerLinked, tipKeyOf } from "../partner-access.js";
import { qrClient } from "../peer-clients.js";
import { accountBlocked } from "../stores/payout-settings.js";
import { rateTip, tipById, tipOf, workerTips, type Tip } from "../stores/tips.js";
import { createTip, isFinal, type Deps, type TipRow } from "../tips.js";
import { locale, nextChange, type PaymentHandlerContext } from "./context.js";

/**
 * How long qr has to answer a scanned code's lookup (as USSD's): one short read there. Past it the
 * tip is refused UNAVAILABLE naming the call, before anything is stored, rather than held for as long as qr is stuck.
 */
const RESOLVE_QR_TIMEOUT_MS = 3_000;

/** Who a scanned code tips, from the qr service (signature, expiry and status checked there). */
async function resolveQrCode(deps: Deps, code: string): Promise<TipTarget> {
  const qr = qrClient(deps.ctx);
  let target: TipTarget | undefined;
  try {
    // A short code as people write it ("K7M-4QX", "k7m 4qx"), as qr reads it; before, taken for a payload and refused as tampered.
    const typed = code.replace(/[\s-]/g, "");
    const asked = /^[A-Za-z0-9]{4,12}$/.test(typed) ? { case: "shortCode" as const, value: typed } : { case: "payload" as const, value: code };
    ({ target } = await qr.resolveQrCode({ code: asked }, { timeoutMs: RESOLVE_QR_TIMEOUT_MS }));
  } catch (err) {
    const e = asConnectError(err);
    const why = e.code === Code.DeadlineExceeded ? `qr did not answer ResolveQrCode within ${RESOLVE_QR_TIMEOUT_MS} ms; retry` : e.rawMessage;
    throw refusalOfField(err, "qr_code") ?? new DependencyUnavailableError(`qr_code: cannot be checked now (${why})`);
  }
  if (!target) throw new DependencyUnavailableError("qr_code: cannot be checked now (the qr service answered without a target)");
  return target;
}


type Impl = ServiceImpl<typeof PaymentService>;

/** Tips: a customer starts one, reads and watches it, rates it; a worker lists theirs. */
export function tipHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    createTip: createTipHandler(h),
    getTip: getTipHandler(h),
    rateTip: rateTipHandler(h),
    watchTip: watchTipHandler(h),
    listTips: listTipsHandler(h),
  };
}

type CreateTipRequest = Parameters<Impl["createTip"]>[0];
interface Recipient { workerId: string; venueId: string; qrCodeId: string }

/** Who a tip is for, checked before anything is charged or stored: the code's target, a partner's link. */
async function recipientOf(deps: Deps, req: CreateTipRequest, amountMinor: bigint, caller: Principal | undefined): Promise<Recipient> {
  const recipient = { workerId: "", venueId: "", qrCodeId: "" };
  if (req.recipient.case === "qrCode") {
    const target = await resolveQrCode(deps, req.recipient.value);
    // A venue's own code (or a table's) names no worker: the tip goes to the venue's pool.
    if (!target.workerId && !target.venueId) throw new InvalidStateError("qr_code: the code names neither a worker nor a venue");
    if (target.fixedAmount && target.fixedAmount.amountMinor > 0n && (target.fixedAmount.amountMinor !== amountMinor || target.fixedAmount.currency !== (req.amount?.currency ?? "KES"))) {
      throw fieldError("amount", `this code is for exactly ${formatMoney(target.fixedAmount.amountMinor, target.fixedAmount.currency)}`);
    }
    Object.assign(recipient, { workerId: target.workerId, venueId: target.venueId, qrCodeId: target.qrCodeId });
  } else if (req.recipient.case === "workerId") {
    recipient.workerId = req.recipient.value;
  }
  // A partner tips only for its linked workers and venues (first: an unlinked partner learns nothing of a worker).
  if (isPartner(caller)) await requirePartnerLinked(deps, caller.subject, recipient.workerId, recipient.venueId);
  // qr refuses a blocked worker's codes; a tip by id does not pass qr, and a blocked account (often for fraud)
  // kept taking tips that way.
  if (req.recipient.case === "workerId" && (await accountBlocked(deps.ctx.pool, recipient.workerId))) {
    throw new InvalidStateError("worker_id: this worker is not taking tips");
  }
  return recipient;
}

/**
 * The recipient of a tip already placed under this key, when its checks now fail (the code revoked, qr out of reach,
 * the partner unlinked since): a retry after a lost answer gets its tip, whose prompt may be on the customer's phone,
 * not a refusal. The rest of the request is compared as for any replay (ALREADY_EXISTS); a code is not, as a refused
 * code's id is not known here. Not a card tip with no payment yet: its replay would start the charge the checks
 * now refuse. Otherwise the checks' error.
 */
async function placedRecipient(deps: Deps, req: CreateTipRequest, key: string, caller: Principal | undefined, err: unknown): Promise<Recipient> {
  const { rows } = await deps.ctx.pool.query<Pick<TipRow, "worker_id" | "venue_id" | "qr_code_id"> & { card_provider: string | null; provider_payment_id: string | null }>(
    "SELECT worker_id, venue_id, qr_code_id, card_provider, provider_payment_id FROM payment.tips WHERE idempotency_key = $1 AND customer_subject = $2",
    [key, caller?.subject ?? ""],
  );
  const placed = rows[0];
  const sameKind = req.recipient.case === "qrCode" ? !!placed?.qr_code_id : !placed?.qr_code_id && placed?.worker_id === req.recipient.value;
  const chargeStarted = !placed?.card_provider || !!placed.provider_payment_id;
  if (!placed || !sameKind || !chargeStarted) throw err;
  return { workerId: placed.worker_id ?? "", venueId: placed.venue_id ?? "", qrCodeId: placed.qr_code_id ?? "" };
}

function createTipHandler(h: PaymentHandlerContext): Impl["createTip"] {
  return async (req, ctx) => {
    const { deps, tipOut } = h;
    const card = req.payment.case === "card";
    const amountMinor = card ? (req.amount?.amountMinor ?? 0n) : mpesaAmount(req.amount, "amount");
    const phone = card ? "" : requireKenyanMobile(String(req.payment.value ?? ""), "mpesa_phone");
    const caller = callerOf(ctx);
    const idempotencyKey = await tipKeyOf(deps.ctx.pool, caller, req.idempotencyKey);
    const recipient = await recipientOf(deps, req, amountMinor, caller).catch((err: unknown) => placedRecipient(deps, req, idempotencyKey, caller, err));
    if (card) {
      const created = await createCardTip(deps, {
        idempotencyKey,
        ...recipient,
        amount: { currency: req.amount!.currency, amountMinor },
        provider: req.cardProvider === CardProvider.PAYPAL ? "paypal" : "stripe",
        customerCountry: req.customerCountry,
        customerCoversFee: req.customerCoversFee,
        rating: req.rating,
        message: req.message,
        customerEmail: req.customerEmail,
        callerSubject: caller?.subject,
        locale: req.locale,
      });
      return {
        tip: tipMessage(tipOf(created.tip), locale(ctx)),
        stripeClientSecret: created.tip.card_provider === "stripe" ? created.clientSecret : "",
        stripePublishableKey: created.tip.card_provider === "stripe" ? created.publicKey : "",
        paypalApproveUrl: created.tip.card_provider === "paypal" ? created.approveUrl : "",
      };
    }
    const tip = await createTip(deps, {
      idempotencyKey,
      workerId: recipient.workerId,
      venueId: recipient.venueId,
      qrCodeId: recipient.qrCodeId,
      amountMinor,
      phone,
      customerCoversFee: req.customerCoversFee,
      rating: req.rating,
      message: req.message,
      customerEmail: req.customerEmail,
      callerSubject: caller?.subject,
      locale: req.locale,
    });
    return { tip: tipOut(tipOf(tip), locale(ctx)) };
  };
}

// Anyone holding the tip id (an unguessable UUID the tip page got) may read its status;
// a partner key, only tips it created or of the workers and venues linked to it.
function getTipHandler(h: PaymentHandlerContext): Impl["getTip"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    const tip = await tipById(pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    const caller = callerOf(ctx);
    if (isPartner(caller) && tip.customerSubject !== caller.subject) {
      await requirePartnerLinked(deps, caller.subject, tip.workerId ?? "", tip.venueId);
    }
    return { tip: tipOut(tip, locale(ctx)) };
  };
}

// Feedback is taken once, and only for a confirmed tip: a rating for money
// that never moved would mislead the worker and their manager.
function rateTipHandler(h: PaymentHandlerContext): Impl["rateTip"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    const rated = await rateTip(pool, req.tipId, req.rating, req.message);
    if (rated) {
      // The rating is part of what a watcher is shown: a row kept from before it must not stand in for a first read.
      deps.changes.announce(req.tipId);
      return { tip: tipOut(rated, locale(ctx)) };
    }
    const tip = await tipById(pool, req.tipId);
    if (!tip) throw new NotFoundError("tip_id: no such tip");
    if (tip.status !== "succeeded") throw new InvalidStateError("tip_id: feedback is taken only for a tip that went through");
    if (tip.rating === req.rating && tip.message === req.message) return { tip: tipOut(tip, locale(ctx)) };
    throw new InvalidStateError("tip_id: feedback was already given for this tip");
  };
}

function watchTipHandler(h: PaymentHandlerContext): Impl["watchTip"] {
  return async function* (req, ctx) {
    const { deps, pool, tipOut } = h;
    let last = "";
    // The row this replica committed just now, if it has one (the tip CreateTip answered, a decision): no first read.
    const recent = deps.changes.recent(req.tipId) as TipRow | undefined;
    let committed: Tip | undefined = recent && tipOf(recent);
    const until = Date.now() + 15 * 60_000;
    while (!ctx.signal.aborted && Date.now() < until) {
      // Woken at once by a change on any replica; polls in case a wake-up was lost.
      const change = nextChange(deps, req.tipId, ctx.signal);
      try {
        const tip = committed ?? (await tipById(pool, req.tipId));
        if (!tip) throw new NotFoundError("tip_id: no such tip");
        const key = `${tip.status}|${tip.resultCode}|${tip.mpesaReceipt}|${tip.card?.nextActionUrl ?? ""}|${tip.card?.state ?? ""}`;
        if (key !== last) {
          last = key;
          yield { tip: tipOut(tip, locale(ctx)) };
        }
        if (isFinal(tip.status)) return;
        // The row a change carries is mapped here, where it leaves the flow.
        const row = await change.wait;
        committed = row && tipOf(row);
      } finally {
        change.cancel();
      }
    }
  };
}

function listTipsHandler(h: PaymentHandlerContext): Impl["listTips"] {
  return async (req, ctx) => {
    const { pool, tipOut } = h;
    const caller = requireCaller(ctx);
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const status = req.status ? TIP_STATUS_CODE[req.status] : null;
    const rows = await workerTips(pool, caller.subject, status, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.pageAt, r.tipId]);
    return {
      tips: items.map((t) => tipOut(t, locale(ctx))),
      page: { nextPageToken },
    };
  };
}
