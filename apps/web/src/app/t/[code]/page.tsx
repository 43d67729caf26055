import { randomUUID } from "node:crypto";
import { cookies, headers } from "next/headers";
import { PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { serverClient } from "../../../lib/api";
import { pickLocale, translator } from "../../../lib/i18n";
import { formatMoney } from "../../../lib/money";
import { LanguageSwitch, WhoCard } from "./parts";
import { resolveTarget } from "./target";
import { isSeed, SEED_COOKIE } from "../../../lib/tip-seed";
import { TipForm, type Preset } from "./tip-form";
import { CardForm } from "./card-form";
import { CARD_CURRENCIES } from "@ttip/payment/card-currencies";

export const dynamic = "force-dynamic";

/** The only currency M-Pesa moves. */
const MPESA_CURRENCY = "KES";

type Search = Record<string, string | string[] | undefined>;
const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/** The seed this device kept for the code (tip-seed.ts, its cookie), else a new one. */
const keptSeedOf = (cookie: string | undefined) => (isSeed(cookie) ? cookie : randomUUID());

/** The customer's tip page, at the path QR codes encode: everything a person needs is in the first HTML. */
export default async function TipPage({ params, searchParams }: { params: Promise<{ code: string }>; searchParams: Promise<Search> }) {
  const { code } = await params;
  const search = await searchParams;
  const payload = one(search.p);
  const h = await headers();
  const jar = await cookies();
  const locale = pickLocale(jar.get("ttip_lang")?.value, h.get("accept-language"));
  const t = translator(locale);
  const here = `/t/${encodeURIComponent(code)}${payload ? `?p=${encodeURIComponent(payload)}` : ""}`;

  const resolved = await resolveTarget(code, payload, { userAgent: h.get("user-agent") ?? "", referrer: h.get("referer") ?? "" });
  if ("problem" in resolved) {
    return (
      <main>
        <LanguageSwitch locale={locale} back={here} t={t} />
        <h1>{t("problemTitle")}</h1>
        <p className="notice bad" role="alert">{t(resolved.problem)}</p>
      </main>
    );
  }
  const { target } = resolved;
  const asked = target.currency || MPESA_CURRENCY;
  // Each amount in its own currency: a code keeps the one it was made in when its owner's currency changes later.
  const fixedAmount = target.fixedAmount && target.fixedAmount.amountMinor > 0n ? { minor: target.fixedAmount.amountMinor, currency: target.fixedAmount.currency || asked } : undefined;
  const fixed = fixedAmount?.currency === MPESA_CURRENCY ? fixedAmount.minor : undefined;
  // M-Pesa moves Kenya shillings only: amounts in another currency (a guide's USD) are left to the card,
  // and the M-Pesa form takes a typed amount in KES (a fixed amount in another currency cannot be paid by M-Pesa).
  const currency = MPESA_CURRENCY;
  const fixedElsewhere = fixedAmount !== undefined && fixed === undefined;
  const amounts = fixedAmount ? (fixed ? [fixed] : []) : target.suggestedAmounts.filter((m) => (m.currency || asked) === MPESA_CURRENCY && m.amountMinor > 0n).map((m) => m.amountMinor).slice(0, 6);
  // The card pays a fixed amount as it is (in whole units, as the card form takes them).
  const cardFixed = fixedAmount && CARD_CURRENCIES.includes(fixedAmount.currency) && fixedAmount.minor % 100n === 0n ? fixedAmount : undefined;
  const cardCurrency = cardFixed?.currency ?? (CARD_CURRENCIES.includes(asked) && asked !== MPESA_CURRENCY ? asked : "USD");

  // A venue's own (or a table's) code tips the venue's pool; the quote only needs the recipient for its currency.
  const recipientId = target.workerId || (target.shared ? target.venueId : "");
  // The fee for each preset, quoted before anything is paid (the customer covers it by default).
  const wallet = serverClient(WalletService, { locale });
  const presets: Preset[] = recipientId
    ? await Promise.all(
        amounts.map(async (minor) => {
          const { quote } = await wallet.quoteFees({ amount: { amountMinor: minor, currency }, rail: PaymentRail.MPESA, customerCoversFee: true, workerId: recipientId });
          const fee = (quote?.platformFee?.amountMinor ?? 0n) + (quote?.processingFee?.amountMinor ?? 0n);
          return { minor: minor.toString(), label: formatMoney(minor, currency), fee: fee.toString(), feeLabel: formatMoney(fee, currency) };
        }),
      )
    : [];
  const initialAmount = one(search.amount);

  return (
    <main>
      <LanguageSwitch locale={locale} back={here} t={t} />
      <WhoCard target={target} t={t} locale={locale} heading={t("tipFor")} />
      {target.shared ? <p className="notice">{t("sharedTip", { venue: target.displayName })}</p> : null}
      {fixedElsewhere ? (
        <p className="notice">{t("mpesaKesOnly", { amount: formatMoney(fixedAmount.minor, fixedAmount.currency) })}</p>
      ) : recipientId ? (
        <TipForm
          locale={locale}
          shortCode={code}
          payload={payload ?? ""}
          name={target.displayName}
          workerId={recipientId}
          currency={currency}
          presets={presets}
          fixed={fixed !== undefined}
          keySeed={keptSeedOf(jar.get(SEED_COOKIE)?.value)}
          rememberedPhone={jar.get("ttip_phone")?.value ?? ""}
          initialAmount={initialAmount && presets.some((p) => p.minor === initialAmount) ? initialAmount : presets[Math.min(1, presets.length - 1)]?.minor ?? "other"}
        />
      ) : (
        <p className="notice bad">{t("problem_other")}</p>
      )}
      {recipientId ? (
        <section aria-labelledby="card-heading">
          <h2 id="card-heading">{t("cardHeading")}</h2>
          <CardForm locale={locale} shortCode={code} payload={payload ?? ""} keySeed={randomUUID()} defaultCurrency={cardCurrency}
            fixedUnits={cardFixed && String(cardFixed.minor / 100n)} shared={target.shared} />
        </section>
      ) : null}
    </main>
  );
}
