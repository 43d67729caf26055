import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { DynamicParametersSchema, QrCodeSchema, type QrCode } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { DependencyUnavailableError, InvalidStateError, NotFoundError, type Pool, type Queryable, requireCaller } from "@ttip/runtime";
import { requireManage, VENUE } from "../access.js";
import type { QrConfig } from "../config.js";
import type { ActiveKeyCheck } from "../partner-links.js";
import { buildKeQrPayload } from "../emvco.js";
import { type Resolver } from "../resolver.js";
import { newShortCode, shortCodeDigits } from "../shortcode.js";
import type { PayloadSigner } from "../signing.js";
import { codeById, insertCode, type CodeRecord } from "../stores/codes.js";
import { profileOf } from "../stores/profiles.js";
export interface QrDeps {
  pool: Pool;
  cfg: QrConfig;
  signer: PayloadSigner;
  /** Keys the device hash of scans (never stored raw). */
  deviceSalt: string;
  resolver: Resolver;
  /** Auth's word on a partner key before it is linked. */
  requireActiveKey: ActiveKeyCheck;
}

/** A code the caller may manage, or NOT_FOUND / PERMISSION_DENIED. */
async function managedCode(db: Queryable, ctx: HandlerContext, id: string, lock = false): Promise<CodeRecord> {
  const caller = requireCaller(ctx);
  const code = await codeById(db, id, lock);
  if (!code) throw new NotFoundError(`qr_code_id: no QR code ${id}`);
  await requireManage(db, caller, code.ownerKind, code.ownerId, code.venueId);
  return code;
}

function requireActive(c: CodeRecord) {
  if (c.status === 2) throw new InvalidStateError(`QR code ${c.id} was replaced by ${c.replacedBy}; use the new code`);
  if (c.status === 3) throw new InvalidStateError(`QR code ${c.id} is revoked`);
  // A card printed from it would read as live: every scan is refused, and every paybill payment naming it parked.
  if (c.expiresAt !== null && c.expiresAt <= Date.now()) throw new InvalidStateError(`QR code ${c.id} has expired; create a new code instead`);
}

/** Inserts a code with a fresh short code, drawing again on the (rare) collision. */
async function insertWithFreshShortCode(tx: Queryable, c: Omit<Parameters<typeof insertCode>[1], "shortCode">): Promise<CodeRecord> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const inserted = await insertCode(tx, { ...c, shortCode: newShortCode() });
    if (inserted) return inserted;
  }
  throw new DependencyUnavailableError("could not draw a free short code; try again");
}

/** What every qr handler shares: the service's dependencies and how a code is shown, checked and stored. */
export type QrHandlerContext = ReturnType<typeof qrHandlerContext>;

export function qrHandlerContext(deps: QrDeps) {
  const { pool, cfg, signer } = deps;

  const payloadOf = (c: CodeRecord) =>
    signer.sign({
      qrCodeId: c.id,
      expiresAt: c.expiresAt === null ? undefined : Math.floor(c.expiresAt / 1000),
      parameters: fromBinary(DynamicParametersSchema, Buffer.from(c.parameters, "base64")),
    });
  const urlOf = (c: CodeRecord) => `${cfg.QR_TIP_BASE_URL.replace(/\/+$/, "")}/${c.shortCode}?p=${payloadOf(c)}`;
  const ussdOf = (c: CodeRecord) => `${cfg.QR_USSD_PREFIX}*${shortCodeDigits(c.shortCode)}#`;

  function qrMessage(c: CodeRecord): QrCode {
    return create(QrCodeSchema, {
      qrCodeId: c.id,
      shortCode: c.shortCode,
      ownerKind: c.ownerKind,
      ownerId: c.ownerId,
      venueId: c.venueId ?? "",
      parameters: fromBinary(DynamicParametersSchema, Buffer.from(c.parameters, "base64")),
      url: urlOf(c),
      status: c.status,
      expiresAt: c.expiresAt === null ? undefined : timestampFromMs(c.expiresAt),
      createdAt: timestampFromMs(c.createdAt),
      replacedByQrCodeId: c.replacedBy ?? "",
    });
  }

  /** The owner's and venue's display records for cards and offline payloads. */
  async function displayOf(c: CodeRecord) {
    const owner = await profileOf(pool, c.ownerKind, c.ownerId);
    const venueId = c.ownerKind === VENUE ? c.ownerId : c.venueId;
    const venue = venueId ? (c.ownerKind === VENUE ? owner : await profileOf(pool, VENUE, venueId)) : undefined;
    return { owner, venue };
  }

  /** The KE-QR payload naming the paybill, and the display records; no payload when no paybill is configured. */
  async function offlineOf(c: CodeRecord) {
    const { owner, venue } = await displayOf(c);
    if (!cfg.QR_MPESA_SHORTCODE) return { emvcoPayload: undefined, owner, venue };
    const params = fromBinary(DynamicParametersSchema, Buffer.from(c.parameters, "base64"));
    const fixed = params.fixedAmount?.currency === "KES" ? params.fixedAmount.amountMinor : undefined;
    const emvcoPayload = buildKeQrPayload({
      shortcodeKind: cfg.QR_MPESA_SHORTCODE_KIND,
      shortcode: cfg.QR_MPESA_SHORTCODE,
      accountReference: c.accountReference,
      merchantName: owner?.displayName ?? "TTIP",
      city: venue?.city || owner?.city || cfg.QR_MERCHANT_CITY,
      merchantCategoryCode: cfg.QR_MERCHANT_CATEGORY_CODE,
      ussdCode: ussdOf(c),
      fixedAmountMinor: fixed,
      issuedAt: new Date(c.createdAt),
    });
    return { emvcoPayload, owner, venue };
  }
  return { ...deps, payloadOf, urlOf, ussdOf, qrMessage, managedCode, requireActive, insertWithFreshShortCode, displayOf, offlineOf };
}
