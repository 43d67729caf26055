// The device key for payouts: an ECDSA P-256 key made on the phone, its secret
// half kept only in the secure store (Keychain / Keystore, this device only), its
// public half registered with auth (RegisterDevice). Each payout signs a fresh
// challenge from auth: ES256 over the challenge, r||s (64 bytes), as auth checks.
import { p256 } from "@noble/curves/nist.js";
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
const base64url = (b) => {
    let s = "";
    for (const x of b)
        s += String.fromCharCode(x);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
/** The public half as auth's RegisterDevice wants it: a P-256 JWK with x and y only. */
export function publicJwk(secret) {
    const point = p256.getPublicKey(secret, false); // 0x04 || x (32) || y (32)
    return JSON.stringify({ kty: "EC", crv: "P-256", x: base64url(point.slice(1, 33)), y: base64url(point.slice(33, 65)) });
}
/** `random(n)` gives n cryptographically random bytes (expo-crypto on a phone). */
export function secureStoreKeyring(store, random) {
    const slot = (userId) => `device_key.${userId}`;
    const load = async (userId) => {
        const raw = await store.get(slot(userId));
        return raw ? JSON.parse(raw) : undefined;
    };
    return {
        deviceId: async (userId) => (await load(userId))?.deviceId,
        async create(userId) {
            // 48 random bytes reduced onto the curve's field: no bias (noble's randomSecretKey).
            const secret = p256.utils.randomSecretKey(random(48));
            return {
                publicJwk: publicJwk(secret),
                keep: (deviceId) => store.set(slot(userId), JSON.stringify({ deviceId, secretHex: hex(secret) })),
            };
        },
        async sign(userId, challenge) {
            const key = await load(userId);
            if (!key)
                throw new Error("this device holds no key");
            return p256.sign(challenge, unhex(key.secretHex), { prehash: true, lowS: false });
        },
        forget: (userId) => store.delete(slot(userId)),
    };
}
export async function deviceKeyring() {
    const { getRandomBytes } = await import("expo-crypto");
    const { secureStore } = await import("./stores");
    return secureStoreKeyring(secureStore, getRandomBytes);
}
