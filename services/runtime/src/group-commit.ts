import assert from "node:assert/strict";
import { weakMemo } from "./bounded-map.js";

/**
 * Work that is cheaper together (one statement or one call for many items), done as it
 * comes: the first item goes at once (after the current turn of the event loop, so that
 * items added in the same turn join it), and those added while a group is out go together
 * in the next one, `max` at most. So an item waits for at most the group before it, a
 * quiet service adds no wait, and a busy one makes few, larger groups.
 */
export class GroupCommit<I, O> {
  private readonly waiting: { item: I; resolve: (out: O) => void; reject: (err: unknown) => void }[] = [];
  private running = false;

  /**
   * `run` answers one output per item, in order; when it throws, every item of its group rejects
   * with that. `maxWaiting` bounds the items waiting for a group: while `run` is stuck (a peer
   * that does not answer), more are refused at once (GroupCommitFull) rather than held.
   */
  constructor(
    private readonly max: number,
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly maxWaiting = Number.POSITIVE_INFINITY,
  ) {
    assert(Number.isInteger(max) && max > 0, "a group holds at least one item");
    assert(maxWaiting >= max, "room for a group at least");
  }

  /** Resolves with the item's output once its group has run. */
  add(item: I): Promise<O> {
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(new GroupCommitFull(this.maxWaiting));
    const done = new Promise<O>((resolve, reject) => this.waiting.push({ item, resolve, reject }));
    if (!this.running) void this.drain();
    return done;
  }

  private async drain(): Promise<void> {
    this.running = true;
    await new Promise((resolve) => setImmediate(resolve));
    while (this.waiting.length) {
      const group = this.waiting.splice(0, this.max);
      try {
        const outs = await this.run(group.map((g) => g.item));
        assert(outs.length === group.length, "one output per item");
        group.forEach((g, i) => g.resolve(outs[i]));
      } catch (err) {
        for (const g of group) g.reject(err);
      }
    }
    this.running = false;
  }
}

/** Refused by a group commit whose waiting items are at their bound. */
export class GroupCommitFull extends Error {
  constructor(readonly maxWaiting: number) {
    super(`${maxWaiting} items already waiting; try again later`);
  }
}

/**
 * One GroupCommit per key (a pool or a transaction's client, a module's
 * dependencies), made on first use and held weakly: it goes with its key.
 */
export function groupCommitPer<K extends object, I, O>(make: (key: K) => GroupCommit<I, O>): (key: K) => GroupCommit<I, O> {
  return weakMemo(make);
}

/**
 * A copy of `items` in their keys' order (by UTF-16 code units, as `<` compares strings):
 * the order a group statement takes its rows' locks in, so that two processes' groups
 * over the same rows meet them in the same order and neither holds what the other waits for.
 */
export function sortedByKey<T>(items: Iterable<T>, key: (item: T) => string): T[] {
  return [...items].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
