import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { callerHeaders, DependencyUnavailableError, PermissionDeniedError, requireCaller, type Principal, type Role, type ServiceContext } from "@ttip/runtime";

/** Access rules. The gateway lets only signed-in callers in; each figure's owner is checked here. */
export class Access {
  constructor(private readonly ctx: ServiceContext) {}

  /** Admin may see anything; a worker their own; a venue manager their staff (qr decides who manages whom). */
  async worker(hc: HandlerContext, requested: string): Promise<{ caller: Principal; workerId: string }> {
    const caller = requireCaller(hc);
    const workerId = requested || caller.subject;
    if (workerId !== caller.subject && !caller.roles.includes("admin")) await this.askQr(caller, OwnerKind.WORKER, workerId, "worker_id");
    return { caller, workerId };
  }

  async venue(hc: HandlerContext, venueId: string): Promise<Principal> {
    const caller = requireCaller(hc);
    if (caller.roles.includes("admin")) return caller;
    if (!caller.roles.includes("venue_manager")) throw new PermissionDeniedError("venue_id: only a manager of the venue or an admin may see its figures");
    await this.askQr(caller, OwnerKind.VENUE, venueId, "venue_id");
    return caller;
  }

  async qrCode(hc: HandlerContext, qrCodeId: string): Promise<void> {
    const caller = requireCaller(hc);
    if (caller.roles.includes("admin")) return;
    await this.ask(caller, "qr_code_id", (c, headers) => c.getQrCode({ qrCodeId }, { headers }));
  }

  /**
   * qr owns who manages what: listing the owner's codes applies its rule (owner, venue manager, admin) to that kind of
   * owner. Its statistics call, asked before, took an id as a worker's or else a venue's: a manager who made "a venue"
   * of a removed worker's id (qr knew nothing else of it) passed as managing that worker.
   */
  private askQr(caller: Principal, ownerKind: OwnerKind, ownerId: string, field: string): Promise<void> {
    return this.ask(caller, field, (c, headers) => c.listQrCodes({ ownerKind, ownerId, page: { pageSize: 1 } }, { headers }));
  }

  private async ask(
    caller: Principal,
    field: string,
    call: (c: ReturnType<typeof createClient<typeof QrService>>, headers: Record<string, string>) => Promise<unknown>,
  ): Promise<void> {
    const client = createClient(QrService, this.ctx.peers("qr"));
    try {
      await call(client, callerHeaders(caller.subject, ...(caller.roles as Role[])));
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.PermissionDenied || e.code === Code.NotFound) {
        throw new PermissionDeniedError(`${field}: you may only see your own figures or those of venues you manage`);
      }
      throw new DependencyUnavailableError(`checking access with the qr service failed: ${e.rawMessage}`);
    }
  }
}
