"use client";
import { createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { useState } from "react";
import type { WorkerEarnings } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { ColumnChart, RowChart } from "../../components/charts";
import { formatAmount, formatMoney, WALLET_CURRENCY } from "../../lib/money";
import { loadSession } from "../../lib/session";
import { saveBytes } from "../../lib/download";
import { useT } from "./use-t";

const WEEKDAYS = { en: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], sw: ["Jtt", "Jnn", "Jtn", "Alh", "Ijm", "Jmm", "Jpl"] };

/**
 * Today, this week and this month; tips by hour and by weekday; the average
 * tip: analytics' figures, the same as its CSV. Money is what the worker
 * received after fees (its `net`), as the balance shows it; the hour and
 * weekday charts, for which analytics gives only what customers tipped, say
 * so in their titles.
 */
export function EarningsCharts({ earnings: e, range }: { earnings: WorkerEarnings; range: { from: Timestamp; to: Timestamp } }) {
  const { t, locale, err } = useT();
  // "1 tip", never "1 tips".
  const tipsText = (n: bigint) => (n === 1n ? t("tipCountOne") : t("tipsCount", { n: String(n) }));
  const transport = useTransport();
  const [error, setError] = useState("");
  const periods = [
    { label: t("today"), p: e.today },
    { label: t("thisWeek"), p: e.thisWeek },
    { label: t("thisMonth"), p: e.thisMonth },
  ];
  // Analytics' average_tip is what customers tipped; the worker's is what reached them, rounded down as analytics does.
  const received = e.inRange?.net?.amountMinor ?? 0n;
  const tips = e.inRange?.tips ?? 0n;
  const averageReceived = tips > 0n ? received / tips : 0n;
  const csv = async () => {
    setError("");
    try {
      const res = await createClient(AnalyticsService, transport).exportEarnings({ range, scope: { case: "workerId", value: loadSession()?.userId ?? "" } });
      saveBytes(res.csv, "text/csv", res.fileName || "ttip-earnings.csv");
    } catch (x) {
      setError(err(x));
    }
  };
  return (
    <section aria-labelledby="earnings">
      <h2 id="earnings">{t("earnings")}</h2>
      <div className="figures" data-testid="earnings-periods">
        {periods.map(({ label, p }) => (
          <div key={label}>
            {label}
            <strong>{formatAmount(p?.net, WALLET_CURRENCY)}</strong>
            <span className="muted">{tipsText(p?.tips ?? 0n)}</span>
          </div>
        ))}
      </div>
      <RowChart
        title={t("periods")}
        testId="chart-periods"
        bars={periods.map(({ label, p }) => ({ label, value: p?.net?.amountMinor ?? 0n, text: formatAmount(p?.net, WALLET_CURRENCY) }))}
      />
      <p>{t("averageTip")}: <strong data-testid="average-tip" data-value={String(averageReceived)}>{formatMoney(averageReceived, e.inRange?.net?.currency || WALLET_CURRENCY)}</strong>
        {e.averageRatingX100 ? ` · ${t("averageRating")}: ${(e.averageRatingX100 / 100).toFixed(2)}★` : ""}</p>
      <ColumnChart
        title={t("byHour")}
        testId="chart-hours"
        bars={e.byHourOfDay.map((h) => ({ label: String(h.hour).padStart(2, "0"), value: h.volume?.amountMinor ?? 0n, text: `${formatAmount(h.volume, WALLET_CURRENCY)}, ${tipsText(h.tips)}` }))}
      />
      <ColumnChart
        title={t("byWeekday")}
        testId="chart-weekdays"
        bars={e.byWeekday.map((w) => ({ label: WEEKDAYS[locale][w.weekday - 1] ?? String(w.weekday), value: w.volume?.amountMinor ?? 0n, text: `${formatAmount(w.volume, WALLET_CURRENCY)}, ${tipsText(w.tips)}` }))}
      />
      {e.ratings.some((r) => r.count > 0n) ? (
        <RowChart
          title={t("ratingsChart")}
          testId="chart-ratings"
          bars={e.ratings.map((r) => ({ label: "★".repeat(r.stars), value: r.count, text: String(r.count) }))}
        />
      ) : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="button" className="secondary" onClick={csv}>{t("downloadEarnings")}</button>
    </section>
  );
}
