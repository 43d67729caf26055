import type { ReactNode } from "react";
import { loadingWord } from "../w/loading-word";
import { ClientOnly } from "../w/client-only";

export const metadata = { title: "Join a venue on TTIP" };

// The link in a venue's invitation SMS: the invited worker signs in, then accepts.
export default async function JoinLayout({ children }: { children: ReactNode }) {
  return (
    <main>
      <ClientOnly loading={await loadingWord()}>{children}</ClientOnly>
    </main>
  );
}
