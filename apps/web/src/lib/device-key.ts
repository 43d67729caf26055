// The device key for payouts: an ECDSA P-256 key made in the browser with
// WebCrypto, its private half not extractable, kept in IndexedDB (which
// stores the CryptoKey itself, never its bytes). auth holds the public half
// (RegisterDevice, with the worker's PIN) and checks signed challenges.
import { clearSession } from "./session";

const DB = "ttip-device";
const STORE = "keys";

export interface DeviceKey {
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

async function tx<T>(mode: IDBTransactionMode, run: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
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

/** The key this browser holds for `userId`, if any. */
export function loadDeviceKey(userId: string): Promise<DeviceKey | undefined> {
  return tx("readonly", (s) => s.get(userId) as IDBRequest<DeviceKey | undefined>);
}

/** A new key pair; the private key cannot be exported, the public one goes to auth as a JWK. */
export async function newDeviceKey(): Promise<{ privateKey: CryptoKey; publicJwk: string }> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  return { privateKey: pair.privateKey, publicJwk: JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }) };
}

export async function saveDeviceKey(userId: string, key: DeviceKey): Promise<void> {
  await tx("readwrite", (s) => s.put(key, userId));
}

export async function forgetDeviceKey(userId: string): Promise<void> {
  await tx("readwrite", (s) => s.delete(userId));
}

/**
 * This browser signed `userId` out: their key and the stored session are forgotten. The key approves their
 * withdrawals: kept, whoever signed in here next as them would use it, with no PIN asked for a new one.
 */
export async function forgetSignedOut(userId: string | undefined): Promise<void> {
  if (userId) await forgetDeviceKey(userId).catch(() => undefined);
  clearSession();
}

/** ES256 over the challenge: WebCrypto gives r||s (IEEE P1363, 64 bytes), as auth expects. */
export async function signChallenge(key: CryptoKey, challenge: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, challenge as BufferSource));
}
