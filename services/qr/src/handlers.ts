import { createHmac, randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { QrScannedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  DynamicParametersSchema,
  ErrorCorrection,
  ImageFormat,
  OwnerKind,
  ProfileSchema,
  QrCodeSchema,
  QrCodeStatus,
  ScanStatsSchema,
  type DynamicParameters,
  type QrCode,
} from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { callerOf, claimIdempotencyKey, CLIENT_ADDRESS_HEADER, decodeTimeIdToken, DependencyUnavailableError, emitEvent, fieldError, idempotentRequest, InvalidStateError, keysetPage, keysetTime, MPESA_LIMITS, NotFoundError, pageSize, PermissionDeniedError, type Pool, type Queryable, requireCaller, withTransaction } from "@ttip/runtime";
import { canManage, requireManage, requireVenueManager, VENUE, WORKER } from "./access.js";
import { partnerLinkHandlers, partnerLinkOf } from "./partner-links.js";
import type { QrConfig } from "./config.js";
import { buildKeQrPayload } from "./emvco.js";
import { DEFAULT_SIZE, minPngSize, renderCardPdf, renderCardSvg, renderPng, renderSvg, type CardText, type EcLevel } from "./render.js";
import { cacheKeys, targetCurrency, type Resolver } from "./resolver.js";
import { photoFrom, photoUrlOf } from "./photo.js";
import { newShortCode, normalizeShortCode, oneSlipAway } from "./shortcode.js";
import type { PayloadSigner } from "./signing.js";
import {
  codeByAccountReference,
  codeById,
  codeFromRow,
  insertCode,
  isVenueStaff,
  isVenueManager,
  profileOf,
  managedVenues,
  photoOf,
  putPhoto,
  setStatus,
  upsertProfile,
  type CodeRecord,
  type ProfileRecord,
} from "./store.js";

export interface QrDeps {
  pool: Pool;
  cfg: QrConfig;
  signer: PayloadSigner;
  /** Keys the device hash of scans (never stored raw). */
  deviceSalt: string;
  resolver: Resolver;
}

const MAX_SUGGESTED = 10;
const MAX_LABEL = 64;
/** No single tip above M-Pesa's per-transaction limit (KES 250,000, Safaricom's portal). */
const MAX_AMOUNT_MINOR = MPESA_LIMITS.perTransactionMinor;


function validateMoney(m: Money, field: string, currency: string) {
  if (m.currency !== currency) throw fieldError(`${field}.currency`, `must be ${currency}, the currency this code is tipped in`);
  if (m.amountMinor <= 0n) throw fieldError(`${field}.amount_minor`, "must be positive");
  if (m.amountMinor > MAX_AMOUNT_MINOR) throw fieldError(`${field}.amount_minor`, `must be at most ${MAX_AMOUNT_MINOR}`);
  // M-Pesa moves whole shillings only.
  if (currency === "KES" && m.amountMinor % 100n !== 0n) throw fieldError(`${field}.amount_minor`, "KES amounts must be whole shillings (a multiple of 100)");
}

export function validateParameters(p: DynamicParameters | undefined, currency: string) {
  if (!p) return;
  if (p.suggestedAmounts.length > MAX_SUGGESTED) throw fieldError("parameters.suggested_amounts", `at most ${MAX_SUGGESTED} amounts`);
  p.suggestedAmounts.forEach((m, i) => validateMoney(m, `parameters.suggested_amounts[${i}]`, currency));
  if (p.fixedAmount) {
    if (p.suggestedAmounts.length) throw fieldError("parameters.fixed_amount", "give suggested_amounts or fixed_amount, not both");
    validateMoney(p.fixedAmount, "parameters.fixed_amount", currency);
  }
  for (const [name, value] of [["table", p.table], ["shift", p.shift], ["campaign", p.campaign]] as const) {
    if (value.length > MAX_LABEL) throw fieldError(`parameters.${name}`, `at most ${MAX_LABEL} characters`);
    if (/[\u0000-\u001f]/.test(value)) throw fieldError(`parameters.${name}`, "must not contain control characters");
  }
}

/** Where a scan came from, without the query or fragment (they may carry personal data). */
export function referrerOf(raw: string): string {
  if (!raw) return "";
  try {
    const u = new URL(raw);
    return `${u.origin}${u.pathname}`;
  } catch {
    return raw.replace(/[?#].*$/, "").slice(0, 512);
  }
}

function profileMessage(p: ProfileRecord, tipBaseUrl: string) {
  return create(ProfileSchema, {
    ownerKind: p.ownerKind,
    ownerId: p.ownerId,
    displayName: p.displayName,
    photoUrl: p.photoUrl,
    active: p.active,
    currency: p.currency,
    city: p.city,
    role: p.role,
    uploadedPhotoUrl: photoUrlOf(tipBaseUrl, p.ownerKind, p.ownerId, p.photoSha256),
    updatedAt: timestampFromMs(p.updatedAt),
  });
}

const EC: Record<ErrorCorrection, EcLevel> = {
  [ErrorCorrection.UNSPECIFIED]: "M",
  [ErrorCorrection.L]: "L",
  [ErrorCorrection.M]: "M",
  [ErrorCorrection.Q]: "Q",
  [ErrorCorrection.H]: "H",
};

export function createHandlers(deps: QrDeps): { public: Partial<ServiceImpl<typeof QrService>>; internal: Partial<ServiceImpl<typeof QrInternalService>> } {
  const { pool, cfg, signer, resolver } = deps;

  const payloadOf = (c: CodeRecord) =>
    signer.sign({
      qrCodeId: c.id,
      expiresAt: c.expiresAt === null ? undefined : Math.floor(c.expiresAt / 1000),
      parameters: fromBinary(DynamicParametersSchema, Buffer.from(c.parameters, "base64")),
    });
  const urlOf = (c: CodeRecord) => `${cfg.QR_TIP_BASE_URL.replace(/\/+$/, "")}/${c.shortCode}?p=${payloadOf(c)}`;
  const ussdOf = (c: CodeRecord) => `${cfg.QR_USSD_PREFIX}*${c.shortCode}#`;

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
  }

  /** Inserts a code with a fresh short code, drawing again on the (rare) collision. */
  async function insertWithFreshShortCode(tx: Queryable, c: Omit<Parameters<typeof insertCode>[1], "shortCode">): Promise<CodeRecord> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const inserted = await insertCode(tx, { ...c, shortCode: newShortCode() });
      if (inserted) return inserted;
    }
    throw new DependencyUnavailableError("could not draw a free short code; try again");
  }

  /** The owner's and venue's display records for cards and offline payloads. */
  async function displayOf(c: CodeRecord) {
    const owner = await profileOf(pool, c.ownerKind, c.ownerId);
    const venueId = c.ownerKind === VENUE ? c.ownerId : c.venueId;
    const venue = venueId ? (c.ownerKind === VENUE ? owner : await profileOf(pool, VENUE, venueId)) : undefined;
    return { owner, venue };
  }

  async function offlineOf(c: CodeRecord) {
    const { owner, venue } = await displayOf(c);
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

  const pub: Partial<ServiceImpl<typeof QrService>> = {
    async createQrCode(req, ctx) {
      const caller = requireCaller(ctx);
      const venueId = req.ownerKind === OwnerKind.VENUE ? null : req.venueId || null;
      if (req.ownerKind === OwnerKind.VENUE && req.venueId && req.venueId !== req.ownerId) {
        throw fieldError("venue_id", "a venue's own code takes no other venue_id");
      }
      await requireManage(pool, caller, req.ownerKind, req.ownerId, venueId);
      const owner = await profileOf(pool, req.ownerKind, req.ownerId);
      if (!owner) throw new InvalidStateError(`owner_id: ${req.ownerId} has no profile yet; set one with PutProfile first`);
      if (!owner.active) throw new InvalidStateError(`owner_id: ${req.ownerId} is not active`);
      let venue: ProfileRecord | undefined;
      if (venueId) {
        venue = await profileOf(pool, VENUE, venueId);
        if (!venue) throw new NotFoundError(`venue_id: no venue ${venueId}`);
        if (!(await isVenueStaff(pool, venueId, req.ownerId))) {
          throw new InvalidStateError(`worker ${req.ownerId} is not on the staff of venue ${venueId}`);
        }
      }
      const params = req.parameters ?? create(DynamicParametersSchema);
      validateParameters(params, targetCurrency(owner, req.ownerKind === OwnerKind.VENUE ? owner : venue));
      const idempotent = idempotentRequest("qr", ctx, req, caller.subject);
      const id = randomUUID();
      const code = await withTransaction(pool, async (tx) => {
        const firstId = await claimIdempotencyKey(tx, idempotent, id);
        if (firstId) return (await codeById(tx, firstId))!;
        return insertWithFreshShortCode(tx, {
          id,
          ownerKind: req.ownerKind,
          ownerId: req.ownerId,
          venueId,
          parameters: toBinary(DynamicParametersSchema, params),
          expiresAt: req.expiresAt ? timestampDate(req.expiresAt) : null,
          createdBy: caller.subject,
        });
      });
      await resolver.forget(cacheKeys.short(code.shortCode));
      return { qrCode: qrMessage(code) };
    },

    async getQrCode(req, ctx) {
      return { qrCode: qrMessage(await managedCode(pool, ctx, req.qrCodeId)) };
    },

    async listQrCodes(req, ctx) {
      const caller = requireCaller(ctx);
      await requireManage(pool, caller, req.ownerKind, req.ownerId, null);
      // A partner linked through a venue sees the worker's codes at that venue only.
      const via = caller.roles.includes("partner") && req.ownerKind === OwnerKind.WORKER ? await partnerLinkOf(pool, caller.subject, req.ownerId, null) : undefined;
      const size = pageSize(req.page);
      const after = decodeTimeIdToken(req.page?.pageToken);
      const { rows } = await pool.query(
        `SELECT *, ${keysetTime("created_at")} AS page_at FROM qr.qr_codes
          WHERE owner_kind = $1 AND owner_id = $2 AND ($3 OR (status = 1 AND (expires_at IS NULL OR expires_at > now())))
            AND ($4::timestamptz IS NULL OR (created_at, qr_code_id) < ($4::timestamptz, $5::uuid))
            AND ($7::uuid IS NULL OR venue_id = $7::uuid)
          ORDER BY created_at DESC, qr_code_id DESC LIMIT $6`,
        [req.ownerKind, req.ownerId, req.includeInactive, after?.at ?? null, after?.id ?? null, size + 1, via?.kind === VENUE ? via.id : null],
      );
      const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.qr_code_id]);
      return {
        qrCodes: items.map((r) => qrMessage(codeFromRow(r))),
        page: { nextPageToken },
      };
    },

    async resolveQrCode(req) {
      // Public: anyone who scanned the code may resolve it.
      if (req.code.case === undefined) throw fieldError("code", "give short_code or payload");
      const { target } = await resolver.resolve({ case: req.code.case, value: req.code.value });
      return { target };
    },

    async renderQrCode(req, ctx) {
      const code = await managedCode(pool, ctx, req.qrCodeId);
      requireActive(code);
      const size = req.size || DEFAULT_SIZE;
      const ec = EC[req.errorCorrection];
      const url = urlOf(code);
      if (req.format === ImageFormat.PNG) {
        if (req.caption) throw fieldError("caption", "PNG has no caption; use IMAGE_FORMAT_PRINT_SVG or IMAGE_FORMAT_PDF for a table card");
        if (size < minPngSize(url, ec)) throw fieldError("size", `at least ${minPngSize(url, ec)} pixels for this code`);
        return { content: renderPng(url, size, ec), contentType: "image/png" };
      }
      if (req.format === ImageFormat.SVG && !req.caption) {
        return { content: Buffer.from(await renderSvg(url, size, ec)), contentType: "image/svg+xml" };
      }
      const { emvcoPayload, owner, venue } = await offlineOf(code);
      const card: CardText = {
        displayName: owner?.displayName ?? "",
        venueName: code.ownerKind === WORKER ? venue?.displayName : undefined,
        shortCode: code.shortCode,
        ussdCode: ussdOf(code),
        paybillLine: `M-Pesa ${cfg.QR_MPESA_SHORTCODE_KIND === "paybill" ? "Paybill" : "Till"} ${cfg.QR_MPESA_SHORTCODE}` +
          (cfg.QR_MPESA_SHORTCODE_KIND === "paybill" ? ` Account ${code.accountReference}` : ""),
      };
      if (req.format === ImageFormat.PDF) return { content: renderCardPdf(url, emvcoPayload, card, ec), contentType: "application/pdf" };
      return { content: Buffer.from(await renderCardSvg(url, emvcoPayload, card, size, ec)), contentType: "image/svg+xml" };
    },

    async rotateQrCode(req, ctx) {
      const caller = requireCaller(ctx);
      const freshId = randomUUID();
      const { fresh, old } = await withTransaction(pool, async (tx) => {
        const old = await managedCode(tx, ctx, req.qrCodeId, true);
        const firstId = await claimIdempotencyKey(tx, idempotentRequest("qr", ctx, req, caller.subject), freshId);
        if (firstId) return { fresh: (await codeById(tx, firstId))!, old };
        requireActive(old);
        if (old.expiresAt !== null && old.expiresAt <= Date.now()) {
          throw new InvalidStateError(`QR code ${old.id} has expired; create a new code instead`);
        }
        const fresh = await insertWithFreshShortCode(tx, {
          id: freshId,
          ownerKind: old.ownerKind,
          ownerId: old.ownerId,
          venueId: old.venueId,
          parameters: Buffer.from(old.parameters, "base64"),
          expiresAt: old.expiresAt === null ? null : new Date(old.expiresAt),
          createdBy: caller.subject,
        });
        await setStatus(tx, old.id, 2, { replacedBy: fresh.id });
        return { fresh, old };
      });
      await resolver.forget(cacheKeys.code(old.id), cacheKeys.short(fresh.shortCode));
      return { qrCode: qrMessage(fresh) };
    },

    async revokeQrCode(req, ctx) {
      const code = await withTransaction(pool, async (tx) => {
        const code = await managedCode(tx, ctx, req.qrCodeId, true);
        if (code.status === 3) return code;
        return setStatus(tx, code.id, 3, { reason: req.reason });
      });
      await resolver.forget(cacheKeys.code(code.id));
      return { qrCode: qrMessage(code) };
    },

    async getOfflinePayload(req, ctx) {
      const code = await managedCode(pool, ctx, req.qrCodeId);
      requireActive(code);
      const { emvcoPayload } = await offlineOf(code);
      return {
        offline: {
          emvcoPayload,
          paybillOrTill: cfg.QR_MPESA_SHORTCODE,
          accountReference: code.accountReference,
          ussdCode: ussdOf(code),
        },
      };
    },

    async recordScan(req, ctx) {
      if (req.code.case === undefined) throw fieldError("code", "give short_code or payload");
      const { target, code } = await resolver.resolve({ case: req.code.case, value: req.code.value });
      // A salted hash: counts unique devices without keeping who they are.
      const who =
        callerOf(ctx)?.subject ??
        (req.deviceId ? `device:${req.deviceId}` : `${ctx.requestHeader.get(CLIENT_ADDRESS_HEADER) ?? ""}|${req.userAgent}`);
      const deviceHash = createHmac("sha256", deps.deviceSalt).update(who).digest("base64url").slice(0, 22);
      const scanId = await withTransaction(pool, async (tx) => {
        const inserted = await tx.query(
          `INSERT INTO qr.scans (scan_id, qr_code_id, device_hash, referrer, minute)
           VALUES ($1, $2, $3, $4, date_trunc('minute', now())) ON CONFLICT DO NOTHING RETURNING scan_id`,
          [randomUUID(), code.id, deviceHash, referrerOf(req.referrer)],
        );
        if (inserted.rowCount === 0) {
          // The same device again within the minute (a reload or a retry): the same scan, no new event.
          const { rows } = await tx.query(
            `SELECT scan_id FROM qr.scans WHERE qr_code_id = $1 AND device_hash = $2 AND minute = date_trunc('minute', now())`,
            [code.id, deviceHash],
          );
          return rows[0].scan_id as string;
        }
        await emitEvent(tx, "qr", QrScannedSchema, {
          qrCodeId: code.id,
          shortCode: code.shortCode,
          workerId: target.workerId,
          venueId: target.venueId,
          referrer: referrerOf(req.referrer),
          deviceHash,
        });
        return inserted.rows[0].scan_id as string;
      });
      return { scanId, target };
    },

    async getScanStats(req, ctx) {
      const caller = requireCaller(ctx);
      if (req.qrCodeId) {
        await managedCode(pool, ctx, req.qrCodeId);
      } else if (
        !(await canManage(pool, caller, WORKER, req.ownerId, null)) &&
        !(await canManage(pool, caller, VENUE, req.ownerId, null))
      ) {
        throw new PermissionDeniedError("only the owner, a manager of the venue or an admin may see these statistics");
      }
      const from = timestampDate(req.from!);
      const to = timestampDate(req.to!);
      const { rows } = await pool.query(
        `SELECT c.qr_code_id,
                (SELECT count(*) FROM qr.scans s WHERE s.qr_code_id = c.qr_code_id AND s.scanned_at >= $3 AND s.scanned_at < $4) AS scans,
                (SELECT count(DISTINCT s.device_hash) FROM qr.scans s WHERE s.qr_code_id = c.qr_code_id AND s.scanned_at >= $3 AND s.scanned_at < $4) AS devices,
                (SELECT count(*) FROM qr.tips t WHERE t.qr_code_id = c.qr_code_id AND t.occurred_at >= $3 AND t.occurred_at < $4) AS tips
           FROM qr.qr_codes c
          WHERE ($1::uuid IS NOT NULL AND c.qr_code_id = $1::uuid)
             OR ($1::uuid IS NULL AND (c.owner_id = $2::uuid OR c.venue_id = $2::uuid))
          ORDER BY c.created_at, c.qr_code_id`,
        [req.qrCodeId || null, req.ownerId || null, from, to],
      );
      return {
        stats: rows.map((r) =>
          create(ScanStatsSchema, {
            qrCodeId: r.qr_code_id,
            scans: r.scans,
            uniqueDevices: r.devices,
            tips: r.tips,
            conversionBps: r.scans > 0n ? Number((r.tips * 10_000n) / r.scans) : 0,
          }),
        ),
      };
    },

    async putProfile(req, ctx) {
      const caller = requireCaller(ctx);
      const admin = caller.roles.includes("admin");
      if (req.photoUrl && !/^https?:\/\//i.test(req.photoUrl)) throw fieldError("photo_url", "must be an http or https URL");
      if (req.active !== undefined && !admin) throw new PermissionDeniedError("active: only an admin may activate or deactivate a profile");
      const profile = await withTransaction(pool, async (tx) => {
        const existing = await profileOf(tx, req.ownerKind, req.ownerId, true);
        if (req.ownerKind === OwnerKind.WORKER) {
          if (!admin && !(caller.subject === req.ownerId && caller.roles.includes("worker"))) {
            throw new PermissionDeniedError("a worker may only set their own profile");
          }
        } else if (existing) {
          await requireVenueManager(tx, caller, req.ownerId);
        } else if (!admin) {
          if (!caller.roles.includes("venue_manager")) throw new PermissionDeniedError("only a venue manager or an admin may create a venue");
          // Whoever creates a venue manages it.
          await tx.query(`INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [req.ownerId, caller.subject]);
        }
        return upsertProfile(tx, { ...req, active: req.active });
      });
      await resolver.forget(cacheKeys.profile(profile.ownerKind, profile.ownerId));
      return { profile: profileMessage(profile, cfg.QR_TIP_BASE_URL) };
    },

    async putProfilePhoto(req, ctx) {
      const caller = requireCaller(ctx);
      const photo = photoFrom(req.image);
      const profile = await withTransaction(pool, async (tx) => {
        const existing = await profileOf(tx, req.ownerKind, req.ownerId, true);
        if (req.ownerKind === OwnerKind.WORKER) {
          if (!caller.roles.includes("admin") && !(caller.subject === req.ownerId && caller.roles.includes("worker"))) {
            throw new PermissionDeniedError("a worker may only set their own photo");
          }
        } else {
          await requireVenueManager(tx, caller, req.ownerId);
        }
        if (!existing) throw new InvalidStateError(`owner_id: ${req.ownerId} has no profile yet; set one with PutProfile first`);
        await putPhoto(tx, req.ownerKind, req.ownerId, photo);
        return (await profileOf(tx, req.ownerKind, req.ownerId))!;
      });
      await resolver.forget(cacheKeys.profile(profile.ownerKind, profile.ownerId));
      return { profile: profileMessage(profile, cfg.QR_TIP_BASE_URL) };
    },

    async getProfilePhoto(req) {
      const photo = await photoOf(pool, req.ownerKind, req.ownerId);
      if (!photo) throw new NotFoundError(`owner_id: no photo for ${req.ownerId}`);
      return { image: photo.image, contentType: photo.contentType, sha256: photo.sha256 };
    },

    async getProfile(req) {
      const profile = await profileOf(pool, req.ownerKind, req.ownerId);
      if (!profile) throw new NotFoundError(`owner_id: no profile for ${req.ownerId}`);
      return { profile: profileMessage(profile, cfg.QR_TIP_BASE_URL) };
    },

    async addVenueStaff(req, ctx) {
      const caller = requireCaller(ctx);
      await withTransaction(pool, async (tx) => {
        if (!(await profileOf(tx, VENUE, req.venueId))) throw new NotFoundError(`venue_id: no venue ${req.venueId}`);
        await requireVenueManager(tx, caller, req.venueId);
        await tx.query(`INSERT INTO qr.venue_staff (venue_id, worker_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [req.venueId, req.workerId]);
      });
      return {};
    },

    async removeVenueStaff(req, ctx) {
      const caller = requireCaller(ctx);
      const revoked = await withTransaction(pool, async (tx) => {
        if (!(await profileOf(tx, VENUE, req.venueId))) throw new NotFoundError(`venue_id: no venue ${req.venueId}`);
        await requireVenueManager(tx, caller, req.venueId);
        await tx.query(`DELETE FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2`, [req.venueId, req.workerId]);
        const { rows } = await tx.query(
          `UPDATE qr.qr_codes SET status = 3, revoked_reason = 'removed from the venue staff', status_changed_at = now()
            WHERE owner_kind = 1 AND owner_id = $1 AND venue_id = $2 AND status = 1 RETURNING qr_code_id`,
          [req.workerId, req.venueId],
        );
        return rows.map((r) => r.qr_code_id as string);
      });
      await resolver.forget(...revoked.map((id) => cacheKeys.code(id)));
      return { revokedCodes: revoked.length };
    },

    async listManagedVenues(_req, ctx) {
      const caller = requireCaller(ctx);
      return { venues: (await managedVenues(pool, caller.subject)).map((v) => profileMessage(v, cfg.QR_TIP_BASE_URL)) };
    },
  };

  const internal: Partial<ServiceImpl<typeof QrInternalService>> = {
    async getVenueAccess(req) {
      const venue = await profileOf(pool, VENUE, req.venueId);
      if (!venue) return { venueExists: false, isManager: false, displayName: "", currency: "", active: false };
      const isManager = req.userId ? await isVenueManager(pool, req.venueId, req.userId) : false;
      return { venueExists: true, isManager, displayName: venue.displayName, currency: venue.currency, active: venue.active };
    },
    async matchAccountReference(req) {
      const code = await codeByAccountReference(pool, normalizeShortCode(req.accountReference));
      if (!code) throw new NotFoundError(`account_reference: no code has the reference ${req.accountReference}`);
      return {
        workerId: code.ownerKind === WORKER ? code.ownerId : "",
        qrCodeId: code.id,
        venueId: code.ownerKind === VENUE ? code.ownerId : (code.venueId ?? ""),
        status: code.status as QrCodeStatus,
      };
    },

    async suggestAccountReferences(req) {
      const typed = normalizeShortCode(req.accountReference);
      const candidates = oneSlipAway(typed).slice(0, 2_000);
      if (!candidates.length) return { accountReferences: [] };
      const { rows } = await pool.query<{ account_reference: string }>(
        `SELECT account_reference FROM qr.qr_codes WHERE account_reference = ANY($1::text[]) AND status = 1 ORDER BY account_reference LIMIT 5`,
        [candidates],
      );
      return { accountReferences: rows.map((r) => r.account_reference) };
    },
  };

  const links = partnerLinkHandlers(pool);
  return { public: { ...pub, ...links.public }, internal: { ...internal, ...links.internal } };
}
