"use client";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { pollForChange } from "../../../../../lib/poll-for-change";
import { forgetSeed } from "../../../../../lib/tip-seed";
import { waitForTipChange } from "./watch";

/**
 * With scripts, the status page updates the moment the tip changes: the
 * server watches it (WatchTip) and the page's server render is refreshed.
 */
export function LiveStatus({ tipId, status, settled = false }: { tipId: string; status: number; settled?: boolean }) {
  const router = useRouter();
  useEffect(() => {
    let stopped = false;
    // 40 long polls of ~25 s: about a quarter of an hour, each at least 2 s after the one before. A settled tip
    // (expired, failed, held) is answered at once, not held open: asked every 10 s for that quarter hour instead,
    // where 40 asks 2 s apart ended in 80 s, before a customer paying from the M-Pesa menu had done so.
    const backOnline = () => new Promise<void>((resolve) => window.addEventListener("online", () => resolve(), { once: true }));
    const pace = settled ? { attempts: 90, minIntervalMs: 10_000 } : { attempts: 40, minIntervalMs: 2_000 };
    void pollForChange(status, () => waitForTipChange(tipId, status), { ...pace, stopped: () => stopped, online: () => navigator.onLine, backOnline })
      .then((changed) => changed !== undefined && router.refresh());
    return () => {
      stopped = true;
    };
  }, [tipId, status, settled, router]);
  return null;
}

/** The tip's page opened: the form's kept seed is forgotten, so a tip asked for again from here on is a new one. */
export function ForgetTipSeed({ shortCode }: { shortCode: string }) {
  useEffect(() => forgetSeed(shortCode), [shortCode]);
  return null;
}
