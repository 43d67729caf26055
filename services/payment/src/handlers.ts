import { once } from "node:events";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { AlreadyExistsError, asConnectError, callerOf, CONSOLE_READERS, decodeTimeIdToken, DependencyUnavailableError, emitEvent, encodePageToken, fieldError, formatMoney, InvalidStateError, keysetPage, keysetTime, maskPhone, mpesaAmount, NotFoundError, pageSize, PermissionDeniedError, refusalOfField, requireCaller, requireKenyanMobile, UnimplementedError, withTransaction } from "@ttip/runtime";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import type { TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { CardProvider, PayoutSettingsSchema } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentMethod } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  ALERT_STATUS, FRAUD_ACTION, FRAUD_REASON, PAYOUT_STATUS_CODE, TIP_STATUS_CODE, payoutMessage, tipMessage,
} from "./convert.js";
import { resolveSuspense, type C2bRow } from "./c2b.js";
import { consoleHandlers } from "./console.js";
import { resultMessage } from "./messages.js";
import { refundCardTip } from "./cards/aftercare.js";
import type { CardTipRow } from "./cards/convert.js";
import { reconcileCardBalance } from "./cards/reconcile.js";
import { reviewCardTip } from "./cards/review.js";
import { createCardTip, reconcileCardTips } from "./cards/tips.js";
import { addMethod, defaultPhone, listMethods, removeMethod } from "./methods.js";
import { isPartner, requirePartnerLinked } from "./partner-access.js";
import { kes } from "./money.js";
import { loadPayout, payoutChangeKey, reconcilePayouts, startPayout, type PayoutRow } from "./payouts.js";
import { approvedSplit, createTip, emitTipSucceeded, isFinal, loadTip, reconcileTips, runAfterCredit, type Deps, type TipRow } from "./tips.js";

/** Who a scanned code tips, from the qr service (signature, expiry and status checked there). */
async function resolveQrCode(deps: Deps, code: string): Promise<TipTarget> {
  const qr = createClient(QrService, deps.ctx.peers("qr"));
  let target: TipTarget | undefined;
  try {
    ({ target } = await qr.resolveQrCode({ code: /^[A-Za-z0-9]{4,12}$/.test(code) ? { case: "shortCode", value: code } : { case: "payload", value: code } }));
  } catch (err) {
    throw refusalOfField(err, "qr_code") ?? new DependencyUnavailableError(`qr_code: cannot be checked now (${asConnectError(err).rawMessage})`);
  }
  if (!target) throw new DependencyUnavailableError("qr_code: cannot be checked now (the qr service answered without a target)");
  return target;
}

const locale = (ctx: HandlerContext) => ctx.requestHeader.get("accept-language") ?? "en";

/**
 * Resolves on the next change of a tip (keyed by its id) or a payout (by
 * payoutChangeKey) in this process, after `ms`, or when the client leaves.
 * Armed before the row is read, so a change in between is not missed.
 */
function nextChange<Row = TipRow>(deps: Deps, key: string, ms: number, signal: AbortSignal): { wait: Promise<Row | undefined>; cancel: () => void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  const onAbort = () => ac.abort();
  signal.addEventListener("abort", onAbort);
  // A change may carry the row as its transaction committed it (saves reading it again).
  const wait = once(deps.changes, key, { signal: ac.signal })
    .then(([row]) => row as Row | undefined, () => undefined)
    .finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    });
  return { wait, cancel: () => ac.abort() };
}

