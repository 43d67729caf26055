// Partner links: which partner keys (a POS, booking or delivery app) may act
// for a worker or a venue. A venue's link covers the workers on its staff,
// the way a restaurant's till serves all its waiters.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { createClient, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind, PartnerLinkSchema, type PartnerLink } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import {
  decodeTimeIdToken,
  DependencyUnavailableError,
  fieldError,
  InvalidStateError,
  isUuid,
  keysetPage,
  keysetTime,
  NotFoundError,
  optionalTimestamp,
  pageSize,
  PermissionDeniedError,
  type Peers,
  type Pool,
  type Principal,
  type Queryable,
  refusalOfField,
  requireCaller,
} from "@ttip/runtime";
import { canManage, VENUE, WORKER } from "./access.js";
import { profileOf } from "./stores/profiles.js";

/** The link that lets a key act, and whose it is. */
export interface LinkVia {
  kind: number;
  id: string;
}

const isId = (s: string | null): s is string => s !== null && isUuid(s);

/**
 * The live link through which `keyId` may act for a worker (at a venue, when
 * given) or for a venue alone: the worker's own link, or a link of the venue
 * (any venue when none is given) that has the worker on its staff.
 */
export async function partnerLinkOf(db: Queryable, keyId: string, workerId: string | null, venueId: string | null): Promise<LinkVia | undefined> {
  if (!isId(keyId) || (!isId(workerId) && !isId(venueId))) return undefined;
  const { rows } = await db.query<{ owner_kind: number; owner_id: string }>(
    `SELECT l.owner_kind, l.owner_id FROM qr.partner_links l
      WHERE l.key_id = $1 AND l.unlinked_at IS NULL
        AND ((l.owner_kind = 1 AND l.owner_id = $2::uuid)
          OR (l.owner_kind = 2 AND ($3::uuid IS NULL OR l.owner_id = $3::uuid)
              AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM qr.venue_staff s WHERE s.venue_id = l.owner_id AND s.worker_id = $2::uuid))))
      ORDER BY l.owner_kind, l.linked_at LIMIT 1`,
    [keyId, isId(workerId) ? workerId : null, isId(venueId) ? venueId : null],
  );
  return rows[0] ? { kind: rows[0].owner_kind, id: rows[0].owner_id } : undefined;
}

interface LinkRow {
  key_id: string;
  owner_kind: number;
  owner_id: string;
  linked_by: string;
  linked_at: Date;
  unlinked_by: string | null;
  unlinked_at: Date | null;
  page_at?: string;
}

function linkMessage(r: LinkRow): PartnerLink {
  return create(PartnerLinkSchema, {
    keyId: r.key_id,
    ownerKind: r.owner_kind,
    ownerId: r.owner_id,
    linkedBy: r.linked_by,
    linkedAt: timestampFromDate(r.linked_at),
    unlinkedAt: optionalTimestamp(r.unlinked_at),
    unlinkedBy: r.unlinked_by ?? "",
  });
}

/** The worker themself, a manager of the venue, or an admin: those who may link an owner. */
async function requireLinker(db: Queryable, ctx: HandlerContext, ownerKind: number, ownerId: string): Promise<Principal> {
  const caller = requireCaller(ctx);
  if (!(await canManage(db, caller, ownerKind, ownerId, null))) {
    throw new PermissionDeniedError(ownerKind === WORKER ? "owner_id: a worker links partners to themself only (or an admin does)" : "owner_id: only a manager of this venue or an admin links partners to it");
  }
  return caller;
}

/** Resolves when `keyId` names a live partner key; refuses naming key_id otherwise. */
export type ActiveKeyCheck = (keyId: string) => Promise<void>;

/**
 * Auth keeps the partner keys: a link to a mistyped key would store nothing
 * usable, and one to a revoked key nothing that could ever act.
 */
export function activeKeyInAuth(peers: Peers): ActiveKeyCheck {
  const auth = createClient(AuthInternalService, peers("auth"));
  return async (keyId) => {
    const key = await auth.getPartnerApiKey({ keyId }, { timeoutMs: 5_000 }).then(
      (r) => r.key,
      (err) => {
        throw refusalOfField(err, "key_id") ?? new DependencyUnavailableError("cannot check the partner key in auth right now; retry shortly");
      },
    );
    if (!key) throw new NotFoundError(`key_id: no partner key ${keyId}`);
    if (key.revokedAt) throw new InvalidStateError(`key_id: partner key ${keyId} is revoked; link an active key`);
  };
}

const LINK_COLUMNS = "key_id, owner_kind, owner_id, linked_by, linked_at, unlinked_by, unlinked_at";

