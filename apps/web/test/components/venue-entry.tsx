// What the venue screens' component tests render in the browser, on window.venueComponents: the
// dashboard's funnel chart with the screen's own step names, and the audit trail's sentences.
import { createRoot } from "react-dom/client";
import { ColumnChart, RowChart, type Bar } from "../../src/components/charts";
import { auditText } from "../../src/app/v/audit-words";
import type { Locale } from "../../src/lib/i18n";
import { venueT, type VenueKey } from "../../src/lib/venue-i18n";

const STEPS: VenueKey[] = ["v_scanned", "v_amountChosen", "v_paymentStarted", "v_paid"];

const venueComponents = {
  /** The dashboard's "From scan to paid" chart in `locale`, with these counts per step. */
  mountFunnel(locale: Locale, counts: number[]): void {
    const t = venueT(locale);
    createRoot(document.getElementById("root")!).render(
      <RowChart title={t("v_funnel")} testId="chart-funnel" bars={STEPS.map((k, i) => ({ label: t(k), value: BigInt(counts[i] ?? 0), text: String(counts[i] ?? 0) }))} />,
    );
  },
  /** A row chart (the venue's "Tips per table") and a column chart (the hours of a day) of these bars. */
  mountCharts(rows: { label: string; value: number; text: string }[], columns: { label: string; value: number; text: string }[]): void {
    const bars = (list: typeof rows): Bar[] => list.map((b) => ({ ...b, value: BigInt(b.value) }));
    createRoot(document.getElementById("root")!).render(
      <>
        <RowChart title="Tips per table" testId="chart-rows" bars={bars(rows)} />
        <ColumnChart title="By hour" testId="chart-columns" bars={bars(columns)} />
      </>,
    );
  },
  /** The audit trail's sentence for a record about the member "Achieng". */
  auditSentence(locale: Locale, action: string, detail: Record<string, unknown>): string | undefined {
    const names = { member: (id: string) => (id === "m1" ? "Achieng" : undefined), user: () => undefined, role: (id: string) => id };
    return auditText(venueT(locale), { action, detail: JSON.stringify(detail) }, names, locale);
  },
};

declare global {
  interface Window {
    venueComponents: typeof venueComponents;
  }
}
window.venueComponents = venueComponents;