export function registerHandlers(router: ConnectRouter, deps: Deps) {
  const { pool } = deps.ctx;
  const tipOut = (t: TipRow, l?: string) => tipMessage(t, l, deps.config().c2b?.shortCodes[0]);

  router.service(PaymentService, {
    async createTip(req, ctx) {
      const card = req.payment.case === "card";
      const amountMinor = card ? (req.amount?.amountMinor ?? 0n) : mpesaAmount(req.amount, "amount");
      const phone = card ? "" : requireKenyanMobile(String(req.payment.value ?? ""), "mpesa_phone");
      let recipient = { workerId: "", venueId: "", qrCodeId: "" };
      if (req.recipient.case === "qrCode") {
        const target = await resolveQrCode(deps, req.recipient.value);
        // A venue's own code (or a table's) names no worker: the tip goes to the venue's pool.
        if (!target.workerId && !target.venueId) throw new InvalidStateError("qr_code: the code names neither a worker nor a venue");
        if (target.fixedAmount && target.fixedAmount.amountMinor > 0n && (target.fixedAmount.amountMinor !== amountMinor || target.fixedAmount.currency !== (req.amount?.currency ?? "KES"))) {
          throw fieldError("amount", `this code is for exactly ${formatMoney(target.fixedAmount.amountMinor, target.fixedAmount.currency)}`);
        }
        recipient = { workerId: target.workerId, venueId: target.venueId, qrCodeId: target.qrCodeId };
      } else if (req.recipient.case === "workerId") {
        recipient.workerId = req.recipient.value;
      }
      const caller = callerOf(ctx);
      // Before anything is charged or stored: a partner tips only for its linked workers and venues.
      if (isPartner(caller)) await requirePartnerLinked(deps, caller.subject, recipient.workerId, recipient.venueId);
      if (card) {
        if (!recipient.workerId) throw new UnimplementedError("qr_code: card tips to a venue's pool are not available yet; pay by M-Pesa or scan a worker's code");
        const created = await createCardTip(deps, {
          idempotencyKey: req.idempotencyKey,
          ...recipient,
          amount: { currency: req.amount!.currency, amountMinor },
          provider: req.cardProvider === CardProvider.PAYPAL ? "paypal" : "stripe",
          customerCountry: req.customerCountry,
          customerCoversFee: req.customerCoversFee,
          rating: req.rating,
          message: req.message,
          customerEmail: req.customerEmail,
          callerSubject: caller?.subject,
        });
        return {
          tip: tipMessage(created.tip, locale(ctx)),
          stripeClientSecret: created.tip.card_provider === "stripe" ? created.clientSecret : "",
          stripePublishableKey: created.tip.card_provider === "stripe" ? created.publicKey : "",
          paypalApproveUrl: created.tip.card_provider === "paypal" ? created.approveUrl : "",
        };
      }
      const tip = await createTip(deps, {
        idempotencyKey: req.idempotencyKey,
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
      });
      return { tip: tipOut(tip, locale(ctx)) };
    },

    // Anyone holding the tip id (an unguessable UUID the tip page got) may read its status;
    // a partner key, only tips it created or of the workers and venues linked to it.
    async getTip(req, ctx) {
      const tip = await loadTip(pool, req.tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      const caller = callerOf(ctx);
      if (isPartner(caller) && tip.customer_subject !== caller.subject) {
        await requirePartnerLinked(deps, caller.subject, tip.worker_id ?? "", tip.venue_id);
      }
      return { tip: tipOut(tip, locale(ctx)) };
    },

    // Feedback is taken once, and only for a confirmed tip: a rating for money
    // that never moved would mislead the worker and their manager.
    async rateTip(req, ctx) {
      const { rows } = await pool.query<TipRow>(
        `UPDATE payment.tips SET rating = $2, message = $3, rated_at = now()
          WHERE tip_id = $1 AND status = 'succeeded' AND rated_at IS NULL RETURNING *`,
        [req.tipId, req.rating, req.message],
      );
      if (rows[0]) return { tip: tipOut(rows[0], locale(ctx)) };
      const tip = await loadTip(pool, req.tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      if (tip.status !== "succeeded") throw new InvalidStateError("tip_id: feedback is taken only for a tip that went through");
      if (tip.rating === req.rating && tip.message === req.message) return { tip: tipOut(tip, locale(ctx)) };
      throw new InvalidStateError("tip_id: feedback was already given for this tip");
    },

    async *watchTip(req, ctx) {
      let last = "";
      let committed: TipRow | undefined;
      const until = Date.now() + 15 * 60_000;
      while (!ctx.signal.aborted && Date.now() < until) {
        // Woken at once by changes in this process; polls for those made by other replicas.
        const change = nextChange(deps, req.tipId, 1000, ctx.signal);
        try {
          const tip = committed ?? (await loadTip(pool, req.tipId));
          if (!tip) throw new NotFoundError("tip_id: no such tip");
          const card = tip as CardTipRow;
          const key = `${tip.status}|${tip.result_code}|${tip.mpesa_receipt}|${card.next_action_url ?? ""}|${card.card_state ?? ""}`;
          if (key !== last) {
            last = key;
            yield { tip: tipOut(tip, locale(ctx)) };
          }
          if (isFinal(tip.status)) return;
          committed = await change.wait;
        } finally {
          change.cancel();
        }
      }
    },

    async listTips(req, ctx) {
      const caller = requireCaller(ctx);
      const size = pageSize(req.page);
      const cursor = decodeTimeIdToken(req.page?.pageToken);
      const status = req.status ? TIP_STATUS_CODE[req.status] : null;
      const { rows } = await pool.query<TipRow & { page_at: string }>(
        `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.tips WHERE worker_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, tip_id) < ($3::timestamptz, $4::uuid))
         ORDER BY created_at DESC, tip_id DESC LIMIT $5`,
        [caller.subject, status, cursor?.at ?? null, cursor?.id ?? null, size + 1],
      );
      const page = rows.slice(0, size);
      return {
        tips: page.map((t) => tipOut(t, locale(ctx))),
        page: { nextPageToken: rows.length > size ? encodePageToken([page[size - 1].page_at, page[size - 1].tip_id]) : "" },
      };
    },

    async requestPayout(req, ctx) {
      const caller = requireCaller(ctx);
      const amountMinor = mpesaAmount(req.amount, "amount");
      const settings = await loadSettings(caller.subject);
      const phone = req.mpesaPhone ? requireKenyanMobile(req.mpesaPhone, "mpesa_phone") : settings?.payout_phone || (await defaultPhone(pool, caller.subject));
      if (!phone) throw new InvalidStateError("mpesa_phone: no payout number registered; pass one or set it in payout settings");
      if (settings?.payouts_on_hold) throw new InvalidStateError("payouts are on hold for this account; contact support");
      // A retry of a request already verified: the step-up token was spent on the first try.
      const existing = (await pool.query<PayoutRow>("SELECT * FROM payment.payouts WHERE worker_id = $1 AND idempotency_key = $2", [caller.subject, req.idempotencyKey])).rows[0];
      if (existing) {
        if (existing.amount_minor !== amountMinor || existing.phone !== phone) throw new AlreadyExistsError("idempotency_key: already used for a different payout");
        return { payout: payoutMessage(existing) };
      }
      // The device's biometric unlock, proved to the auth service.
      try {
        await createClient(AuthInternalService, deps.ctx.peers("auth")).verifyStepUpToken({ stepUpToken: req.stepUpToken, userId: caller.subject, purpose: "payout" });
      } catch (err) {
        const e = asConnectError(err, Code.Unavailable);
        if (e.code === Code.Unavailable || e.code === Code.Unimplemented || e.code === Code.Internal) {
          throw new DependencyUnavailableError(`step_up_token: cannot be verified now (${e.rawMessage})`);
        }
        throw new PermissionDeniedError(`step_up_token: ${e.rawMessage}`);
      }
      const payout = await startPayout(deps, { workerId: caller.subject, amountMinor, phone, idempotencyKey: req.idempotencyKey, automatic: false });
      return { payout: payoutMessage(payout) };
    },

    async getPayout(req, ctx) {
      const caller = requireCaller(ctx);
      const p = await loadPayout(pool, req.payoutId);
      if (!p || (p.worker_id !== caller.subject && !CONSOLE_READERS.some((r) => caller.roles.includes(r)))) throw new NotFoundError("payout_id: no such payout");
      return { payout: payoutMessage(p) };
    },

    async *watchPayout(req, ctx) {
      const caller = requireCaller(ctx);
      let last = "";
      // As long as a payout may take to resolve (Daraja's queue, then status queries), and no longer.
      const until = Date.now() + 15 * 60_000;
      while (!ctx.signal.aborted && Date.now() < until) {
        // Woken at once by changes in this process; polls for those made by other replicas.
        const change = nextChange<PayoutRow>(deps, payoutChangeKey(req.payoutId), 1000, ctx.signal);
        try {
          const p = await loadPayout(pool, req.payoutId);
          if (!p || p.worker_id !== caller.subject) throw new NotFoundError("payout_id: no such payout");
          const key = `${p.status}|${p.result_code ?? ""}|${p.mpesa_receipt ?? ""}`;
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
    },

    async listPayouts(req, ctx) {
      const caller = requireCaller(ctx);
      const size = pageSize(req.page);
      const cursor = decodeTimeIdToken(req.page?.pageToken);
      const status = req.status ? PAYOUT_STATUS_CODE[req.status] : null;
      const { rows } = await pool.query<PayoutRow & { page_at: string }>(
        `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.payouts WHERE worker_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, payout_id) < ($3::timestamptz, $4::uuid))
         ORDER BY created_at DESC, payout_id DESC LIMIT $5`,
        [caller.subject, status, cursor?.at ?? null, cursor?.id ?? null, size + 1],
      );
      const page = rows.slice(0, size);
      return {
        payouts: page.map(payoutMessage),
        page: { nextPageToken: rows.length > size ? encodePageToken([page[size - 1].page_at, page[size - 1].payout_id]) : "" },
      };
    },

    async getPayoutSettings(_req, ctx) {
      const caller = requireCaller(ctx);
      return { settings: settingsMessage(await loadSettings(caller.subject)) };
    },

    async listPaymentMethods(_req, ctx) {
      const caller = requireCaller(ctx);
      return { paymentMethods: await listMethods(pool, caller.subject) };
    },

    async addPaymentMethod(req, ctx) {
      const caller = requireCaller(ctx);
      const phone = requireKenyanMobile(req.mpesaPhone, "mpesa_phone");
      return { paymentMethod: await addMethod(pool, caller.subject, phone, req.label, req.makeDefault) };
    },

    async removePaymentMethod(req, ctx) {
      const caller = requireCaller(ctx);
      await removeMethod(pool, caller.subject, req.paymentMethodId);
      return {};
    },

    async updatePayoutSettings(req, ctx) {
      const caller = requireCaller(ctx);
      const current = await loadSettings(caller.subject);
      const minimum = req.autoPayoutMinimum ? mpesaAmount(req.autoPayoutMinimum, "auto_payout_minimum") : current?.auto_payout_minimum_minor ?? 100n;
      const phone = req.payoutPhone ? requireKenyanMobile(req.payoutPhone, "payout_phone") : current?.payout_phone ?? "";
      if (req.autoPayout && !phone) throw fieldError("payout_phone", "automatic payout needs a payout number");
      const { rows } = await pool.query<Settings>(
        `INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (worker_id) DO UPDATE SET auto_payout = $2, auto_payout_minimum_minor = $3, payout_phone = $4, updated_at = now()
         RETURNING *`,
        [caller.subject, req.autoPayout, minimum, phone],
      );
      return { settings: settingsMessage(rows[0]) };
    },
  });

  router.service(PaymentAdminService, {
    ...consoleHandlers(deps, (t) => tipOut(t)),
    async listFraudAlerts(req) {
      const size = pageSize(req.page);
      const cursor = decodeTimeIdToken(req.page?.pageToken);
      const status = req.status ? Object.entries(ALERT_STATUS).find(([, v]) => v === req.status)?.[0] : null;
      const reason = req.reason ? Object.entries(FRAUD_REASON).find(([, v]) => v === req.reason)?.[0] : null;
      const { rows } = await pool.query(
        `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.fraud_alerts WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reason = $2)
           AND ($3::timestamptz IS NULL OR (created_at, alert_id) < ($3::timestamptz, $4::uuid))
         ORDER BY created_at DESC, alert_id DESC LIMIT $5`,
        [status ?? null, reason ?? null, cursor?.at ?? null, cursor?.id ?? null, size + 1],
      );
      const page = rows.slice(0, size);
      return {
        alerts: page.map((a) => ({
          alertId: a.alert_id,
          reason: FRAUD_REASON[a.reason],
          action: FRAUD_ACTION[a.action],
          status: ALERT_STATUS[a.status],
          tipId: a.tip_id ?? "",
          payoutId: a.payout_id ?? "",
          workerId: a.worker_id ?? "",
          detail: a.detail,
          createdAt: timestampFromDate(a.created_at),
          reviewedBy: a.reviewed_by,
          reviewedAt: a.reviewed_at ? timestampFromDate(a.reviewed_at) : undefined,
        })),
        page: { nextPageToken: rows.length > size ? encodePageToken([page[size - 1].page_at, page[size - 1].alert_id]) : "" },
      };
    },

    async reviewTip(req, ctx) {
      const admin = requireCaller(ctx);
      const tip = await loadTip(pool, req.tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      if (tip.status !== "held_for_review") throw new InvalidStateError("tip_id: the tip is not held for review");
      if (!tip.credit_entry_id) throw new InvalidStateError("tip_id: the payment is still being recorded; try again shortly");
      if (tip.method === "card") return { tip: tipMessage(await reviewCardTip(deps, tip as CardTipRow, req.approve, admin.subject, req.note), locale(ctx)) };
      // Out of what M-Pesa took, which may differ from what was asked (the reason it was held).
      const split = approvedSplit(tip);
      if (req.approve) {
        // Idempotent on its key: a repeated approval posts nothing new.
        await deps.ledger.releaseFromSuspense({
          key: `${tip.credit_key}:approved`, receipt: tip.mpesa_receipt ?? tip.credit_key!,
          recipient: tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id },
          ...split,
        });
      }
      const updated = await withTransaction(pool, async (tx) => {
        const { rows } = await tx.query<TipRow>(
          `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END,
             result_message = $4, worker_receives_minor = CASE WHEN $3 THEN $5 ELSE worker_receives_minor END
            WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
          [tip.tip_id, req.approve ? "succeeded" : "failed", req.approve, resultMessage(req.approve ? "0" : "review_rejected"), split.workerMinor],
        );
        const t = rows[0];
        if (!t) return undefined;
        await tx.query(
          `UPDATE payment.fraud_alerts SET status = $2, reviewed_by = $3, reviewed_at = now(), detail = detail || ' | review: ' || $4
            WHERE tip_id = $1 AND status = 'open'`,
          [tip.tip_id, req.approve ? "approved" : "rejected", admin.subject, req.note],
        );
        if (req.approve) await emitTipSucceeded(tx, t);
        else {
          await emitEvent(tx, "payment", TipFailedSchema, {
            tipId: t.tip_id, workerId: t.worker_id ?? "", qrCodeId: t.qr_code_id, amount: kes(t.amount_minor), method: PaymentMethod.MPESA,
            resultCode: t.result_code, reason: t.result_message, venueId: t.venue_id, createdBy: t.customer_subject,
          }, t.tip_id);
        }
        return t;
      });
      if (!updated) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
      deps.changes.emit(tip.tip_id);
      if (req.approve) runAfterCredit(deps, updated);
      return { tip: tipOut(updated, locale(ctx)) };
    },

    async holdPayouts(req) {
      await pool.query(
        `INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, hold_reason) VALUES ($1, true, $2)
         ON CONFLICT (worker_id) DO UPDATE SET payouts_on_hold = true, hold_reason = $2, updated_at = now()`,
        [req.workerId, req.reason],
      );
      return {};
    },

    async releasePayouts(req) {
      await pool.query("UPDATE payment.payout_settings SET payouts_on_hold = false, hold_reason = '', updated_at = now() WHERE worker_id = $1", [req.workerId]);
      return {};
    },

    async blockPhoneNumber(req, ctx) {
      const admin = requireCaller(ctx);
      const phone = requireKenyanMobile(req.phone, "phone");
      await pool.query(
        `INSERT INTO payment.blocked_phones (phone, reason, blocked_by) VALUES ($1, $2, $3)
         ON CONFLICT (phone) DO UPDATE SET reason = $2, blocked_by = $3`,
        [phone, req.reason, admin.subject],
      );
      return {};
    },

    async unblockPhoneNumber(req) {
      await pool.query("DELETE FROM payment.blocked_phones WHERE phone = $1", [requireKenyanMobile(req.phone, "phone")]);
      return {};
    },

    async listSuspensePayments(req) {
      const size = pageSize(req.page);
      const cursor = decodeTimeIdToken(req.page?.pageToken);
      const { rows } = await pool.query<C2bRow & { page_at: string }>(
        `SELECT *, ${keysetTime("received_at")} AS page_at FROM payment.c2b_payments WHERE outcome = 'suspense' AND ($1 OR resolution = 'open')
           AND ($2::timestamptz IS NULL OR (received_at, callback_id) < ($2::timestamptz, $3::uuid))
         ORDER BY received_at DESC, callback_id DESC LIMIT $4`,
        [req.includeResolved, cursor?.at ?? null, cursor?.id ?? null, size + 1],
      );
      const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.callback_id]);
      return {
        payments: items.map(suspenseMessage),
        page: { nextPageToken },
      };
    },

    async resolveSuspensePayment(req, ctx) {
      const admin = requireCaller(ctx);
      const { row, tip } = await resolveSuspense(deps, {
        receipt: req.receipt,
        matchAccountReference: req.action.case === "matchAccountReference" ? req.action.value : undefined,
        refund: req.action.case === "refund",
        note: req.note,
        admin: admin.subject,
      });
      return { payment: suspenseMessage(row), tip: tip ? tipOut(tip, locale(ctx)) : undefined };
    },

    async refundTip(req, ctx) {
      const admin = requireCaller(ctx);
      const r = await refundCardTip(deps, { tipId: req.tipId, idempotencyKey: req.idempotencyKey, amount: req.amount, reason: req.reason, requestedBy: admin.subject });
      return { tip: tipMessage(r.tip, locale(ctx)), refundId: r.refundId };
    },

    async listUnmatchedCallbacks(req) {
      const size = pageSize(req.page);
      const cursor = decodeTimeIdToken(req.page?.pageToken);
      const { rows } = await pool.query(
        `SELECT *, ${keysetTime("received_at")} AS page_at FROM payment.callbacks WHERE NOT matched AND ($1 OR NOT resolved)
           AND ($2::timestamptz IS NULL OR (received_at, callback_id) < ($2::timestamptz, $3::uuid))
         ORDER BY received_at DESC, callback_id DESC LIMIT $4`,
        [req.includeResolved, cursor?.at ?? null, cursor?.id ?? null, size + 1],
      );
      const page = rows.slice(0, size);
      return {
        callbacks: page.map((c) => ({
          callbackId: c.callback_id,
          source: c.source,
          externalReference: c.external_reference,
          remoteAddress: c.remote_address,
          rawBody: new Uint8Array(c.raw_body),
          receivedAt: timestampFromDate(c.received_at),
          resolved: c.resolved,
        })),
        page: { nextPageToken: rows.length > size ? encodePageToken([page[size - 1].page_at, page[size - 1].callback_id]) : "" },
      };
    },
  });

  router.service(PaymentInternalService, {
    async reconcilePending(req) {
      const counts = await reconcileTips(deps, req.limit);
      await reconcilePayouts(deps, req.limit);
      const cards = await reconcileCardTips(deps, req.limit);
      counts.queried += cards.checked;
      counts.settled += cards.settled;
      return counts;
    },

    async reconcileCardBalance(req) {
      const c = await reconcileCardBalance(deps, "stripe", req.limit);
      return { matched: c.matched, feesRecorded: c.feesRecorded, unmatched: c.unmatched, payouts: c.payouts };
    },

    async getTipForReceipt(req) {
      const tip = await loadTip(pool, req.tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      // Names belong to the auth and qr services; the receipt's sender looks them up.
      return { tip: tipOut(tip), workerDisplayName: "", venueName: "", workerReceived: kes(tip.worker_receives_minor) };
    },
  });

  interface Settings {
    auto_payout: boolean;
    auto_payout_minimum_minor: bigint;
    payout_phone: string;
    payouts_on_hold: boolean;
  }
  async function loadSettings(workerId: string): Promise<Settings | undefined> {
    return (await pool.query<Settings>("SELECT * FROM payment.payout_settings WHERE worker_id = $1", [workerId])).rows[0];
  }
  function settingsMessage(s: Settings | undefined) {
    return create(PayoutSettingsSchema, {
      autoPayout: s?.auto_payout ?? false,
      autoPayoutMinimum: kes(s?.auto_payout_minimum_minor ?? 100n),
      payoutPhoneMasked: s?.payout_phone ? maskPhone(s.payout_phone) : "",
    });
  }
}

function suspenseMessage(r: C2bRow) {
  return {
    receipt: r.trans_id,
    amount: kes(r.amount_minor),
    accountReference: r.bill_ref_number,
    businessShortCode: r.business_short_code,
    reason: r.reason,
    suggestions: r.suggestions,
    resolution: r.resolution,
    tipId: r.tip_id ?? "",
    receivedAt: timestampFromDate(r.received_at),
    resolvedBy: r.resolved_by,
    resolvedAt: r.resolved_at ? timestampFromDate(r.resolved_at) : undefined,
  };
}
