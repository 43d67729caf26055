"use client";
// One guard for every form that writes: the worker's, the venue manager's,
// the tip page's card form and the admin console's.
import { useRef, useState, type FormEvent } from "react";
import { newWriteKey, settlesWrite } from "./write-key";

/** Sends the keyed call of an attempt; `settled` says whether a value (not an error) answered it, as a server action's "try again" does not. */
export type Send = <T>(call: (key: string) => Promise<T>, settled?: (answer: T) => boolean) => Promise<T>;

export interface WriteGuard {
  /** An attempt is running: disable the button. */
  busy: boolean;
  /**
   * Runs one attempt unless one is running (then nothing happens). `attempt`
   * may check and step up first; it sends the write through `send`. Errors go
   * to `failed`.
   */
  run(attempt: (send: Send) => Promise<unknown>, failed?: (err: unknown) => void): Promise<void>;
  /** `run` as a form's submit handler; the form's fields are read before anything is awaited. */
  onSubmit(attempt: (form: FormData, send: Send) => Promise<unknown>, failed?: (err: unknown) => void): (e: FormEvent<HTMLFormElement>) => void;
}

/**
 * One key per intended write. The guard is taken synchronously, before any
 * await: a disabled button alone comes too late, as the second tap of a double
 * tap can arrive before React re-renders. The key is renewed only when the
 * keyed call got a definite answer (success or refusal); after a lost answer
 * every retry sends the same key, so the service does the write at most once.
 * `firstKey`: a key the server rendered into the page, when it has one.
 */
export function useWrite(firstKey?: string): WriteGuard {
  const held = useRef(false);
  const key = useRef<string>(undefined);
  key.current ??= firstKey ?? newWriteKey();
  const [busy, setBusy] = useState(false);

  const send: Send = async (call, settled) => {
    const used = key.current!;
    let answer: Awaited<ReturnType<typeof call>>;
    try {
      answer = await call(used);
    } catch (err) {
      if (settlesWrite(err)) renew(used);
      throw err;
    }
    if (settled?.(answer) ?? true) renew(used);
    return answer;
  };
  const renew = (used: string) => {
    if (key.current === used) key.current = newWriteKey();
  };

  const run: WriteGuard["run"] = async (attempt, failed) => {
    if (held.current) return;
    held.current = true;
    setBusy(true);
    try {
      await attempt(send);
    } catch (err) {
      if (!failed) throw err;
      failed(err);
    } finally {
      held.current = false;
      setBusy(false);
    }
  };
  const onSubmit: WriteGuard["onSubmit"] = (attempt, failed) => (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    void run((s) => attempt(form, s), failed);
  };
  return { busy, run, onSubmit };
}
