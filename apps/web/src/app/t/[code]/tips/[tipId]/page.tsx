import { Code, ConnectError } from "@connectrpc/connect";
import { cookies, headers } from "next/headers";
import { notFound } from "next/navigation";
import { MpesaReversalState, PaymentMethodKind, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { serverClient } from "../../../../../lib/api";
import { pickLocale, translator, type Translate } from "../../../../../lib/i18n";
import { formatMoney } from "../../../../../lib/money";
import { LanguageSwitch, WhoCard } from "../../parts";
import { resolveTarget } from "../../target";
import { REFRESHED } from "../../../../../lib/tip-seed";
import { FeedbackForm } from "./feedback-form";
import { ForgetTipSeed, LiveStatus } from "./live-status";

export const dynamic = "force-dynamic";

type Search = Record<string, string | string[] | undefined>;
const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/**
 * Where the tip stands. While M-Pesa has not answered, it refreshes itself
 * (a meta refresh where scripts do not run; the live stream where they do).
 */
export default async function TipStatusPage({ params, searchParams }: { params: Promise<{ code: string; tipId: string }>; searchParams: Promise<Search> }) {
  const { code, tipId } = await params;
  const search = await searchParams;
  const payload = one(search.p);
  const feedback = one(search.feedback);
  const locale = pickLocale((await cookies()).get("ttip_lang")?.value, (await headers()).get("accept-language"));
  const t = translator(locale);
  if (!/^[0-9a-f-]{36}$/.test(tipId)) notFound();
  let tip: Tip | undefined;
  try {
    tip = (await serverClient(PaymentService, { locale }).getTip({ tipId })).tip;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound || ConnectError.from(err).code === Code.InvalidArgument) notFound();
    throw err;
  }
  if (!tip) notFound();
  const resolved = await resolveTarget(code, payload);
  // Another code's page with this tip's id would say its owner received the tip: "not found", as for an unknown tip.
  if ("target" in resolved && !tipOfTarget(tip, resolved.target)) notFound();
  const name = "target" in resolved ? resolved.target.displayName : "";
  const pageUrl = `/t/${encodeURIComponent(code)}/tips/${tipId}${payload ? `?p=${encodeURIComponent(payload)}` : ""}`;
  // The amount again only in shillings, which the tip page's M-Pesa amounts are: a USD 50 card tip's 5000 cents were
  // offered as KES 50.
  const again = tip.amount?.currency === "KES" ? tip.amount.amountMinor : "";
  const tipPage = `/t/${encodeURIComponent(code)}?${payload ? `p=${encodeURIComponent(payload)}&` : ""}amount=${again}`;
  const pending = tip.status === TipStatus.PENDING;
  // A push that failed while its page offered the paybill (no prompt came, or it timed out): the customer may have
  // paid that way meanwhile, which credits this very tip when M-Pesa reports it. Not "not charged, try again".
  const paybillMayCome = tip.status === TipStatus.FAILED && tip.method !== PaymentMethodKind.CARD && tip.paybillNumber !== "" && !PAYMENT_TAKEN.has(tip.resultCode);
  const total = formatMoney(tip.charged?.amountMinor ?? 0n, tip.charged?.currency || "KES");

  return (
    <main>
      {pending ? (
        // Without scripts the page reloads itself until M-Pesa answers (marked: middleware.ts keeps the seed then).
        <noscript>
          <meta httpEquiv="refresh" content={`3;url=${pageUrl}${payload ? "&" : "?"}${REFRESHED}=1`} />
        </noscript>
      ) : null}
      <LanguageSwitch locale={locale} back={pageUrl} t={t} />
      {"target" in resolved ? <WhoCard target={resolved.target} t={t} locale={locale} heading={t("statusTitle", { name: "" }).trim()} /> : null}
      <section aria-labelledby="status-heading">
        <h2 id="status-heading" className="sr-only">{t("liveStatus")}</h2>
        <div role="status" aria-live="polite" aria-atomic="true">
          <Status tip={tip} t={t} name={name} total={total} />
          <GivenBack tip={tip} t={t} />
        </div>
      </section>
      <ForgetTipSeed shortCode={code} />
      {/* Expired may still turn out paid (M-Pesa's answer came late), and a held tip be approved or declined: watched too, so the page says so. */}
      {pending || paybillMayCome || tip.status === TipStatus.EXPIRED || tip.status === TipStatus.HELD_FOR_REVIEW ? <LiveStatus tipId={tip.tipId} status={tip.status} settled={!pending} /> : null}
      {tip.status === TipStatus.SUCCEEDED ? <Feedback tip={tip} t={t} name={name} back={pageUrl} outcome={feedback} /> : null}
      {(tip.status === TipStatus.FAILED && !PAYMENT_TAKEN.has(tip.resultCode)) || tip.status === TipStatus.EXPIRED ? (
        <>
          <a className="button" href={tipPage}>{t("tryAgain")}</a>
          <p className="muted">{tip.status === TipStatus.EXPIRED ? t("expiredTryAgainNote") : paybillMayCome ? t("paybillTryAgainNote", { name }) : t("tryAgainNote")}</p>
        </>
      ) : null}
    </main>
  );
}

/**
 * A tip's failures whose payment was taken: declined after review (being given back, or with support), refunded, or
 * credited as another tip. Their page says what became of the money; "not charged" would be untrue, and trying
 * again would pay again.
 */
