"use client";
import dynamic from "next/dynamic";
import type { ReactNode } from "react";

// The providers read the window (origin, stored session), so they render in the browser only.
const Providers = dynamic(() => import("./providers").then((m) => m.Providers), { ssr: false, loading: () => <p>Loading…</p> });

export function ClientOnly({ children }: { children: ReactNode }) {
  return <Providers>{children}</Providers>;
}
