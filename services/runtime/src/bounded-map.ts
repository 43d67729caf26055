// The one rule for a replica's in-memory memo of facts that never change
// (an account's id, a worker's KES wallet): a limit on entries, the oldest
// forgotten first, and a forgotten fact asked again of its owner.

/** A Map holding at most `max` entries: setting a new key when full forgets the oldest one. */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`a bounded map holds at least one entry (max ${max})`);
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) this.delete(this.keys().next().value!);
    return super.set(key, value);
  }
}

/** `make(key)` made once per key and held weakly: it goes with its key (a pool, a service's context). */
export function weakMemo<K extends object, T>(make: (key: K) => T): (key: K) => T {
  const made = new WeakMap<K, T>();
  return (key) => {
    let value = made.get(key);
    if (!value) made.set(key, (value = make(key)));
    return value;
  };
}
