const DB = "ttip-mobile-device";
const STORE = "keys";
function open() {
    return new Promise((resolve, reject) => {
        const req = indexedDB.open(DB, 1);
        req.onupgradeneeded = () => req.result.createObjectStore(STORE);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
    });
}
async function tx(mode, run) {
    const db = await open();
    try {
        return await new Promise((resolve, reject) => {
            const req = run(db.transaction(STORE, mode).objectStore(STORE));
            req.onsuccess = () => resolve(req.result);
            req.onerror = () => reject(req.error);
        });
    }
    finally {
        db.close();
    }
}
export async function deviceKeyring() {
    const load = (userId) => tx("readonly", (s) => s.get(userId));
    return {
        deviceId: async (userId) => (await load(userId))?.deviceId,
        async create(userId) {
            const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
            const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
            return {
                publicJwk: JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }),
                keep: async (deviceId) => void (await tx("readwrite", (s) => s.put({ deviceId, privateKey: pair.privateKey }, userId))),
            };
        },
        async sign(userId, challenge) {
            const held = await load(userId);
            if (!held)
                throw new Error("this browser holds no key");
            // WebCrypto's ECDSA signature is r||s (IEEE P1363), as auth expects.
            return new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, held.privateKey, challenge));
        },
        forget: async (userId) => void (await tx("readwrite", (s) => s.delete(userId))),
    };
}