export function partnerLinkHandlers(
  pool: Pool,
  requireActiveKey: ActiveKeyCheck,
): { public: Partial<ServiceImpl<typeof QrService>>; internal: Partial<ServiceImpl<typeof QrInternalService>> } {
  return {
    public: {
      async linkPartner(req, ctx) {
        const caller = await requireLinker(pool, ctx, req.ownerKind, req.ownerId);
        if (req.ownerKind === VENUE && !(await profileOf(pool, VENUE, req.ownerId))) throw new NotFoundError(`owner_id: no venue ${req.ownerId}`);
        await requireActiveKey(req.keyId);
        // Linking what is linked changes nothing (not even who linked it, or when).
        const { rows } = await pool.query<LinkRow>(
          `INSERT INTO qr.partner_links (key_id, owner_kind, owner_id, linked_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key_id, owner_kind, owner_id) DO UPDATE
             SET linked_by = EXCLUDED.linked_by, linked_at = now(), unlinked_by = NULL, unlinked_at = NULL
             WHERE partner_links.unlinked_at IS NOT NULL
           RETURNING ${LINK_COLUMNS}`,
          [req.keyId, req.ownerKind, req.ownerId, caller.subject],
        );
        const row =
          rows[0] ??
          (await pool.query<LinkRow>(`SELECT ${LINK_COLUMNS} FROM qr.partner_links WHERE key_id = $1 AND owner_kind = $2 AND owner_id = $3`, [req.keyId, req.ownerKind, req.ownerId])).rows[0];
        return { link: linkMessage(row) };
      },

      async unlinkPartner(req, ctx) {
        const caller = await requireLinker(pool, ctx, req.ownerKind, req.ownerId);
        const { rows } = await pool.query<LinkRow>(
          `UPDATE qr.partner_links SET unlinked_at = now(), unlinked_by = $4
            WHERE key_id = $1 AND owner_kind = $2 AND owner_id = $3 AND unlinked_at IS NULL
            RETURNING ${LINK_COLUMNS}`,
          [req.keyId, req.ownerKind, req.ownerId, caller.subject],
        );
        if (rows[0]) return { link: linkMessage(rows[0]) };
        // Unlinked already: the same answer again (a retried call).
        const { rows: before } = await pool.query<LinkRow>(`SELECT ${LINK_COLUMNS} FROM qr.partner_links WHERE key_id = $1 AND owner_kind = $2 AND owner_id = $3`, [
          req.keyId,
          req.ownerKind,
          req.ownerId,
        ]);
        if (!before[0]) throw new NotFoundError(`key_id: partner key ${req.keyId} is not linked to this ${req.ownerKind === WORKER ? "worker" : "venue"}`);
        return { link: linkMessage(before[0]) };
      },

      async listPartnerLinks(req, ctx) {
        const caller = requireCaller(ctx);
        const partner = caller.roles.includes("partner");
        const owned = req.ownerKind !== OwnerKind.UNSPECIFIED || req.ownerId !== "";
        if (owned && (req.ownerKind === OwnerKind.UNSPECIFIED || !req.ownerId)) throw fieldError(req.ownerId ? "owner_kind" : "owner_id", "give owner_kind and owner_id together");
        if (!owned && !partner) throw fieldError("owner_id", "whose links: give owner_kind and owner_id");
        if (owned && !partner) await requireLinker(pool, ctx, req.ownerKind, req.ownerId);
        const size = pageSize(req.page);
        const after = decodeTimeIdToken(req.page?.pageToken);
        // A partner sees its own links only; an owner sees every key's on it.
        const { rows } = await pool.query<LinkRow>(
          `SELECT ${LINK_COLUMNS}, ${keysetTime("linked_at")} AS page_at FROM qr.partner_links
            WHERE ($1::uuid IS NULL OR key_id = $1::uuid) AND ($2::smallint IS NULL OR (owner_kind = $2 AND owner_id = $3::uuid))
              AND ($4::timestamptz IS NULL OR (linked_at, ${partner ? "owner_id" : "key_id"}) < ($4::timestamptz, $5::uuid))
            ORDER BY linked_at DESC, ${partner ? "owner_id" : "key_id"} DESC LIMIT $6`,
          [partner ? caller.subject : null, owned ? req.ownerKind : null, owned ? req.ownerId : null, after?.at ?? null, after?.id ?? null, size + 1],
        );
        const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at!, partner ? r.owner_id : r.key_id]);
        return { links: items.map(linkMessage), page: { nextPageToken } };
      },
    },
    internal: {
      async checkPartnerLink(req) {
        const via = await partnerLinkOf(pool, req.keyId, req.workerId || null, req.venueId || null);
        return via ? { linked: true, viaKind: via.kind, viaId: via.id } : { linked: false };
      },
    },
  };
}
