import type { ReactNode } from "react";
import { loadingWord } from "../w/loading-word";
import { ClientOnly } from "../w/client-only";

export const metadata = { title: "TTIP for venues" };

// The venue manager's screens: in the browser like the worker's (the session
// lives there), calling the public API with Connect-web.
export default async function VenueLayout({ children }: { children: ReactNode }) {
  return (
    <main className="wide">
      <ClientOnly loading={await loadingWord()}>{children}</ClientOnly>
    </main>
  );
}
