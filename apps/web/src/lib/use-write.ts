"use client";
// One guard for every form that writes: the worker's, the venue manager's,
// the tip page's card form and the admin console's.
import { useRef, useState, type FormEvent } from "react";
import { formIntent } from "./form-intent";
import { settlesWrite, WriteKey } from "./write-key";

/** Sends the keyed call of an attempt; `settled` says whether a value (not an error) answered it, as a server action's "try again" does not. */
export type Send = <T>(call: (key: string) => Promise<T>, settled?: (answer: T) => boolean) => Promise<T>;

export interface WriteGuard {
  /** An attempt is running: disable the button. */
  busy: boolean;
  /**
   * Runs one attempt unless one is running (then nothing happens). `attempt`
   * may check and step up first; it sends the write through `send`. Errors go
   * to `failed`. `intent`: what the write asks (its fields, without the key);
   * when it differs from the last attempt's, the write gets a new key.
   */
  run(attempt: (send: Send) => Promise<unknown>, failed?: (err: unknown) => void, intent?: string): Promise<void>;
  /**
   * `run` as a form's submit handler; the form's fields, read before anything is awaited, are the intent, or what
   * `intentOf` makes of them: the values the write sends (a payout's "1,000" and "1000" are one request).
   */
  onSubmit(attempt: (form: FormData, send: Send) => Promise<unknown>, failed?: (err: unknown) => void, intentOf?: (form: FormData) => string): (e: FormEvent<HTMLFormElement>) => void;
}

/**
 * One key per intended write. The guard is taken synchronously, before any
 * await: a disabled button alone comes too late, as the second tap of a double
 * tap can arrive before React re-renders. The key is renewed only when the
 * keyed call got a definite answer (success or refusal); after a lost answer
 * every retry of the same request sends the same key, so the service does the
 * write at most once; an edited request is a new write with a new key.
 * `first`: a key the server rendered into the page, when it has one; or keys that outlive the screen, when
 * leaving it must not forget a write still unanswered.
 */
export function useWrite(first?: string | WriteKey): WriteGuard {
  const held = useRef(false);
  const key = useRef<WriteKey>(undefined);
  key.current ??= first instanceof WriteKey ? first : new WriteKey(first);
  const [busy, setBusy] = useState(false);

  const sendFor = (intent: string | undefined): Send => async (call, settled) => {
    const keys = key.current!;
    const used = keys.use(intent);
    let answer: Awaited<ReturnType<typeof call>>;
    try {
      answer = await call(used);
    } catch (err) {
      if (settlesWrite(err)) keys.settle(used);
      throw err;
    }
    if (settled?.(answer) ?? true) keys.settle(used);
    return answer;
  };

  const run: WriteGuard["run"] = async (attempt, failed, intent) => {
    if (held.current) return;
    held.current = true;
    setBusy(true);
    try {
      await attempt(sendFor(intent));
    } catch (err) {
      if (!failed) throw err;
      failed(err);
    } finally {
      held.current = false;
      setBusy(false);
    }
  };
  const onSubmit: WriteGuard["onSubmit"] = (attempt, failed, intentOf = formIntent) => (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    void run((s) => attempt(form, s), failed, intentOf(form));
  };
  return { busy, run, onSubmit };
}
