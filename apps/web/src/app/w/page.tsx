"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { useLiveFigures } from "../../lib/live-figures";
import { formatAmount, WALLET_CURRENCY } from "../../lib/money";
import { nairobiMonthStart } from "../../lib/nairobi-time";
import { forgetSignedOut } from "../../lib/device-key";
import { loadSession } from "../../lib/session";
import { useWrite } from "../../lib/use-write";
import { EarningsCharts } from "./earnings";
import { WorkerNav } from "./nav";
import { useT } from "./use-t";
import { tipWord } from "./words";

/**
 * Home: balance (available and held), today, this week and this month, what customers tipped today in
 * each currency, the latest tips arriving live, the earnings charts. Each live snapshot (analytics'
 * WatchDashboard, one stream for every currency) refreshes the balance and the latest tips; while a stream
 * is down the screen polls.
 */
export default function Home() {
  const router = useRouter();
  const { t, err } = useT();
  const queries = useQueryClient();
  const { figures, live, snapshots } = useLiveFigures("", () => queries.invalidateQueries());
  const poll = live ? false : 5_000;
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" }, { refetchInterval: poll });
  const tips = useQuery(PaymentService.method.listTips, { page: { pageSize: 10 } }, { refetchInterval: poll });
  const [range] = useState(() => ({ from: timestampFromDate(nairobiMonthStart(new Date())), to: timestampFromDate(new Date(Date.now() + 86_400_000)) }));
  const earnings = useQuery(AnalyticsService.method.getWorkerEarnings, { range, currency: "KES" }, { refetchInterval: poll });
  const signOutAll = useMutation(AuthService.method.revokeAllSessions);
  const signingOut = useWrite();
  const [signOutError, setSignOutError] = useState("");
  const b = balance.data?.balances[0];
  const list = tips.data?.tips ?? [];
  const e = earnings.data?.earnings;
  // Earnings not known: "…" while they load, "—" when their read failed (not "loading" for ever).
  const notRead = earnings.error ? "—" : "…";
  return (
    <>
      <WorkerNav />
      <h1>{t("yourTips")}</h1>
      {balance.error ? <p className="error" role="alert">{err(balance.error)}</p> : null}
      <section aria-label={t("available")} className="notice">
        <div>{t("available")}: <strong data-testid="available">{formatAmount(b?.available, WALLET_CURRENCY)}</strong></div>
        <div className="muted">{t("held")}: {formatAmount(b?.held, WALLET_CURRENCY)}</div>
        <div data-testid="periods">
          {/* What reached the worker, as the balance: never the snapshot's volume (what customers tipped), even while loading. */}
          {t("today")}: {e ? formatAmount(e.today?.net, WALLET_CURRENCY) : notRead} · {t("thisWeek")}: {e ? formatAmount(e.thisWeek?.net, WALLET_CURRENCY) : notRead}
        </div>
        {figures.length ? (
          <div data-testid="tipped-today">
            {t("tippedToday")}: {figures.map((f) => formatAmount(f.snapshot.volumeToday, f.currency)).join(" · ")}
          </div>
        ) : null}
        <p className="muted" data-testid="live-state" data-snapshots={snapshots}>{live ? t("live") : t("liveOff")}</p>
      </section>
      <h2>{t("latestTips")}</h2>
      <ul aria-live="polite" data-testid="latest-tips">
        {list.map((tip) => (
          <li key={tip.tipId}>
            <Link href={`/w/tips/${tip.tipId}`}>
              {formatAmount(tip.amount, WALLET_CURRENCY)} · {tipWord(t, tip)}
              {tip.rating ? ` · ${tip.rating}★` : ""}
            </Link>
          </li>
        ))}
        {/* A failed read is said, never "no tips yet" to a worker who has them. */}
        {tips.error ? <li className="error" role="alert">{err(tips.error)}</li> : list.length === 0 && !tips.isLoading ? <li>{t("noTips")}</li> : null}
      </ul>
      {e ? <EarningsCharts earnings={e} range={range} /> : null}
      <button
        type="button"
        className="secondary"
        disabled={signingOut.busy}
        // Guarded from the tap itself: a double tap's second call, refused as the session the first ended, said
        // "sign out failed" of a sign-out done.
        onClick={() => signingOut.run(async (send) => {
          // Read first: a call refused meanwhile may clear the session before the answer below.
          const userId = loadSession()?.userId;
          // Not done, the worker is told and stays signed in to try again: a stolen phone's session would live on.
          const failed = await send(() => signOutAll.mutateAsync({})).then(() => undefined, (x: unknown) => x);
          if (failed) return setSignOutError(t("signOutAllFailed", { reason: err(failed) }));
          await forgetSignedOut(userId);
          router.replace("/w/signin");
        })}
      >
        {t("signOutAll")}
      </button>
      {signOutError ? <p className="error" role="alert">{signOutError}</p> : null}
      {loadSession() ? null : <p>{t("loading")}</p>}
    </>
  );
}
