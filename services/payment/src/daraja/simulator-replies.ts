// What every Daraja simulator endpoint answers with: Daraja's error body and
// M-Pesa-looking receipts. Shared by the STK, B2C and C2B halves.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { sendJson } from "../simulator-http.js";

const RANDOM_POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;

/**
 * `n` random bytes for the simulator's ids, from a pool filled 4 KiB at a
 * time: one call into OpenSSL per few hundred ids, not several per push.
 */
export function randomIdBytes(n: number): Buffer {
  if (used + n > pool.length) {
    pool = randomBytes(Math.max(RANDOM_POOL_BYTES, n));
    used = 0;
  }
  used += n;
  return pool.subarray(used - n, used);
}

/** Daraja's error body: a request id, an error code and a message. */
export function darajaError(res: http.ServerResponse, status: number, errorCode: string, errorMessage: string): void {
  sendJson(res, status, { requestId: `${randomIdBytes(4).toString("hex")}-sim`, errorCode, errorMessage });
}

/** The 400 Daraja answers for a field it refuses. */
export function badRequest(res: http.ServerResponse, field: string): void {
  darajaError(res, 400, "400.002.02", `Bad Request - Invalid ${field}`);
}

/** Looks like an M-Pesa receipt: 10 upper-case letters and digits (S for STK and B2C, T for paybill). */
export function mpesaReceipt(prefix: "S" | "T"): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  let receipt: string = prefix;
  for (const b of randomIdBytes(9)) receipt += alphabet[b % alphabet.length];
  return receipt;
}
