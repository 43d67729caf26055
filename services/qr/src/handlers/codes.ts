import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { DynamicParametersSchema, ImageFormat, OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { claimIdempotencyKey, decodeTimeIdToken, fieldError, idempotentRequest, InvalidStateError, keysetPage, NotConfiguredError, NotFoundError, pageSize, requireCaller, type Queryable, withTransaction } from "@ttip/runtime";
import { requireManage, VENUE, WORKER } from "../access.js";
import { partnerLinkOf } from "../partner-links.js";
import { DEFAULT_SIZE, minPngSize, renderCardPdf, renderCardSvg, renderPng, renderSvg, type CardText } from "../render.js";
import { cacheKeys, targetCurrency } from "../resolver.js";
import { codeById, codesOfOwner, setStatus } from "../stores/codes.js";
import { profileOf, type ProfileRecord } from "../stores/profiles.js";
import { lockVenueStaff } from "../stores/venues.js";
import { EC, validateParameters } from "./values.js";
import type { QrHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof QrService>;

/** Codes: create, read, list, resolve, render, rotate, revoke, and their offline forms. */
export function codeHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    createQrCode: createQrCodeHandler(h),
    getQrCode: getQrCodeHandler(h),
    listQrCodes: listQrCodesHandler(h),
    resolveQrCode: resolveQrCodeHandler(h),
    renderQrCode: renderQrCodeHandler(h),
    rotateQrCode: rotateQrCodeHandler(h),
    revokeQrCode: revokeQrCodeHandler(h),
    getOfflinePayload: getOfflinePayloadHandler(h),
  };
}

function createQrCodeHandler(h: QrHandlerContext): Impl["createQrCode"] {
  return async (req, ctx) => {
    const { pool, resolver, qrMessage, insertWithFreshShortCode } = h;
    const caller = requireCaller(ctx);
    const venueId = req.ownerKind === OwnerKind.VENUE ? null : req.venueId || null;
    if (req.ownerKind === OwnerKind.VENUE && req.venueId && req.venueId !== req.ownerId) {
      throw fieldError("venue_id", "a venue's own code takes no other venue_id");
    }
    await requireManage(pool, caller, req.ownerKind, req.ownerId, venueId);
    const idempotent = idempotentRequest("qr", ctx, req, caller.subject);
    const id = randomUUID();
    const code = await withTransaction(pool, async (tx) => {
      // A retry answers the code made first, though its owner was deactivated (or its venue's currency changed) since.
      const firstId = await claimIdempotencyKey(tx, idempotent, id);
      if (firstId) return (await codeById(tx, firstId))!;
      const owner = await profileOf(tx, req.ownerKind, req.ownerId);
      if (!owner) throw new InvalidStateError(`owner_id: ${req.ownerId} has no profile yet; set one with PutProfile first`);
      if (!owner.active) throw new InvalidStateError(`owner_id: ${req.ownerId} is not active`);
      let venue: ProfileRecord | undefined;
      if (venueId) {
        venue = await profileOf(tx, VENUE, venueId);
        if (!venue) throw new NotFoundError(`venue_id: no venue ${venueId}`);
      }
      const params = req.parameters ?? create(DynamicParametersSchema);
      validateParameters(params, targetCurrency(owner, req.ownerKind === OwnerKind.VENUE ? owner : venue));
      if (venueId) await requireStaff(tx, venueId, req.ownerId);
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
  };
}

function getQrCodeHandler(h: QrHandlerContext): Impl["getQrCode"] {
  return async (req, ctx) => {
    const { pool, qrMessage, managedCode } = h;
    return { qrCode: qrMessage(await managedCode(pool, ctx, req.qrCodeId)) };
  };
}

function listQrCodesHandler(h: QrHandlerContext): Impl["listQrCodes"] {
  return async (req, ctx) => {
    const { pool, qrMessage } = h;
    const caller = requireCaller(ctx);
    await requireManage(pool, caller, req.ownerKind, req.ownerId, null);
    // A partner linked through a venue sees the worker's codes at that venue only.
    const via = caller.roles.includes("partner") && req.ownerKind === OwnerKind.WORKER ? await partnerLinkOf(pool, caller.subject, req.ownerId, null) : undefined;
    const size = pageSize(req.page);
    const after = decodeTimeIdToken(req.page?.pageToken);
    const filter = { ownerKind: req.ownerKind, ownerId: req.ownerId, includeInactive: req.includeInactive, venueId: via?.kind === VENUE ? via.id : null };
    const rows = await codesOfOwner(pool, filter, after, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.pageAt, r.code.id]);
    return {
      qrCodes: items.map((r) => qrMessage(r.code)),
      page: { nextPageToken },
    };
  };
}

function resolveQrCodeHandler(h: QrHandlerContext): Impl["resolveQrCode"] {
  return async (req) => {
    const { resolver } = h;
    // Public: anyone who scanned the code may resolve it.
    if (req.code.case === undefined) throw fieldError("code", "give short_code or payload");
    const { target } = await resolver.resolve({ case: req.code.case, value: req.code.value });
    return { target };
  };
}

function renderQrCodeHandler(h: QrHandlerContext): Impl["renderQrCode"] {
  return async (req, ctx) => {
    const { pool, cfg, urlOf, ussdOf, managedCode, requireActive, offlineOf } = h;
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
      offline: emvcoPayload === undefined ? undefined : {
        payload: emvcoPayload,
        paybillLine: `M-Pesa ${cfg.QR_MPESA_SHORTCODE_KIND === "paybill" ? "Paybill" : "Till"} ${cfg.QR_MPESA_SHORTCODE}` +
          (cfg.QR_MPESA_SHORTCODE_KIND === "paybill" ? ` Account ${code.accountReference}` : ""),
      },
    };
    if (req.format === ImageFormat.PDF) return { content: renderCardPdf(url, card, ec), contentType: "application/pdf" };
    return { content: Buffer.from(await renderCardSvg(url, card, size, ec)), contentType: "image/svg+xml" };
  };
}