const PAYMENT_TAKEN = new Set(["review_rejected", "review_rejected_reopened", "refunded", "paid_elsewhere"]);

/** An M-Pesa payment support gave back (a refund the customer asked for, a declined tip): whole, as M-Pesa reverses it. */
function GivenBack({ tip, t }: { tip: Tip; t: Translate }) {
  const total = formatMoney(tip.refunded?.amountMinor ?? 0n, tip.refunded?.currency || "KES");
  if (tip.mpesaReversal === MpesaReversalState.PENDING) return <p className="notice" data-testid="given-back">{t("reversalPending", { total })}</p>;
  if (tip.mpesaReversal === MpesaReversalState.REVERSED) return <p className="notice" data-testid="given-back">{t("reversed", { total })}</p>;
  return null;
}

function Status({ tip, t, name, total }: { tip: Tip; t: Translate; name: string; total: string }) {
  const phone = tip.customerPhoneMasked;
  switch (tip.status) {
    case TipStatus.PENDING:
      // A card tip waits for the card (or its bank's 3-D Secure), not a phone.
      if (tip.method === PaymentMethodKind.CARD) return <p className="notice">{tip.resultMessage || total}</p>;
      return (
        <>
          <ol className="steps">
            <li className="done">{t("stepSent", { phone })}</li>
            <li className="now" aria-current="step">{t("stepPin")}</li>
            <li>{t("stepDone")}</li>
          </ol>
          <p className="notice">{t("waiting", { total })}</p>
          <p className="muted">{t("refreshing")}</p>
          <NoPrompt tip={tip} t={t} total={total} />
        </>
      );
    case TipStatus.SUCCEEDED:
      return (
        <>
          {tip.method === PaymentMethodKind.CARD ? null : (
            <ol className="steps">
              <li className="done">{t("stepSent", { phone })}</li>
              <li className="done">{t("stepPin")}</li>
              <li className="done">{t("stepDone")}</li>
            </ol>
          )}
          <h1>{t("received", { name })}</h1>
          <p>{total}</p>
          {tip.mpesaReceipt ? <p>{t("receipt", { receipt: tip.mpesaReceipt })}</p> : null}
          {tip.method === PaymentMethodKind.CARD ? null : <p className="muted">{t("smsReceipt")}</p>}
        </>
      );
    case TipStatus.EXPIRED:
      // M-Pesa never said: the customer may have paid (a late answer still credits this tip). Never "not charged".
      return (
        <>
          <h1>{t("expiredTitle")}</h1>
          <p className="notice">{t("expiredNote", { name })}</p>
        </>
      );
    case TipStatus.HELD_FOR_REVIEW:
      return (
        <>
          <h1>{t("heldTitle")}</h1>
          <p>{tip.resultMessage}</p>
        </>
      );
    default:
      return (
        <>
          <h1>{t("failedTitle")}</h1>
          <p className="notice bad">{tip.resultMessage}</p>
        </>
      );
  }
}

/** Whether the tip was made to this code (or, made without one, to its worker or venue). */
function tipOfTarget(tip: Tip, target: TipTarget): boolean {
  if (tip.qrCodeId) return tip.qrCodeId === target.qrCodeId;
  return tip.workerId ? tip.workerId === target.workerId : tip.venueId === target.venueId;
}

/**
 * When the STK prompt never reaches the phone: the paybill and this tip's own
 * account reference. Paid that way, M-Pesa reports it against this very tip,
 * which is credited once however the payment is reported. (A new tip, as a
 * USSD session would start, could be charged beside a late prompt: not offered.)
 */
function NoPrompt({ tip, t, total }: { tip: Tip; t: Translate; total: string }) {
  if (!tip.paybillNumber || !tip.paybillAccountReference) return null;
  return (
    <section aria-labelledby="no-prompt-heading" className="fallback">
      <h2 id="no-prompt-heading">{t("noPrompt")}</h2>
      <p>{t("noPromptBody")}</p>
      <ol>
        <li>{t("paybill", { paybill: tip.paybillNumber, account: tip.paybillAccountReference })}</li>
        <li>{t("paybillAmount", { total })}</li>
      </ol>
    </section>
  );
}

/** The refusal each outcome of sendFeedback (feedback.ts) shows. */
const FEEDBACK_ERRORS = { invalid: "err_rating", refused: "err_feedback", missing: "err_feedbackMissing", retry: "err_feedbackRetry" } as const;

/** The optional rating and message, once the tip is confirmed. */
function Feedback({ tip, t, name, back, outcome }: { tip: Tip; t: Translate; name: string; back: string; outcome?: string }) {
  if (tip.rating > 0) return <p className="notice" role="status">{t("thanksFeedback")}</p>;
  // Own keys only: `in` also finds every object's inherited names (?feedback=constructor).
  const error = outcome && Object.hasOwn(FEEDBACK_ERRORS, outcome) ? t(FEEDBACK_ERRORS[outcome as keyof typeof FEEDBACK_ERRORS]) : undefined;
  return (
    <FeedbackForm
      tipId={tip.tipId}
      back={back}
      words={{ heading: t("rateHeading"), legend: t("ratingLegend"), stars: [1, 2, 3, 4, 5].map((n) => t("star", { n })), message: t("message", { name }), send: t("send"), error }}
    />
  );
}
