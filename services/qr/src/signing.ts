import { timingSafeEqual } from "node:crypto";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { DynamicParametersSchema, type DynamicParameters } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { hmacSha256 } from "@ttip/runtime";

/**
 * The signed payload a QR URL carries: `<body>.<mac>`, both base64url.
 * Body = version byte, the code's UUID (16 bytes), expiry in Unix seconds
 * (uint32, 0 = none), then the DynamicParameters in protobuf binary. Binary
 * keeps the URL short, so the printed code stays coarse and easy to scan.
 * The MAC is HMAC-SHA256 over the body bytes.
 */
export interface PayloadClaims {
  qrCodeId: string;
  /** Unix seconds, or undefined for a code that never expires. */
  expiresAt?: number;
  parameters: DynamicParameters;
}

const VERSION = 1;

export class PayloadError extends Error {
  constructor(
    message: string,
    readonly reason: "malformed" | "signature",
  ) {
    super(message);
  }
}

export class PayloadSigner {
  private readonly keys: Buffer[];

  /** `current` signs; it and every `previous` key verify, so keys can be rotated without reprinting. */
  constructor(current: string, previous: string[] = []) {
    this.keys = [current, ...previous].map((k) => Buffer.from(k, "utf8"));
  }

  sign(claims: PayloadClaims): string {
    const body = encodeBody(claims);
    return `${body.toString("base64url")}.${mac(this.keys[0], body).toString("base64url")}`;
  }

  /** The claims of a genuine payload; throws PayloadError for a malformed or tampered one. */
  verify(payload: string): PayloadClaims {
    const parts = payload.split(".");
    if (parts.length !== 2 || !/^[A-Za-z0-9_-]+$/.test(parts[0]) || !/^[A-Za-z0-9_-]+$/.test(parts[1])) {
      throw new PayloadError("payload is not <body>.<signature> in base64url", "malformed");
    }
    const body = Buffer.from(parts[0], "base64url");
    const given = Buffer.from(parts[1], "base64url");
    const genuine = this.keys.some((k) => {
      const expected = mac(k, body);
      return expected.length === given.length && timingSafeEqual(expected, given);
    });
    if (!genuine) throw new PayloadError("payload signature does not match: the code was altered or not issued by us", "signature");
    return decodeBody(body);
  }
}

function mac(key: Buffer, body: Buffer): Buffer {
  return hmacSha256(key, body);
}

function encodeBody(claims: PayloadClaims): Buffer {
  const head = Buffer.alloc(21);
  head.writeUInt8(VERSION, 0);
  Buffer.from(claims.qrCodeId.replace(/-/g, ""), "hex").copy(head, 1);
  head.writeUInt32BE(claims.expiresAt ?? 0, 17);
  return Buffer.concat([head, Buffer.from(toBinary(DynamicParametersSchema, claims.parameters))]);
}

function decodeBody(body: Buffer): PayloadClaims {
  // Only reached for a genuine MAC, so a bad shape here means a bug or an old version.
  if (body.length < 21 || body.readUInt8(0) !== VERSION) throw new PayloadError("payload version is not supported", "malformed");
  const hex = body.subarray(1, 17).toString("hex");
  const qrCodeId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const exp = body.readUInt32BE(17);
  let parameters: DynamicParameters;
  try {
    parameters = fromBinary(DynamicParametersSchema, body.subarray(21));
  } catch {
    throw new PayloadError("payload parameters do not decode", "malformed");
  }
  return { qrCodeId, expiresAt: exp === 0 ? undefined : exp, parameters: parameters ?? create(DynamicParametersSchema) };
}
