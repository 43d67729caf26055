// The browser build's fallback for the device key (no secure store, no biometrics):
// as apps/web does, a non-extractable WebCrypto P-256 key kept in IndexedDB, which
// stores the CryptoKey itself and never its bytes.
import type { DeviceKeyring } from "./device-key";

export type { DeviceKeyring } from "./device-key";

const DB = "ttip-mobile-device";
const STORE = "keys";

interface Held {
  deviceId: string;
  privateKey: CryptoKey;
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, run: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const req = run(db.transaction(STORE, mode).objectStore(STORE));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  } finally {
    db.close();
  }
}

export async function deviceKeyring(): Promise<DeviceKeyring> {
  const load = (userId: string) => tx("readonly", (s) => s.get(userId) as IDBRequest<Held | undefined>);
  return {
    deviceId: async (userId) => (await load(userId))?.deviceId,
    async create(userId) {
      const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
      const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
      return {
        publicJwk: JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }),
        keep: async (deviceId) => void (await tx("readwrite", (s) => s.put({ deviceId, privateKey: pair.privateKey } satisfies Held, userId))),
      };
    },
    async sign(userId, challenge) {
      const held = await load(userId);
      if (!held) throw new Error("this browser holds no key");
      // WebCrypto's ECDSA signature is r||s (IEEE P1363), as auth expects.
      return new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, held.privateKey, challenge as BufferSource));
    },
    forget: async (userId) => void (await tx("readwrite", (s) => s.delete(userId))),
  };
}
