"use client";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import { useEffect, useRef, useState } from "react";
import type { DashboardSnapshot } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { CARD_CURRENCIES } from "@ttip/payment/card-currencies";
import { refreshSession } from "../app/w/providers";
import { loadSession } from "./session";

/** Today's live figures in one currency, as analytics' WatchDashboard sends them. */
export interface LiveFigure {
  currency: string;
  snapshot: DashboardSnapshot;
}

export interface LiveFigures {
  /** KES (always, once the stream answered), then each other currency tipped today, by code. */
  figures: LiveFigure[];
  /** The stream is up. */
  live: boolean;
  /** Snapshots received in all, each of which called onSnapshot once. */
  snapshots: number;
}

/** The currency every screen shows, even at zero. */
const HOME_CURRENCY = CARD_CURRENCIES[0]!;

/**
 * Today's figures per currency, live, over one stream: WatchDashboard with all_currencies sends
 * every currency's snapshot together, so a screen holds one of the browser's few connections to
 * the site (six over HTTP/1.1), not one per currency. Amounts are never summed across currencies.
 * `venueId` empty: the signed-in worker's own figures. A stream that drops is retried after 3 s.
 */
export function useLiveFigures(venueId: string, onSnapshot?: () => Promise<unknown>): LiveFigures {
  const transport = useTransport();
  // The latest callback, read per snapshot: a new function each render must not restart the stream.
  const notify = useRef(onSnapshot);
  notify.current = onSnapshot;
  const [state, setState] = useState<{ byCurrency: DashboardSnapshot[]; live: boolean; snapshots: number }>({ byCurrency: [], live: false, snapshots: 0 });
  useEffect(() => {
    const stop = new AbortController();
    const client = createClient(AnalyticsService, transport);
    const watch = async () => {
      while (!stop.signal.aborted) {
        const token = loadSession()?.accessToken;
        try {
          for await (const { snapshot, snapshots } of client.watchDashboard({ venueId, allCurrencies: true }, { signal: stop.signal })) {
            // A server from before all_currencies sends KES's snapshot alone.
            const byCurrency = snapshots.length ? snapshots : snapshot ? [snapshot] : [];
            setState((s) => ({ byCurrency, live: true, snapshots: s.snapshots + 1 }));
            await notify.current?.();
          }
        } catch (err) {
          // Refused for its token: refreshed here. The transport refreshes only unary calls, and a screen without
          // them (a venue's dashboard on the bar's screen) was refused every 3 s for ever, its figures frozen.
          if (token && ConnectError.from(err).code === Code.Unauthenticated) await refreshSession(token).catch(() => false);
        }
        if (stop.signal.aborted) break;
        setState((s) => ({ ...s, live: false }));
        await new Promise((r) => setTimeout(r, 3_000));
      }
    };
    void watch();
    return () => stop.abort();
  }, [transport, venueId]);
  const figures = state.byCurrency.flatMap((snapshot) => {
    const currency = snapshot.volumeToday?.currency ?? "";
    return currency === HOME_CURRENCY || snapshot.tipsToday > 0n ? [{ currency, snapshot }] : [];
  });
  return { figures, live: state.live, snapshots: state.snapshots };
}
