"use client";
import { useRef, useState, type FormEvent } from "react";

type Submit = (e: FormEvent<HTMLFormElement>) => Promise<void>;

/**
 * One submission of a form at a time. The guard is taken synchronously in the
 * submit event, before any await: a disabled button alone comes too late, as
 * the second tap of a double tap can arrive before React re-renders it (or
 * before an async step sets the state that disables it). Released when the
 * attempt ends, success or failure, so a failed attempt can be retried.
 * `run` gets the event while it is live: read the form before its first await.
 */
export function useSubmitOnce(run: (e: FormEvent<HTMLFormElement>) => Promise<unknown>): { busy: boolean; onSubmit: Submit } {
  const held = useRef(false);
  const [busy, setBusy] = useState(false);
  const onSubmit: Submit = async (e) => {
    e.preventDefault();
    if (held.current) return;
    held.current = true;
    setBusy(true);
    try {
      await run(e);
    } finally {
      held.current = false;
      setBusy(false);
    }
  };
  return { busy, onSubmit };
}
