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

/** Font size of the charts' words (in viewBox units, the chart 100 wide). */
const FONT = 4;
/** A generous width of one character at FONT (digits and capitals of a sans-serif run ~0.6 em). */
const CHAR_WIDTH = FONT * 0.62;
const textWidth = (s: string) => s.length * CHAR_WIDTH;

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
                <text x={within(i * w + w / 2, textWidth(b.label) / 2)} y={H + 6} fontSize={FONT} textAnchor="middle" fill="#4a4a4a">{b.label}</text>
              ) : null}
            </g>
          );
        })}
      </svg>
    </Figure>
  );
}

/** `x`, moved in so that a text centred on it, `half` wide each side, stays inside the chart's 0..100 (the first hour's label was cut at the left edge). */
function within(x: number, half: number): number {
  return Math.min(Math.max(x, half), 100 - half);
}

/** A row label's lines: whole words, at most LABEL_LINE characters a line, two lines at most (a longer rest is squeezed to fit). */
const LABEL_LINE = 14;
/** Where a row's bar starts: its label is written left of it, never under it. */
const LABEL_WIDTH = 32;
/** Where a row's bar starts, and the longest a bar may be. */
const BAR_X = 34;
const BAR_MAX = 40;
/** The gap between a bar's end and its figure. */
const FIGURE_GAP = 2;
/** A bar is never shortened below this to make room for its figure: a longer figure is squeezed instead. */
const BAR_MIN = 16;

function labelLines(label: string): string[] {
  const lines: string[] = [];
  for (const word of label.split(/\s+/).filter(Boolean)) {
    const last = lines.at(-1);
    if (last !== undefined && (last.length + 1 + word.length <= LABEL_LINE || lines.length === 2)) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines.length ? lines : [""];
}

/** One row per item (staff, tables, funnel steps), the figure written beside its bar; `empty` when there is none. */
export function RowChart({ title, bars, testId, empty }: { title: string; bars: Bar[]; testId?: string; empty?: string }) {
  const of = scale(bars);
  const row = 9;
  const line = 4.5;
  if (bars.length === 0 && empty) {
    return (
      <Figure title={title} testId={testId} bars={bars}>
        <p className="muted">{empty}</p>
      </Figure>
    );
  }
  // A label too long for its column wraps onto a second line (its row grows) rather than being cut
  // or running under the bar: Swahili's step names are longer than English's.
  const rows = bars.map((b) => ({ b, lines: labelLines(b.label) }));
  const tops = rows.map((_, i) => rows.slice(0, i).reduce((y, r) => y + row + (r.lines.length - 1) * line, 0));
  const height = rows.reduce((y, r) => y + row + (r.lines.length - 1) * line, 0);
  // The bars give up length so that the longest figure ("KES 12,500 · 140 scans") ends inside the chart, not cut at its edge.
  const room = 100 - BAR_X - FIGURE_GAP;
  const barMax = Math.max(BAR_MIN, Math.min(BAR_MAX, room - Math.max(0, ...bars.map((b) => textWidth(b.text)))));
  return (
    <Figure title={title} testId={testId} bars={bars}>
      <svg viewBox={`0 0 100 ${Math.max(height, row)}`} width="100%" role="img" aria-label={title}>
        {rows.map(({ b, lines }, i) => {
          const mid = tops[i] + (row + (lines.length - 1) * line) / 2;
          return (
            <g key={`${b.label}-${i}`} data-label={b.label} data-value={b.value.toString()}>
              <title>{`${b.label}: ${b.text}`}</title>
              <text x="0" y={mid + 1.5 - ((lines.length - 1) * line) / 2} fontSize={FONT} fill="#111">
                {lines.map((l, k) => (
                  <tspan key={k} x="0" dy={k ? line : 0} {...(l.length > LABEL_LINE ? { textLength: LABEL_WIDTH, lengthAdjust: "spacingAndGlyphs" } : {})}>{l}</tspan>
                ))}
              </text>
              <rect x={BAR_X} y={mid - 3} width={Math.max(of(b.value) * barMax, 0.4)} height={row - 3} fill="#0a6b3d" />
              <FigureText x={BAR_X + FIGURE_GAP + of(b.value) * barMax} y={mid + 1.5} text={b.text} />
            </g>
          );
        })}
      </svg>
    </Figure>
  );
}

/** A bar's figure from `x`, squeezed to end at the chart's edge when even the shortened bars leave it too little room. */
function FigureText({ x, y, text }: { x: number; y: number; text: string }) {
  const fits = x + textWidth(text) <= 100;
  return (
    <text x={x} y={y} fontSize={FONT} fill="#111" {...(fits ? {} : { textLength: 100 - x, lengthAdjust: "spacingAndGlyphs" })}>{text}</text>
  );
}
