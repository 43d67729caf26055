// One provider client per configuration, rebuilt when the configuration read at a call differs from the one it
// was built from. Configurations are read at each use (a test or an operator may change them), and a client keeps
// state worth keeping while they do not change (an OAuth token, a connection pool).

/**
 * Every field of two flat configurations equal (strings, numbers, functions by identity). The whole
 * configuration, not a few fields: a client built from an older one would keep its timeout, secret or
 * endpoint after a change of that alone.
 */
export function sameFields<C extends object>(a: C, b: C): boolean {
  if (a === b) return true;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof C)[]);
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

/** The value `build` made from the configuration read now, made again only when a field of it changed; undefined while there is none. */
export function perConfiguration<C extends object, T>(config: () => C | undefined, build: (c: C) => T): () => T | undefined {
  let current: { config: C; value: T } | undefined;
  return () => {
    const c = config();
    if (!c) return undefined;
    if (!current || !sameFields(current.config, c)) current = { config: c, value: build(c) };
    return current.value;
  };
}
