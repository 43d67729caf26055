// In the browser build the secure store has no equivalent: the session lives in
// local storage as apps/web keeps it; the device key is a non-extractable WebCrypto
// key instead (device-key.web.ts).
import type { KeyValue } from "./key-value";

function local(prefix: string): KeyValue {
  return {
    get: async (k) => window.localStorage.getItem(prefix + k) ?? undefined,
    set: async (k, v) => window.localStorage.setItem(prefix + k, v),
    delete: async (k) => window.localStorage.removeItem(prefix + k),
  };
}

export const secureStore = local("ttip_secure:");
export const cacheStore = local("ttip_cache:");