function rotateQrCodeHandler(h: QrHandlerContext): Impl["rotateQrCode"] {
  return async (req, ctx) => {
    const { pool, resolver, qrMessage, managedCode, requireActive, insertWithFreshShortCode } = h;
    const caller = requireCaller(ctx);
    const freshId = randomUUID();
    const { fresh, old } = await withTransaction(pool, async (tx) => {
      // The staff row's lock before the code's (a removal takes them in that order).
      const seen = await codeById(tx, req.qrCodeId);
      if (seen?.ownerKind === WORKER && seen.venueId && seen.status === 1) await requireStaff(tx, seen.venueId, seen.ownerId);
      const old = await managedCode(tx, ctx, req.qrCodeId, true);
      const firstId = await claimIdempotencyKey(tx, idempotentRequest("qr", ctx, req, caller.subject), freshId);
      if (firstId) return { fresh: (await codeById(tx, firstId))!, old };
      requireActive(old);
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
  };
}

function revokeQrCodeHandler(h: QrHandlerContext): Impl["revokeQrCode"] {
  return async (req, ctx) => {
    const { pool, resolver, qrMessage, managedCode } = h;
    const code = await withTransaction(pool, async (tx) => {
      const code = await managedCode(tx, ctx, req.qrCodeId, true);
      if (code.status === 3) return code;
      // A rotated code tips no one already; "revoked" here would leave its replacement taking tips, unsaid.
      if (code.status === 2) throw new InvalidStateError(`qr_code_id: QR code ${code.id} was replaced by ${code.replacedBy}; revoke that code to stop the tips`);
      return setStatus(tx, code.id, 3, { reason: req.reason });
    });
    await resolver.forget(cacheKeys.code(code.id));
    return { qrCode: qrMessage(code) };
  };
}

function getOfflinePayloadHandler(h: QrHandlerContext): Impl["getOfflinePayload"] {
  return async (req, ctx) => {
    const { pool, cfg, ussdOf, managedCode, requireActive, offlineOf } = h;
    const code = await managedCode(pool, ctx, req.qrCodeId);
    requireActive(code);
    const { emvcoPayload } = await offlineOf(code);
    if (!emvcoPayload) throw new NotConfiguredError("no paybill takes payments here (M-Pesa's paybill payments are not set up): a code has no offline form");
    return {
      offline: {
        emvcoPayload,
        paybillOrTill: cfg.QR_MPESA_SHORTCODE,
        accountReference: code.accountReference,
        ussdCode: ussdOf(code),
      },
    };
  };
}

/** A worker's code at a venue needs them on its staff, checked under lockVenueStaff's lock. */
async function requireStaff(tx: Queryable, venueId: string, workerId: string): Promise<void> {
  if (!(await lockVenueStaff(tx, venueId, workerId))) throw new InvalidStateError(`worker ${workerId} is not on the staff of venue ${venueId}`);
}
