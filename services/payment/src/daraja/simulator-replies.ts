// What every Daraja simulator endpoint answers with: Daraja's error body and
// M-Pesa-looking receipts. Shared by the STK, B2C and C2B halves.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { sendJson } from "../simulator-http.js";

/** Daraja's error body: a request id, an error code and a message. */
export function darajaError(res: http.ServerResponse, status: number, errorCode: string, errorMessage: string): void {
  sendJson(res, status, { requestId: `${randomBytes(4).toString("hex")}-sim`, errorCode, errorMessage });
}

/** The 400 Daraja answers for a field it refuses. */
export function badRequest(res: http.ServerResponse, field: string): void {
  darajaError(res, 400, "400.002.02", `Bad Request - Invalid ${field}`);
}

/** Looks like an M-Pesa receipt: 10 upper-case letters and digits (S for STK and B2C, T for paybill). */
export function mpesaReceipt(prefix: "S" | "T"): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return `${prefix}${[...randomBytes(9)].map((b) => alphabet[b % alphabet.length]).join("")}`;
}
