import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { EventBus } from "@ttip/runtime";

/** The bus notification every payment replica listens to for its watchers (nothing stored). */
const WATCH_WAKE_SUBJECT = "ttip.payment.watch_wake";

/** A change key is a tip id or a payoutChangeKey: short; a longer one is not ours. */
const MAX_KEY_LENGTH = 128;

/**
 * How long a row this replica committed stands in for a watcher's first read:
 * long enough for the customer's WatchTip that follows its CreateTip at once,
 * short enough that the rows kept stay few (RECENT_MAX bounds them anyway).
 */
const RECENT_MS = 5_000;
const RECENT_MAX = 2_000;

/**
 * Wakes WatchTip/WatchPayout streams: this process's at once (with the row
 * when the change has it), every other replica's through the bus's
 * notification. A lost notification costs a watcher its poll interval, never
 * a change: the watchers still read the committed row on every poll.
 */
export class ChangeFeed {
  /** This replica's mark on what it sends, so it does not wake its own watchers twice. */
  private readonly origin = randomUUID();
  /**
   * This process's watchers. Private: waking them alone would leave the other
   * replicas' watchers to their poll, so every change goes through announce().
   */
  private readonly local = new EventEmitter().setMaxListeners(0);

  /**
   * The rows this replica committed lately, by key: a watcher's first read.
   * `row` undefined: the key changed without a row here (on another replica,
   * or announced without one), so its first read goes to the database.
   */
  private readonly recentRows = new Map<string, { row: unknown; at: number }>();

  constructor(private readonly bus: Pick<EventBus, "notify" | "listen">) {}

  /** Tells the watchers of `key` on every replica that a committed change happened; call after the commit. */
  announce(key: string, row?: unknown): void {
    this.keep(key, row);
    this.local.emit(key, row);
    if (key.length <= MAX_KEY_LENGTH) this.bus.notify?.(WATCH_WAKE_SUBJECT, Buffer.from(`${this.origin} ${key}`));
  }

  /**
   * A row this replica just committed without a change to announce (a tip as
   * CreateTip answered it): kept for a watcher's first read unless the key
   * has changed since, here or elsewhere, which a later row must not hide.
   */
  offer(key: string, row: unknown): void {
    const known = this.recentRows.get(key);
    if (!known || Date.now() - known.at > RECENT_MS) this.keep(key, row);
  }

  /** The row of `key` this replica committed within RECENT_MS, if no later change is known; else undefined (read the database). */
  recent(key: string): unknown {
    const known = this.recentRows.get(key);
    return known && Date.now() - known.at <= RECENT_MS ? known.row : undefined;
  }

  private keep(key: string, row: unknown): void {
    this.recentRows.delete(key);
    // Oldest first (a Map keeps insertion order): the bound drops the stalest.
    if (this.recentRows.size >= RECENT_MAX) this.recentRows.delete(this.recentRows.keys().next().value!);
    this.recentRows.set(key, { row, at: Date.now() });
  }

  /**
   * The next change of `key` announced on any replica: `wait` resolves with
   * the row its transaction committed when this replica made it and had it,
   * else undefined; undefined too after `ms` (the poll), when `signal` aborts,
   * or on cancel(). Plain listeners, no AbortController: every watcher cancels
   * a wait on every turn, and an abort without a reason builds a DOMException
   * with a stack each time, which nobody here reads.
   */
  next(key: string, signal: AbortSignal, ms: number): { wait: Promise<unknown>; cancel: () => void } {
    let settle!: (row: unknown) => void;
    const wait = new Promise<unknown>((resolve) => (settle = resolve));
    let timer: NodeJS.Timeout | undefined;
    const onChange = (row?: unknown) => finish(row);
    const onAbort = () => finish(undefined);
    const finish = (row: unknown) => {
      if (timer === undefined) return; // settled already
      clearTimeout(timer);
      timer = undefined;
      this.local.off(key, onChange);
      signal.removeEventListener("abort", onAbort);
      settle(row);
    };
    timer = setTimeout(onAbort, ms);
    this.local.on(key, onChange);
    if (signal.aborted) finish(undefined);
    else signal.addEventListener("abort", onAbort);
    return { wait, cancel: onAbort };
  }

  /** Wakes this process's watchers on other replicas' changes until stopped; a no-op on a bus without notifications. */
  async listen(): Promise<() => Promise<void>> {
    if (!this.bus.listen) return async () => undefined;
    const sub = await this.bus.listen(WATCH_WAKE_SUBJECT, (data) => {
      const [origin, key] = Buffer.from(data).toString("utf8").split(" ");
      // "error" would make the emitter throw: no tip or payout has that key.
      if (origin !== this.origin && key && key !== "error" && key.length <= MAX_KEY_LENGTH) {
        this.keep(key, undefined);
        this.local.emit(key);
      }
    });
    return () => sub.stop();
  }
}
