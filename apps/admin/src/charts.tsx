// Platform figures as charts (the web app's SVG charts): tips, volume and fees
// per day from GetRevenueMetrics, success rate per day and method from
// GetPaymentSuccessRates, and GetPlatformSummary's rates, failures by
// result code, payout latency, growth and SMS spend. Tips, rates and money
// are one currency's (the admin's choice, KES first; SMS spend, bought in
// KES, shows with KES), success rates per method every currency's. Each bar
// carries the RPC's exact figure (data-value), so a test can hold the chart
// to the API.
import { useEffect, useState } from "react";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Granularity, type PlatformSummary, type RevenuePoint, type SuccessRatePoint } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { ColumnChart, RowChart, type Bar } from "../../web/src/components/charts";
import type { Amount } from "../../web/src/lib/money";
import { api, errorText } from "./api";
import { CHART_DAYS, chartDayLabel, chartRange } from "./chart-range";
import { CurrencyChoice, FIRST_CURRENCY } from "./currencies";
import { money, Section } from "./ui";

const count = (label: string, n: bigint, unit = ""): Bar => ({ label, value: n, text: `${n.toLocaleString("en-KE")}${unit}` });
/** An amount's bar, written in its own currency; one not sent is zero in the currency asked for. */
const amount = (label: string, m: Amount | undefined, asked: string): Bar => ({ label, value: m?.amountMinor ?? 0n, text: money(m ?? { currency: asked, amountMinor: 0n }) });
const percent = (label: string, bps: number): Bar => ({ label, value: BigInt(bps), text: `${(bps / 100).toFixed(2)}%` });

export function PlatformCharts() {
  const [currency, setCurrency] = useState(FIRST_CURRENCY);
  const [series, setSeries] = useState<RevenuePoint[]>([]);
  const [rates, setRates] = useState<SuccessRatePoint[]>([]);
  const [summary, setSummary] = useState<PlatformSummary>();
  const [error, setError] = useState("");
  useEffect(() => {
    const { from, to } = chartRange();
    const range = { from: timestampFromDate(from), to: timestampFromDate(to) };
    const analytics = api(AnalyticsAdminService);
    // A slower answer to the choice before does not overwrite this one's.
    let current = true;
    setError("");
    Promise.all([
      analytics.getRevenueMetrics({ range, granularity: Granularity.DAY, currency }),
      analytics.getPlatformSummary({ range, currency }),
      analytics.getPaymentSuccessRates({ range, granularity: Granularity.DAY }),
    ]).then(([r, s, ok]) => {
      if (!current) return;
      setSeries(r.series);
      setSummary(s.summary);
      setRates(ok.series);
    }, (err) => current && setError(errorText(err)));
    return () => void (current = false);
  }, [currency]);
  const amountBar = (label: string, m: Amount | undefined) => amount(label, m, currency);
  const day = (p: { periodStart?: RevenuePoint["periodStart"] }) => (p.periodStart ? chartDayLabel(timestampDate(p.periodStart)) : "");
  return (
    <Section title={`Platform charts (${CHART_DAYS} days)`}>
      <CurrencyChoice label="Charts currency" value={currency} onChange={setCurrency} />
      {error && <p role="alert" className="error">{error}</p>}
      <div aria-label="Platform charts" className="charts">
        <ColumnChart title="Tips per day" testId="chart-tips" bars={series.map((p) => count(day(p), p.tips, " tips"))} />
        <ColumnChart title="Tip volume per day" testId="chart-volume" bars={series.map((p) => amountBar(day(p), p.tipVolume))} />
        <ColumnChart title="Platform fees per day" testId="chart-fees" bars={series.map((p) => amountBar(day(p), p.platformFees))} />
        {["mpesa", "card"].map((method) => {
          const title = `${method === "mpesa" ? "M-Pesa" : "Card"} success rate per day`;
          const points = rates.filter((p) => p.method === method && p.attempted > 0n);
          // No attempt, no rate: an empty frame read as a chart of zeros.
          return points.length ? (
            <ColumnChart key={method} title={title} testId={`chart-success-${method}`} bars={points.map((p) => percent(day(p), p.successRateBps))} />
          ) : (
            <RowChart key={method} title={title} testId={`chart-success-${method}`} bars={[]} empty={`No ${method === "mpesa" ? "M-Pesa" : "card"} payments in these ${CHART_DAYS} days.`} />
          );
        })}
        {summary && (
          <>
            <RowChart title="Rates" testId="chart-rates" bars={[percent("Take rate", summary.takeRateBps), percent("Success rate", summary.successRateBps)]} />
            <RowChart
              title="Failed tips by result code"
              testId="chart-failures"
              empty="No failed tips."
              bars={summary.failures.map((f) => count(f.resultCode || "(none)", f.count))}
            />
            <RowChart
              title="Payout latency"
              testId="chart-latency"
              empty={`No payouts ended in these ${CHART_DAYS} days.`}
              bars={summary.payoutsSucceeded + summary.payoutsFailed > 0n ? [count("p50", summary.payoutLatencyP50Ms, " ms"), count("p95", summary.payoutLatencyP95Ms, " ms")] : []}
            />
            <RowChart
              title="Growth"
              testId="chart-growth"
              bars={[count("New workers", summary.newWorkers), count("Active workers", summary.activeWorkers), count("Active venues", summary.activeVenues)]}
            />
            {/* One chart, one unit: SMS is bought in its own currency (KES), drawn only among figures in it. */}
            <RowChart
              title="Money out"
              testId="chart-money"
              bars={([["Payouts", summary.payouts], ["SMS spend", summary.smsSpend], ["Pools paid", summary.poolsDistributed], ["Refunded", summary.refunded], ["Charged back", summary.chargedBack]] as const)
                .filter(([, m]) => !m || m.currency === currency)
                .map(([label, m]) => amountBar(label, m))}
            />
          </>
        )}
      </div>
    </Section>
  );
}
