// The worker's session on this device: auth's token pair, kept in the secure store
// so the app stays signed in; rotated when the access token is refused.
import type { KeyValue } from "./key-value";

export interface Session {
  accessToken: string;
  refreshToken: string;
  userId: string;
  /** Signed in by OTP at the first sign-in, PIN not chosen yet: only SetPin may use it. */
  pinPending?: boolean;
}

const SLOT = "session";

/** The JWT's subject; the token is auth's, already verified by the gateway on each call. */
function subject(accessToken: string): string {
  const part = accessToken.split(".")[1] ?? "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  const sub = (JSON.parse(json) as { sub?: unknown }).sub;
  if (typeof sub !== "string" || sub === "") throw new Error("access token without a subject");
  return sub;
}

/** Holds the session in memory for the interceptor, persists it, and tells the app when it changes. */
export class SessionStore {
  private current: Session | undefined;
  private listeners = new Set<(s: Session | undefined) => void>();

  constructor(private readonly store: KeyValue) {}

  async restore(): Promise<Session | undefined> {
    const raw = await this.store.get(SLOT);
    this.current = raw ? (JSON.parse(raw) as Session) : undefined;
    this.emit();
    return this.current;
  }

  get(): Session | undefined {
    return this.current;
  }

  async save(tokens: { accessToken: string; refreshToken: string }, options: { pinPending?: boolean } = {}): Promise<Session> {
    const pinPending = options.pinPending ?? this.current?.pinPending ?? false;
    const s: Session = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, userId: subject(tokens.accessToken), ...(pinPending ? { pinPending } : {}) };
    return this.put(s);
  }

  async pinWasSet(): Promise<void> {
    if (this.current) await this.put({ ...this.current, pinPending: undefined });
  }

  private async put(s: Session): Promise<Session> {
    this.current = s;
    await this.store.set(SLOT, JSON.stringify(s));
    this.emit();
    return s;
  }

  async clear(): Promise<void> {
    this.current = undefined;
    await this.store.delete(SLOT);
    this.emit();
  }

  subscribe(listener: (s: Session | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private emit() {
    for (const l of this.listeners) l(this.current);
  }
}
