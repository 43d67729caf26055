"use client";
import { createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import { useEffect, useRef, useState } from "react";
import type { DashboardSnapshot } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { CARD_CURRENCIES } from "@ttip/payment/card-currencies";

/** Today's live figures in one currency, as analytics' WatchDashboard sends them. */
export interface LiveFigure {
  currency: string;
  snapshot: DashboardSnapshot;
}

export interface LiveFigures {
  /** KES (always, once its stream answered), then each other currency tipped today, in CARD_CURRENCIES' order. */
  figures: LiveFigure[];
  /** Every currency's stream is up. */
  live: boolean;
  /** Snapshots received in all, each of which called onSnapshot once. */
  snapshots: number;
}

/** The currency every screen shows, even at zero. */
const HOME_CURRENCY = CARD_CURRENCIES[0]!;

/**
 * Today's figures per currency, live: WatchDashboard answers one currency per stream (KES when
 * none is named), so a card tip in USD, EUR or GBP reaches the screen only over its own stream.
 * Amounts are never summed across currencies. `venueId` empty: the signed-in worker's own figures.
 * A stream that drops is retried after 3 s.
 */
export function useLiveFigures(venueId: string, onSnapshot?: () => Promise<unknown>): LiveFigures {
  const transport = useTransport();
  // The latest callback, read per snapshot: a new function each render must not restart the streams.
  const notify = useRef(onSnapshot);
  notify.current = onSnapshot;
  const [state, setState] = useState<{ byCurrency: Record<string, DashboardSnapshot>; up: Record<string, boolean>; snapshots: number }>({ byCurrency: {}, up: {}, snapshots: 0 });
  useEffect(() => {
    const stop = new AbortController();
    const client = createClient(AnalyticsService, transport);
    const watch = async (currency: string) => {
      while (!stop.signal.aborted) {
        try {
          for await (const { snapshot } of client.watchDashboard({ venueId, currency }, { signal: stop.signal })) {
            if (!snapshot) continue;
            setState((s) => ({ byCurrency: { ...s.byCurrency, [currency]: snapshot }, up: { ...s.up, [currency]: true }, snapshots: s.snapshots + 1 }));
            await notify.current?.();
          }
        } catch {
          // Dropped or refused (an expired token is refreshed by the next unary call): retry shortly.
        }
        if (stop.signal.aborted) break;
        setState((s) => ({ ...s, up: { ...s.up, [currency]: false } }));
        await new Promise((r) => setTimeout(r, 3_000));
      }
    };
    for (const currency of CARD_CURRENCIES) void watch(currency);
    return () => stop.abort();
  }, [transport, venueId]);
  const figures = CARD_CURRENCIES.flatMap((currency) => {
    const snapshot = state.byCurrency[currency];
    return snapshot && (currency === HOME_CURRENCY || snapshot.tipsToday > 0n) ? [{ currency, snapshot }] : [];
  });
  return { figures, live: CARD_CURRENCIES.every((c) => state.up[c]), snapshots: state.snapshots };
}
