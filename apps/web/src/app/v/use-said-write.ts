"use client";
import { useState } from "react";
import { useWrite, type Send } from "../../lib/use-write";
import { useVT } from "./use-vt";

/**
 * A venue screen's writes, one at a time: what each did is said in a status line, a refusal in an alert, and the
 * screen's lists are read again after each answer. `intent`: what a keyed write asks (use-write's).
 */
export function useSaidWrite(refetch: () => Promise<unknown>) {
  const { err: plainError } = useVT();
  const write = useWrite();
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const run = (f: (send: Send) => Promise<string | void>, intent?: string) => write.run(async (send) => {
    setError("");
    setNote("");
    const said = await f(send);
    if (said) setNote(said);
    await refetch();
  }, (x) => {
    setError(plainError(x));
    // A refusal is often the lists' being out of date (an invitation accepted meanwhile, a manager gone): read again.
    void refetch().catch(() => undefined);
  }, intent);
  return { busy: write.busy, run, error, setError, note, setNote };
}
