"use client";
import { lazy, Suspense, useEffect, useState, type ReactNode } from "react";

// The providers read the window (origin, stored session), so they render in the browser only.
const Providers = lazy(() => import("./providers").then((m) => ({ default: m.Providers })));

/**
 * The screens once in the browser; until then `loading`, in the page's language (the layout picks it
 * on the server, where the first HTML is made: a slow phone shows it for seconds).
 */
export function ClientOnly({ children, loading }: { children: ReactNode; loading: string }) {
  const [inBrowser, setInBrowser] = useState(false);
  useEffect(() => setInBrowser(true), []);
  const placeholder = <p>{loading}</p>;
  return inBrowser ? <Suspense fallback={placeholder}><Providers>{children}</Providers></Suspense> : placeholder;
}
