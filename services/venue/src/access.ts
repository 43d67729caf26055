// Who may do what at a venue. qr keeps the venues (profiles) and who manages
// them; this service keeps the staff. A manager of the venue (or an admin)
// manages it; a current member reads the rule, their shifts and their shares.
import { ConnectError, createClient, type Client, type HandlerContext } from "@connectrpc/connect";
import { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  CLIENT_ADDRESS_HEADER,
  DependencyUnavailableError,
  NotFoundError,
  PermissionDeniedError,
  type Principal,
  type Queryable,
  requireCaller,
  type ServiceContext,
  STEP_UP_AT_HEADER,
  stepUpProblem,
} from "@ttip/runtime";
import { currentMemberOf, type MemberRow, type VenueActor } from "./store.js";

/** The caller of a managing RPC: `asAdmin` when they act by the admin role at a venue they do not manage. */
export type VenueCaller = Principal & VenueActor;

export interface VenueInfo {
  venueId: string;
  name: string;
  /** The pool's currency, which distributions split: KES whatever the tip page's (see POOL_CURRENCY). */
  currency: string;
  active: boolean;
}

/**
 * Tips to a venue's pool land in KES whatever currency its tip page shows: M-Pesa moves KES, and a card tip is
 * converted at its quote (wallet holds a venue no other currency's pool). A distribution of the profile's currency
 * (a lodge's USD) would read a pool no tip reaches.
 */
const POOL_CURRENCY = "KES";

/** The venue qr answered for, or NOT_FOUND. */
function venueOf(venueId: string, a: { venueExists: boolean; displayName: string; active: boolean }): VenueInfo {
  if (!a.venueExists) throw new NotFoundError(`venue_id: no venue ${venueId}`);
  return { venueId, name: a.displayName, currency: POOL_CURRENCY, active: a.active };
}

export class Access {
  private readonly qr: Client<typeof QrInternalService>;

  constructor(ctx: ServiceContext) {
    this.qr = createClient(QrInternalService, ctx.peers("qr"));
  }

  private async ask(venueId: string, userId: string, withManagers = false) {
    try {
      return await this.qr.getVenueAccess({ venueId, userId, withManagers }, { timeoutMs: 5_000 });
    } catch (err) {
      throw new DependencyUnavailableError(`venue_id: cannot be checked now (${ConnectError.from(err).rawMessage})`);
    }
  }

  async venue(venueId: string): Promise<VenueInfo> {
    return venueOf(venueId, await this.ask(venueId, ""));
  }

  /** Whether the user manages the venue (false for a venue qr does not know). */
  async manages(venueId: string, userId: string): Promise<boolean> {
    return (await this.ask(venueId, userId)).isManager;
  }

  /** The users who manage the venue, the oldest first (qr lists at most 100). */
  async managerIds(venueId: string): Promise<string[]> {
    return (await this.ask(venueId, "", true)).managerIds;
  }

  /**
   * The caller, who must manage the venue or be an admin. An admin who does not manage it changes it only with
   * the device step-up the gateway verified (as the console's money actions: granting a venue's management or
   * moving its pool on a stolen token alone is refused), and the change goes in the console's audit log too.
   */
  async requireManager(hctx: HandlerContext, venueId: string): Promise<{ caller: VenueCaller; venue: VenueInfo }> {
    const caller = requireCaller(hctx);
    const a = await this.ask(venueId, caller.subject);
    const venue = venueOf(venueId, a);
    if (a.isManager && caller.roles.includes("venue_manager")) return { caller, venue };
    if (!caller.roles.includes("admin")) throw new PermissionDeniedError("only a manager of this venue may do this");
    if (hctx.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) return { caller, venue };
    const problem = stepUpProblem(hctx.requestHeader.get(STEP_UP_AT_HEADER));
    if (problem) throw new PermissionDeniedError(`an admin changes a venue they do not manage only with the device step-up: ${problem}; confirm with your device and call through the gateway`);
    return { caller: { ...caller, asAdmin: { ip: hctx.requestHeader.get(CLIENT_ADDRESS_HEADER) ?? "" } }, venue };
  }

  /** A manager of the venue, or one of its current members (their own row). */
  async requireMemberOrManager(db: Queryable, hctx: HandlerContext, venueId: string): Promise<{ caller: Principal; venue: VenueInfo; member?: MemberRow; manager: boolean }> {
    const caller = requireCaller(hctx);
    const a = await this.ask(venueId, caller.subject);
    const venue = venueOf(venueId, a);
    const manager = caller.roles.includes("admin") || (a.isManager && caller.roles.includes("venue_manager"));
    const member = await currentMemberOf(db, venueId, caller.subject);
    if (!manager && !member) throw new PermissionDeniedError("only the venue's staff and managers may see this");
    return { caller, venue, member, manager };
  }
}
