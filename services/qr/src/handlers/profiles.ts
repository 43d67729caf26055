import type { ServiceImpl } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { assertCurrency, fieldError, InvalidStateError, NotFoundError, PermissionDeniedError, requireCaller, withTransaction } from "@ttip/runtime";
import { requireVenueManager } from "../access.js";
import { cacheKeys } from "../resolver.js";
import { photoFrom } from "../photo.js";
import { namesWorker, profileOf, photoOf, putPhoto, upsertProfile } from "../stores/profiles.js";
import { addVenueManager } from "../stores/venues.js";
import { profileMessage } from "./values.js";
import type { QrHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof QrService>;

/** Profiles: the name, photo and currency a code's tip page shows. */
export function profileHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    putProfile: putProfileHandler(h),
    putProfilePhoto: putProfilePhotoHandler(h),
    getProfilePhoto: getProfilePhotoHandler(h),
    getProfile: getProfileHandler(h),
  };
}

function putProfileHandler(h: QrHandlerContext): Impl["putProfile"] {
  return async (req, ctx) => {
    const { pool, cfg, resolver } = h;
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
      } else if (await namesWorker(tx, req.ownerId)) {
        // Its creator would manage "the venue" of a worker's id: their codes and statistics are found by that id.
        throw fieldError("owner_id", "names a worker; a new venue takes an id of its own");
      } else if (!admin) {
        if (!caller.roles.includes("venue_manager")) throw new PermissionDeniedError("only a venue manager or an admin may create a venue");
        await addVenueManager(tx, req.ownerId, caller.subject);
      }
      // Stored, a currency no service handles would make every code of the profile resolve to tips payment refuses.
      // One stored before this check is sent back unchanged by the apps' other edits, which still save.
      if (req.currency && req.currency !== existing?.currency) assertCurrency(req.currency, "currency");
      return upsertProfile(tx, { ...req, active: req.active });
    });
    await resolver.forget(cacheKeys.profile(profile.ownerKind, profile.ownerId));
    return { profile: profileMessage(profile, cfg.QR_TIP_BASE_URL) };
  };
}

function putProfilePhotoHandler(h: QrHandlerContext): Impl["putProfilePhoto"] {
  return async (req, ctx) => {
    const { pool, cfg, resolver } = h;
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
  };
}

function getProfilePhotoHandler(h: QrHandlerContext): Impl["getProfilePhoto"] {
  return async (req) => {
    const { pool } = h;
    const photo = await photoOf(pool, req.ownerKind, req.ownerId);
    if (!photo) throw new NotFoundError(`owner_id: no photo for ${req.ownerId}`);
    return { image: photo.image, contentType: photo.contentType, sha256: photo.sha256 };
  };
}

function getProfileHandler(h: QrHandlerContext): Impl["getProfile"] {
  return async (req) => {
    const { pool, cfg } = h;
    const profile = await profileOf(pool, req.ownerKind, req.ownerId);
    if (!profile) throw new NotFoundError(`owner_id: no profile for ${req.ownerId}`);
    return { profile: profileMessage(profile, cfg.QR_TIP_BASE_URL) };
  };
}
