// What a login costs on this machine: argon2id PIN hashing and verifying at
// auth's parameters, and EdDSA access-token signing and JWKS verification (what
// the gateway and every other verifier do per call).
// Run: node --import tsx bench/auth-pin-and-tokens.ts
import { performance } from "node:perf_hooks";
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from "jose";
import { hashPin, verifyPin } from "../services/auth/src/pin.js";

async function timed(label: string, n: number, fn: (i: number) => Promise<unknown>) {
  const started = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const ms = performance.now() - started;
  console.log(`${label.padEnd(36)} ${(ms / n).toFixed(3).padStart(9)} ms/op  ${Math.round((n * 1000) / ms).toString().padStart(7)} ops/s`);
}

const pinHash = await hashPin("4826");
await timed("argon2id hash (PIN)", 20, () => hashPin("4826"));
await timed("argon2id verify (PIN)", 20, () => verifyPin(pinHash, "4826"));

const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA" }] });
const sign = () =>
  new SignJWT({ roles: ["worker"], sid: "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11" })
    .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
    .setIssuer("ttip-auth").setAudience("ttip").setSubject("user-1").setIssuedAt().setExpirationTime("10m")
    .sign(privateKey);
const token = await sign();
await timed("EdDSA access token sign", 2000, sign);
await timed("EdDSA access token verify (JWKS)", 2000, () =>
  jwtVerify(token, jwks, { issuer: "ttip-auth", audience: "ttip", algorithms: ["EdDSA", "ES256"] }));
