import type { ReactNode } from "react";
import { loadingWord } from "./loading-word";
import { ClientOnly } from "./client-only";

export const metadata = { title: "TTIP for workers" };

// The worker's screens run in the browser (the session lives there) and call
// the API with Connect-web and connect-query.
export default async function WorkerLayout({ children }: { children: ReactNode }) {
  return (
    <main>
      <ClientOnly loading={await loadingWord()}>{children}</ClientOnly>
    </main>
  );
}
