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
export function LiveStatus({ tipId, status }: { tipId: string; status: number }) {
  const router = useRouter();
  useEffect(() => {
    let stopped = false;
    // 40 long polls of ~25 s: about a quarter of an hour, each at least 2 s after the one before.
    const backOnline = () => new Promise<void>((resolve) => window.addEventListener("online", () => resolve(), { once: true }));
    void pollForChange(status, () => waitForTipChange(tipId, status), { attempts: 40, minIntervalMs: 2_000, stopped: () => stopped, online: () => navigator.onLine, backOnline })
      .then((changed) => changed !== undefined && router.refresh());
    return () => {
      stopped = true;
    };
  }, [tipId, status, router]);
  return null;
}

/** The tip's page opened: the form's kept seed is forgotten, so a tip asked for again from here on is a new one. */
export function ForgetTipSeed({ shortCode }: { shortCode: string }) {
  useEffect(() => forgetSeed(shortCode), [shortCode]);
  return null;
}
