"use client";
import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery, useTransport } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import type { DashboardSnapshot } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { formatAmount, WALLET_CURRENCY } from "../../lib/money";
import { nairobiMonthStart } from "../../lib/nairobi-time";
import { clearSession, loadSession } from "../../lib/session";
import { EarningsCharts } from "./earnings";
import { WorkerNav } from "./nav";
import { useT } from "./use-t";
import { statusWord } from "./words";

/**
 * The worker's live dashboard: analytics' WatchDashboard (server streaming
 * over Connect) sends today's figures each time they change; each new
 * snapshot refreshes the balance and the latest tips. If the stream drops,
 * the screen polls until it is back.
 */
/** `snapshots`: how many the stream has sent, each of which refreshes the queries once. */
function useLiveDashboard(): { snapshot?: DashboardSnapshot; live: boolean; snapshots: number } {
  const transport = useTransport();
  const queries = useQueryClient();
  const [state, setState] = useState<{ snapshot?: DashboardSnapshot; live: boolean; snapshots: number }>({ live: false, snapshots: 0 });
  useEffect(() => {
    const stop = new AbortController();
    const client = createClient(AnalyticsService, transport);
    (async () => {
      while (!stop.signal.aborted) {
        try {
          for await (const { snapshot } of client.watchDashboard({}, { signal: stop.signal })) {
            setState((s) => ({ snapshot, live: true, snapshots: s.snapshots + 1 }));
            await queries.invalidateQueries();
          }
        } catch {
          // Dropped or refused (an expired token is refreshed by the next unary call): poll meanwhile, retry.
        }
        if (stop.signal.aborted) break;
        setState((s) => ({ ...s, live: false }));
        await new Promise((r) => setTimeout(r, 3_000));
      }
    })();
    return () => stop.abort();
  }, [transport, queries]);
  return state;
}

/** Home: balance (available and held), today, this week and this month, the latest tips arriving live, the earnings charts. */
export default function Home() {
  const router = useRouter();
  const { t, err } = useT();
  const { live, snapshots } = useLiveDashboard();
  const poll = live ? false : 5_000;
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" }, { refetchInterval: poll });
  const tips = useQuery(PaymentService.method.listTips, { page: { pageSize: 10 } }, { refetchInterval: poll });
  const [range] = useState(() => ({ from: timestampFromDate(nairobiMonthStart(new Date())), to: timestampFromDate(new Date(Date.now() + 86_400_000)) }));
  const earnings = useQuery(AnalyticsService.method.getWorkerEarnings, { range, currency: "KES" }, { refetchInterval: poll });
  const signOutAll = useMutation(AuthService.method.revokeAllSessions);
  const b = balance.data?.balances[0];
  const list = tips.data?.tips ?? [];
  const e = earnings.data?.earnings;
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
          {t("today")}: {e ? formatAmount(e.today?.net, WALLET_CURRENCY) : "…"} · {t("thisWeek")}: {e ? formatAmount(e.thisWeek?.net, WALLET_CURRENCY) : "…"}
        </div>
        <p className="muted" data-testid="live-state" data-snapshots={snapshots}>{live ? t("live") : t("liveOff")}</p>
      </section>
      <h2>{t("latestTips")}</h2>
      <ul aria-live="polite" data-testid="latest-tips">
        {list.map((tip) => (
          <li key={tip.tipId}>
            <Link href={`/w/tips/${tip.tipId}`}>
              {formatAmount(tip.amount, WALLET_CURRENCY)} · {statusWord(t, tip.status)}
              {tip.rating ? ` · ${tip.rating}★` : ""}
            </Link>
          </li>
        ))}
        {list.length === 0 && !tips.isLoading ? <li>{t("noTips")}</li> : null}
      </ul>
      {e ? <EarningsCharts earnings={e} range={range} /> : null}
      <button
        type="button"
        className="secondary"
        onClick={async () => {
          await signOutAll.mutateAsync({}).catch(() => undefined);
          clearSession();
          router.replace("/w/signin");
        }}
      >
        {t("signOutAll")}
      </button>
      {loadSession() ? null : <p>{t("loading")}</p>}
    </>
  );
}
