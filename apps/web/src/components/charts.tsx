/** @jsxRuntime automatic @jsxImportSource react */
// Small charts drawn as SVG by this code (no chart library: the screens stay
// light on a cheap phone). Each bar carries its exact figure (data-value: the
// same number the CSV export gives, minor units or a count) and a text label;
// a screen reader gets the figures as a list.
import type { ReactNode } from "react";

export interface Bar {
  /** Short label under or beside the bar ("09", "Mon", a name). */
  label: string;
  /** Exact figure as the API gave it (minor units or a count). */
  value: bigint;
  /** The figure as people read it ("KES 300", "12 tips"). */
  text: string;
}

// Bar lengths are geometry, not money: a ratio of the largest bar, in 1/1000.
function scale(bars: Bar[]): (v: bigint) => number {
  const max = bars.reduce((m, b) => (b.value > m ? b.value : m), 0n);
  return (v) => (max > 0n && v > 0n ? Number((v * 1000n) / max) / 1000 : 0);
}

function Figure({ title, testId, bars, children }: { title: string; testId?: string; bars: Bar[]; children: ReactNode }) {
  return (
    <figure className="chart" data-testid={testId}>
      <figcaption>{title}</figcaption>
      {children}
      <ul className="sr-only">
        {bars.map((b) => (
          <li key={b.label}>{b.label}: {b.text}</li>
        ))}
      </ul>
    </figure>
  );
}

/** Columns side by side (hours of the day, weekdays). */
export function ColumnChart({ title, bars, testId }: { title: string; bars: Bar[]; testId?: string }) {
  const of = scale(bars);
  const w = 100 / Math.max(bars.length, 1);
  const H = 60;
  const labelEvery = bars.length > 12 ? 3 : 1;
  return (
    <Figure title={title} testId={testId} bars={bars}>
      <svg viewBox={`0 0 100 ${H + 8}`} width="100%" role="img" aria-label={title} preserveAspectRatio="none">
        {bars.map((b, i) => {
          const h = of(b.value) * H;
          return (
            <g key={b.label} data-label={b.label} data-value={b.value.toString()}>
              <title>{`${b.label}: ${b.text}`}</title>
              <rect x={i * w + w * 0.1} y={H - h} width={w * 0.8} height={Math.max(h, 0.4)} fill="#0a6b3d" />
              {i % labelEvery === 0 ? (
                <text x={i * w + w / 2} y={H + 6} fontSize="4" textAnchor="middle" fill="#4a4a4a">{b.label}</text>
              ) : null}
            </g>
          );
        })}
      </svg>
    </Figure>
  );
}

/** One row per item (staff, tables, funnel steps), the figure written beside its bar; `empty` when there is none. */
export function RowChart({ title, bars, testId, empty }: { title: string; bars: Bar[]; testId?: string; empty?: string }) {
  const of = scale(bars);
  const row = 9;
  if (bars.length === 0 && empty) {
    return (
      <Figure title={title} testId={testId} bars={bars}>
        <p className="muted">{empty}</p>
      </Figure>
    );
  }
  return (
    <Figure title={title} testId={testId} bars={bars}>
      <svg viewBox={`0 0 100 ${Math.max(bars.length, 1) * row}`} width="100%" role="img" aria-label={title}>
        {bars.map((b, i) => (
          <g key={`${b.label}-${i}`} data-label={b.label} data-value={b.value.toString()}>
            <title>{`${b.label}: ${b.text}`}</title>
            <text x="0" y={i * row + 6} fontSize="4" fill="#111">{b.label.slice(0, 18)}</text>
            <rect x="34" y={i * row + 1.5} width={Math.max(of(b.value) * 40, 0.4)} height={row - 3} fill="#0a6b3d" />
            <text x={36 + of(b.value) * 40} y={i * row + 6} fontSize="4" fill="#111">{b.text}</text>
          </g>
        ))}
      </svg>
    </Figure>
  );
}
