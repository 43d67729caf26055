"use client";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { waitForTipChange } from "./watch";

/**
 * With scripts, the status page updates the moment the tip changes: the
 * server watches it (WatchTip) and the page's server render is refreshed.
 */
export function LiveStatus({ tipId, status }: { tipId: string; status: number }) {
  const router = useRouter();
  useEffect(() => {
    let stopped = false;
    (async () => {
      for (let attempt = 0; attempt < 40 && !stopped; attempt++) {
        const now = await waitForTipChange(tipId, status).catch(async () => {
          await new Promise((r) => setTimeout(r, 2000));
          return status;
        });
        if (stopped) return;
        if (now !== status) {
          router.refresh();
          return;
        }
      }
    })();
    return () => {
      stopped = true;
    };
  }, [tipId, status, router]);
  return null;
}
