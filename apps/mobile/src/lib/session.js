const SLOT = "session";
/** The JWT's subject; the token is auth's, already verified by the gateway on each call. */
function subject(accessToken) {
    const part = accessToken.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const sub = JSON.parse(json).sub;
    if (typeof sub !== "string" || sub === "")
        throw new Error("access token without a subject");
    return sub;
}
/** Holds the session in memory for the interceptor, persists it, and tells the app when it changes. */
export class SessionStore {
    store;
    current;
    listeners = new Set();
    constructor(store) {
        this.store = store;
    }
    async restore() {
        const raw = await this.store.get(SLOT);
        this.current = raw ? JSON.parse(raw) : undefined;
        this.emit();
        return this.current;
    }
    get() {
        return this.current;
    }
    async save(tokens, options = {}) {
        const pinPending = options.pinPending ?? this.current?.pinPending ?? false;
        const s = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, userId: subject(tokens.accessToken), ...(pinPending ? { pinPending } : {}) };
        return this.put(s);
    }
    async pinWasSet() {
        if (this.current)
            await this.put({ ...this.current, pinPending: undefined });
    }
    async put(s) {
        this.current = s;
        await this.store.set(SLOT, JSON.stringify(s));
        this.emit();
        return s;
    }
    async clear() {
        this.current = undefined;
        await this.store.delete(SLOT);
        this.emit();
    }
    subscribe(listener) {
        this.listeners.add(listener);
        return () => void this.listeners.delete(listener);
    }
    emit() {
        for (const l of this.listeners)
            l(this.current);
    }
}
