// Headers for our own calls' hot paths: the calls the gateway forwards as bytes
// (gateway raw-forward.ts) and every in-process call (peers.ts' local
// transport, local-server.ts' handler context). Each check reads, sets and
// deletes a few of a call's headers (the identity headers dropped, the partner
// headers looked for, the request id, the internal signature), some twenty
// operations a call. Node's Headers validates and converts each name and value
// as WebIDL says and sorts the list on every walk; these keep them in a Map,
// names in lower case, and check a name and a value as fetch does only where
// one comes in (append, set).

/** An HTTP token (RFC 9110, 5.6.2), as fetch accepts a header's name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What fetch refuses in a value (after trimming): NUL, CR, LF. */
const FORBIDDEN_IN_VALUE = /[\0\r\n]/;
/** HTTP whitespace at either end of a value, which fetch trims. */
const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

function checkedName(name: string): string {
  if (!TOKEN.test(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`);
  return name.toLowerCase();
}

function checkedValue(name: string, value: string): string {
  const v = String(value).replace(EDGE_WHITESPACE, "");
  if (FORBIDDEN_IN_VALUE.test(v)) throw new TypeError(`invalid value for header ${name}`);
  return v;
}

/**
 * A Headers (instanceof holds, so connect-es and our interceptors take it as
 * one, though node's constructor never runs: its own list and Map per
 * instance would go unused) whose entries live in a Map: the same answers as fetch's Headers for
 * names in any case, values joined with ", " on append (cookies with "; "),
 * walked in the order set (fetch sorts; HTTP gives the order of different
 * names no meaning).
 * Several set-cookie values are joined into one, which getSetCookie gives whole
 * (fetch keeps each apart): no handler of ours sets one, neither in a request
 * nor in an in-process call's response headers or trailers, which are these too.
 * A name is checked where it comes in: get, has and delete of a name that is
 * no token answer null, false and nothing (fetch throws; ours are constants).
 */
export class LightHeaders implements Headers {
  readonly #entries = new Map<string, string>();

  /** A copy of `init` (what `new Headers(init)` takes: a Headers, pairs or a record), checked as fetch checks it. */
  static of(init?: ConstructorParameters<typeof Headers>[0]): LightHeaders {
    const headers = new LightHeaders();
    if (init === undefined) return headers;
    if (init instanceof LightHeaders) {
      // Already checked: copied as it is.
      for (const [key, value] of init.#entries) headers.#entries.set(key, value);
    } else if (init instanceof Headers) init.forEach((value, key) => headers.append(key, value));
    else if (Array.isArray(init) || Symbol.iterator in init) {
      for (const pair of init as Iterable<readonly string[]>) {
        if (pair.length !== 2) throw new TypeError("a header pair must hold a name and a value");
        headers.append(pair[0], pair[1]);
      }
    } else for (const key of Object.keys(init)) headers.append(key, (init as Record<string, string>)[key]);
    return headers;
  }

  /** A request's headers as node hands them over, name then value (HTTP/2's pseudo-headers left out). */
  static fromRaw(raw: readonly string[]): LightHeaders {
    const headers = new LightHeaders();
    for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") headers.append(raw[i], raw[i + 1]);
    return headers;
  }

  append(name: string, value: string): void {
    const key = checkedName(name);
    const v = checkedValue(name, value);
    const had = this.#entries.get(key);
    // As fetch: cookies (HTTP/2 may split them over several fields) join with "; ".
    this.#entries.set(key, had === undefined ? v : `${had}${key === "cookie" ? "; " : ", "}${v}`);
  }

  set(name: string, value: string): void {
    this.#entries.set(checkedName(name), checkedValue(name, value));
  }

  get(name: string): string | null {
    return this.#entries.get(name.toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#entries.has(name.toLowerCase());
  }

  delete(name: string): void {
    this.#entries.delete(name.toLowerCase());
  }

  getSetCookie(): string[] {
    const v = this.#entries.get("set-cookie");
    return v === undefined ? [] : [v];
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.#entries) callback.call(thisArg, value, key, this as unknown as Headers);
  }

  entries(): MapIterator<[string, string]> {
    return this.#entries.entries();
  }

  keys(): MapIterator<string> {
    return this.#entries.keys();
  }

  values(): MapIterator<string> {
    return this.#entries.values();
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.#entries.entries();
  }

  /** What util.inspect (a log line) shows: node's own would look for its list, which this has not. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `LightHeaders ${JSON.stringify(Object.fromEntries(this.#entries))}`;
  }
}

// Headers' prototype under ours: `instanceof Headers` holds, and every method a Headers has is ours.
Object.setPrototypeOf(LightHeaders.prototype, Headers.prototype);
