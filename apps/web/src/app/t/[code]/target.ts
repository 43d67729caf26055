// What the tip page knows about a scanned code, from the qr service.
import { Code, ConnectError } from "@connectrpc/connect";
import { QrCodeProblemSchema, QrProblemKind, type TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { Messages } from "../../../lib/i18n";
import { serverClient } from "../../../lib/api";

export type Resolved = { target: TipTarget } | { problem: keyof Messages };

const PROBLEMS: Partial<Record<QrProblemKind, keyof Messages>> = {
  [QrProblemKind.TAMPERED]: "problem_tampered",
  [QrProblemKind.EXPIRED]: "problem_expired",
  [QrProblemKind.ROTATED]: "problem_rotated",
  [QrProblemKind.REVOKED]: "problem_revoked",
  [QrProblemKind.OWNER_INACTIVE]: "problem_inactive",
  [QrProblemKind.VENUE_INACTIVE]: "problem_inactive",
  [QrProblemKind.UNKNOWN_CODE]: "problem_unknown",
};

/** The code as the QR encodes it: the signed payload when present, else the short code a person typed. */
export function codeOf(shortCode: string, payload: string | undefined) {
  return payload && payload.length >= 16
    ? ({ case: "payload", value: payload } as const)
    : ({ case: "shortCode", value: shortCode } as const);
}

/**
 * What a tip from the page names as its recipient: the code the page resolved and showed (codeOf), never
 * another. A short ?p= (another code's short code) would otherwise show one worker and pay another.
 */
export const recipientOf = (shortCode: string, payload: string | undefined): string => codeOf(shortCode, payload).value;

/** Resolves the code; `scan` also records the scan (the page's first view), as analytics counts scans. */
export async function resolveTarget(shortCode: string, payload: string | undefined, scan?: { userAgent: string; referrer: string }): Promise<Resolved> {
  const qr = serverClient(QrService);
  try {
    const code = codeOf(shortCode, payload);
    const res = scan
      ? await qr.recordScan({ code, userAgent: scan.userAgent.slice(0, 512), referrer: scan.referrer.slice(0, 2048) })
      : await qr.resolveQrCode({ code });
    if (!res.target) return { problem: "problem_other" };
    return { target: res.target };
  } catch (err) {
    const e = ConnectError.from(err);
    const detail = e.findDetails(QrCodeProblemSchema)[0];
    if (detail && PROBLEMS[detail.kind]) return { problem: PROBLEMS[detail.kind]! };
    if (e.code === Code.NotFound) return { problem: "problem_unknown" };
    if (e.code === Code.InvalidArgument) return { problem: "problem_tampered" };
    return { problem: "problem_other" };
  }
}
